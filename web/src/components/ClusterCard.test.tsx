import { screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";

import type { Cluster } from "@/api/types";
import { mockApi } from "@/test/api";
import { renderWithProviders } from "@/test/render";

import { ClusterCard } from "./ClusterCard";

function member(id: string, name: string, score: number) {
  return {
    image_id: id,
    record_id: `R-${id}`,
    name,
    score,
    width: 640,
    height: 480,
    quality_score: 0.5,
    bytes: 40_000,
    mime: "image/jpeg",
    created_at: "2026-01-01T00:00:00Z",
    preview_url: `/api/images/${id}/thumbnail`,
  };
}

const cluster: Cluster = {
  id: "K1",
  tier: "near_exact",
  keeper: "B",
  status: "open",
  decided_by: null,
  created_at: "2026-01-01T00:00:00Z",
  updated_at: "2026-01-01T00:00:00Z",
  members: [member("A", "cat copy", 0.97), member("B", "cat", 1)],
};

describe("ClusterCard", () => {
  it("puts the suggested keeper first", () => {
    mockApi({});
    renderWithProviders(<ClusterCard cluster={cluster} onAction={() => undefined} />);
    const items = screen.getAllByRole("listitem");
    expect(within(items[0]!).getByText("cat")).toBeInTheDocument();
    expect(within(items[0]!).getByText("Suggested keeper")).toBeInTheDocument();
    expect(screen.getByText("Near-exact")).toBeInTheDocument();
  });

  it("sends verdicts, and merges into the keeper a person chose", async () => {
    mockApi({});
    const user = userEvent.setup();
    const onAction = vi.fn();
    renderWithProviders(<ClusterCard cluster={cluster} onAction={onAction} />);
    await user.click(screen.getByRole("button", { name: "Mark not duplicates" }));
    expect(onAction).toHaveBeenLastCalledWith({ kind: "mark", verdict: "not_duplicate" });

    await user.click(screen.getByRole("button", { name: "Keep this one" }));
    await user.click(screen.getByRole("button", { name: "Merge" }));
    const dialog = screen.getByRole("dialog", { name: "Merge this cluster?" });
    await user.selectOptions(within(dialog).getByLabelText("The other images"), "drop");
    await user.click(within(dialog).getByRole("button", { name: "Merge into keeper" }));
    expect(onAction).toHaveBeenLastCalledWith({ kind: "merge", keeper: "A", mode: "drop" });
  });

  it("adds tags to every member's record", async () => {
    mockApi({});
    const user = userEvent.setup();
    const onAction = vi.fn();
    renderWithProviders(<ClusterCard cluster={cluster} onAction={onAction} />);
    await user.click(screen.getByRole("button", { name: "Tag" }));
    await user.type(screen.getByLabelText("Tags to add"), "cats{Enter}");
    await user.click(screen.getByRole("button", { name: "Add tags" }));
    expect(onAction).toHaveBeenLastCalledWith({ kind: "tag", tags: ["cats"] });
  });
});
