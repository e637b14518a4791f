import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";

import { source } from "@/test/ask";

import { AnswerText } from "./AnswerText";

describe("AnswerText", () => {
  it("turns each cited number into a chip that opens its source", async () => {
    const onOpen = vi.fn();
    render(<AnswerText text="Opened in 1987 [1], 412 m long [2, 3]; see [9]." sources={[source(1), source(2), source(3, { page: null })]} onOpen={onOpen} />);
    const chips = screen.getAllByTestId("citation-chip");
    expect(chips.map((c) => c.textContent)).toEqual(["1", "2", "3", "9"]);
    expect(screen.getByTestId("answer")).toHaveTextContent("Opened in 1987 1, 412 m long 23; see 9.");

    await userEvent.click(screen.getByRole("button", { name: "Open Source 2: doc 2, page 1" }));
    await userEvent.click(screen.getByRole("button", { name: "Open Source 3: doc 3" }));
    expect(onOpen.mock.calls).toEqual([[2], [3]]);
    // A number the sources do not have opens nothing.
    expect(screen.getByRole("button", { name: "Open Source 9" })).toBeDisabled();
  });
});
