import { screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";

import type { Cluster } from "@/api/types";
import { CollectionProvider } from "@/lib/collection";
import { apiError, mockApi } from "@/test/api";
import { renderWithProviders } from "@/test/render";

import { DedupPage } from "./Dedup";

const member = (id: string) => ({
  image_id: id,
  record_id: `R${id}`,
  name: `photo ${id}`,
  score: 0.99,
  width: 10,
  height: 10,
  quality_score: 0.5,
  bytes: 100,
  mime: "image/png",
  created_at: "2026-01-01T00:00:00Z",
  preview_url: `/api/images/${id}/thumbnail`,
});

const cluster: Cluster = {
  id: "K1",
  tier: "exact",
  keeper: "A",
  status: "open",
  decided_by: null,
  created_at: "2026-01-01T00:00:00Z",
  updated_at: "2026-01-01T00:00:00Z",
  members: [member("A"), member("B")],
};

function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

function routes(mark: () => Promise<Response> | Response) {
  return {
    "GET /api/collections": () => ({ body: [{ id: "C1", name: "shop", counts: {} }] }),
    "GET /api/collections/C1/clusters": () => ({ body: { clusters: [cluster], total: 1 } }),
    "POST /api/clusters/K1/mark": mark,
  };
}

function renderDedup() {
  return renderWithProviders(
    <CollectionProvider>
      <DedupPage />
    </CollectionProvider>,
  );
}

describe("Dedup", () => {
  it("shows a verdict before the server has answered", async () => {
    const answer = deferred<Response>();
    const calls = mockApi(routes(() => answer.promise));
    const user = userEvent.setup();
    renderDedup();
    const card = await screen.findByTestId("cluster");
    expect(within(card).getByText("To review")).toBeInTheDocument();

    await user.click(within(card).getByRole("button", { name: "Mark duplicates" }));
    expect(await within(card).findByText("Duplicates")).toBeInTheDocument();
    expect(card).toHaveAttribute("data-status", "duplicate");
    expect(calls.find((c) => c.method === "POST")?.body).toEqual({ verdict: "duplicate" });

    answer.resolve(new Response(JSON.stringify({ ...cluster, status: "duplicate" }), { status: 200 }));
    expect(await screen.findByText("Marked as duplicates")).toBeInTheDocument();
  });

  it("puts the cluster back, and says why, when the server refuses", async () => {
    mockApi(routes(() => apiError(409, "conflict", "this cluster was merged by bob")));
    const user = userEvent.setup();
    renderDedup();
    const card = await screen.findByTestId("cluster");
    await user.click(within(card).getByRole("button", { name: "Mark duplicates" }));
    expect(await screen.findByText("this cluster was merged by bob")).toBeInTheDocument();
    expect(within(await screen.findByTestId("cluster")).getByText("To review")).toBeInTheDocument();
  });

  it("offers a sweep when nothing waits for review", async () => {
    mockApi({
      "GET /api/collections": () => ({ body: [{ id: "C1", name: "shop", counts: {} }] }),
      "GET /api/collections/C1/clusters": () => ({ body: { clusters: [], total: 0 } }),
    });
    renderDedup();
    expect(await screen.findByRole("heading", { name: "Nothing to review" })).toBeInTheDocument();
    expect(screen.getAllByRole("button", { name: "Find duplicates" })).toHaveLength(2);
  });

  it("shows a copy group inside its scene's group, each image once", async () => {
    const scene: Cluster = {
      ...cluster,
      id: "S1",
      tier: "similar",
      keeper: "A",
      members: [member("A"), member("B"), member("C")],
      parent_id: null,
      groups: ["N1"],
    };
    const copies: Cluster = { ...cluster, id: "N1", tier: "near_exact", members: [member("A"), member("B")], parent_id: "S1", groups: [] };
    mockApi({
      "GET /api/collections": () => ({ body: [{ id: "C1", name: "shop", counts: {} }] }),
      "GET /api/collections/C1/clusters": () => ({ body: { clusters: [copies, scene], total: 2 } }),
    });
    renderDedup();
    const cards = await screen.findAllByTestId("cluster");
    expect(cards).toHaveLength(2);
    const [outer, inner] = cards as [HTMLElement, HTMLElement];
    expect(outer).toContainElement(inner); // nested, not beside it
    const inside = within(screen.getByRole("region", { name: "Copies within this group" }));
    expect(inside.getByText("Near-exact")).toBeInTheDocument();
    // Every image once on the page: C in the scene's own row, A and B in the copy group.
    for (const id of ["A", "B", "C"]) expect(screen.getAllByRole("button", { name: `Open photo ${id}` })).toHaveLength(1);
  });
});
