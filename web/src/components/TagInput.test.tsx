import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { useState } from "react";
import { describe, expect, it } from "vitest";

import { TagInput } from "./TagInput";

function Harness({ initial = [] as string[] }) {
  const [tags, setTags] = useState(initial);
  return (
    <>
      <TagInput value={tags} onChange={setTags} />
      <output data-testid="tags">{tags.join("|")}</output>
    </>
  );
}

describe("TagInput", () => {
  it("adds tags on Enter and comma, once each", async () => {
    const user = userEvent.setup();
    render(<Harness />);
    const input = screen.getByLabelText("Tags");
    await user.type(input, "red{Enter}shoe,red{Enter}");
    expect(screen.getByTestId("tags")).toHaveTextContent("red|shoe");
    expect(input).toHaveValue("");
  });

  it("removes the last tag on Backspace and any tag by its button", async () => {
    const user = userEvent.setup();
    render(<Harness initial={["a", "b", "c"]} />);
    await user.click(screen.getByRole("button", { name: "Remove tag b" }));
    expect(screen.getByTestId("tags")).toHaveTextContent("a|c");
    await user.type(screen.getByLabelText("Tags"), "{Backspace}");
    expect(screen.getByTestId("tags")).toHaveTextContent(/^a$/);
  });
});
