import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";

import { CollectionProvider } from "@/lib/collection";
import { apiError, mockApi, type Call } from "@/test/api";
import { renderWithProviders } from "@/test/render";

import { SearchPage } from "./Search";

const hit = (n: number) => ({
  image_id: `IMG${n}`,
  record_id: `REC${n}`,
  name: `photo ${n}`,
  description: "",
  score: 1 - n / 10,
  payload: { tags: ["cat"], owner: "alice" },
  preview_url: `/api/images/IMG${n}/thumbnail`,
});

function image(id: string) {
  return {
    id,
    record_id: `REC${id.slice(3)}`,
    collection_id: "C1",
    sha256: "x",
    phash: "8d87746883d70eb5",
    width: 640,
    height: 480,
    mime: "image/jpeg",
    bytes: 50_000,
    source: "upload",
    filename: `${id}.jpg`,
    status: "embedded",
    error: null,
    quality_score: 0.7,
    nsfw_score: 0.01,
    created_at: "2026-01-01T00:00:00Z",
    thumbnail_url: `/api/images/${id}/thumbnail`,
    preview_url: `/api/images/${id}/thumbnail`,
    original_url: `/api/images/${id}/original`,
    duplicate: id === "IMG2" ? { tier: "near_exact", image_id: "IMG9", score: 0.97, record_id: "REC9", record_name: "photo 9" } : null,
  };
}

function api({ supportsText = true } = {}) {
  return mockApi({
    "GET /api/collections": () => ({
      body: [{ id: "C1", name: "shop", model: supportsText ? "clip" : "efficientnet-lite0", supports_text: supportsText, counts: {} }],
    }),
    "POST /api/search/similar": ({ body }: Call) => {
      const { offset = 0, limit = 10, image_id } = body as { offset?: number; limit?: number; image_id?: string };
      if (image_id === "GONE") return apiError(404, "image_not_found", "no image 'GONE'");
      if (image_id) return { body: { hits: [hit(7)], collection: "C1", model_id: "clip", more: false } };
      // 36 hits in all, of which 30 are above the cut-off: two full pages of 12, then 6, and the
      // server says there are no more matches (and that weaker ones exist).
      const { include_weaker } = body as { include_weaker?: boolean };
      const total = include_weaker ? 36 : 30;
      const hits = Array.from({ length: Math.max(0, Math.min(limit, total - offset)) }, (_, i) => hit(offset + i + 1));
      const more = offset + hits.length < total;
      return { body: { hits, collection: "C1", model_id: "clip", more, cutoff: include_weaker ? null : 0.2, weaker: !include_weaker && !more } };
    },
    "GET /api/images/:id": ({ path }: Call) => ({ body: image(path.split("/")[3]!) }),
    "GET /api/records/:id": ({ path }: Call) => ({
      body: { id: path.split("/")[3], name: `record ${path.split("/")[3]}`, description: "", tags: ["cat"], owner: "alice", images: [] },
    }),
    "GET /api/images/:id/feedback": () => ({ body: { items: [], total: 0, limit: 20, offset: 0 } }),
  });
}

describe("Search", () => {
  // Long on a slow machine: about forty requests and as many renders.
  it("searches by text with the filters, pages on, and browses results with the arrow keys", { timeout: 20_000 }, async () => {
    const calls = api();
    const user = userEvent.setup();
    renderWithProviders(
      <CollectionProvider>
        <SearchPage />
      </CollectionProvider>,
      { route: "/search" },
    );
    await user.click(await screen.findByRole("tab", { name: "Text" }));
    await user.type(screen.getByLabelText("Describe what you look for"), "a cat");
    await user.click(screen.getByText("Filters and options"));
    await user.type(screen.getByLabelText("Any of these tags"), "cat{Enter}");
    await user.type(screen.getByLabelText("Max NSFW"), "0.3");
    await user.selectOptions(screen.getByLabelText("Per page"), "12");
    await user.click(screen.getByRole("button", { name: "Search" }));

    // jsdom sees every sentinel as in view: the list loads page after page until a short one.
    await waitFor(() => expect(screen.getAllByTestId("result")).toHaveLength(30));
    const searches = calls.filter((c) => c.path === "/api/search/similar");
    expect(searches.map((c) => (c.body as { offset: number }).offset)).toEqual([0, 12, 24]);
    expect(searches[0]!.body).toMatchObject({
      collection: "C1",
      text_query: "a cat",
      mode: "vector",
      limit: 12,
      offset: 0,
      filter: { tags_any: ["cat"], max_nsfw: 0.3 },
      include_payload: true,
    });

    await user.click(screen.getByRole("button", { name: /photo 1, score/ }));
    const panel = await screen.findByRole("dialog");
    expect(within(panel).getByText("1 / 30")).toBeInTheDocument();
    expect(await within(panel).findByText("No duplicate found when it was added.")).toBeInTheDocument();
    await user.keyboard("{ArrowRight}");
    expect(within(panel).getByText("2 / 30")).toBeInTheDocument();
    // The verdict names the record, and opens its image.
    expect(await within(panel).findByTestId("verdict")).toHaveTextContent("Near-exact copy of photo 9");
    expect(within(panel).getByRole("button", { name: "photo 9" })).toBeInTheDocument();
    expect(within(panel).getByText(/"owner": "alice"/)).toBeInTheDocument();
    await user.keyboard("{ArrowLeft}{ArrowLeft}");
    expect(within(panel).getByText("1 / 30")).toBeInTheDocument();
    await user.keyboard("{Escape}");

    // The count is exact, and the weaker matches come on request.
    expect(screen.getByText("30 results")).toBeInTheDocument();
    expect(screen.getByText(/Weaker matches, below this model's relevance cut-off \(0.20\), are hidden/)).toBeInTheDocument();
    await user.click(screen.getByRole("button", { name: "Show weaker matches" }));
    await waitFor(() => expect(screen.getAllByTestId("result")).toHaveLength(36));
    expect(calls.filter((c) => c.path === "/api/search/similar").at(-1)!.body).toMatchObject({ include_weaker: true });
    expect(screen.queryByRole("button", { name: "Show weaker matches" })).not.toBeInTheDocument();
  });

  it("invites a first search", async () => {
    api();
    renderWithProviders(
      <CollectionProvider>
        <SearchPage />
      </CollectionProvider>,
    );
    expect(await screen.findByRole("heading", { name: "Find look-alikes" })).toBeInTheDocument();
  });

  it("says how to get text search on an image-only model, and offers no search it cannot run", async () => {
    const calls = api({ supportsText: false });
    const user = userEvent.setup();
    renderWithProviders(
      <CollectionProvider>
        <SearchPage />
      </CollectionProvider>,
    );
    await user.click(await screen.findByRole("tab", { name: "Text" }));
    expect(screen.getByLabelText("Describe what you look for")).toBeDisabled();
    const search = screen.getByRole("button", { name: "Search" });
    expect(search).toBeDisabled();
    expect(search).toHaveAccessibleDescription(/efficientnet-lite0\) embeds images only/);
    expect(search).toHaveAccessibleDescription(/pip install 'lookalike\[export\]'/);
    expect(search).toHaveAccessibleDescription(/lookalike model pull clip-vit-b-32-laion2b/);
    await user.click(screen.getByRole("tab", { name: "Image" }));
    expect(screen.getByRole("button", { name: "Search" })).toBeEnabled();
    expect(calls.filter((c) => c.path === "/api/search/similar")).toHaveLength(0);
  });

  it("says an unknown image does not exist, with a way back and no retry", async () => {
    api();
    const user = userEvent.setup();
    renderWithProviders(
      <CollectionProvider>
        <SearchPage />
      </CollectionProvider>,
      { route: "/search?image=GONE" },
    );
    expect(await screen.findByRole("heading", { name: "No such image" })).toBeInTheDocument();
    expect(screen.getByText("GONE")).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Retry" })).not.toBeInTheDocument();
    await user.click(screen.getByRole("button", { name: "Back to search" }));
    expect(await screen.findByRole("heading", { name: "Find look-alikes" })).toBeInTheDocument();
    expect(screen.getByLabelText("…or an image id")).toHaveValue("");
  });
});
