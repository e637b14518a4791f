import { screen, waitFor } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { mockApi, type Call } from "@/test/api";
import { renderWithProviders } from "@/test/render";

import { DetailPanel } from "./DetailPanel";

const STAGES = ["thumbnail", "quality", "nsfw", "duplicate", "anomaly"] as const;

function image(enriched: boolean) {
  return {
    id: "IMG1",
    record_id: "REC1",
    collection_id: "C1",
    sha256: "x",
    phash: "8d87746883d70eb5",
    width: 640,
    height: 480,
    mime: "image/jpeg",
    bytes: 50_000,
    source: "upload",
    filename: "IMG1.jpg",
    status: "embedded",
    error: null,
    quality_score: enriched ? 0.71 : null,
    nsfw_score: enriched ? 0.02 : null,
    anomaly: { dnn: null, density: null, ood: null, reviewed_at: null },
    duplicate: enriched ? { tier: "near_exact", image_id: "IMG0", score: 0.97 } : null,
    created_at: "2026-01-01T00:00:00Z",
    thumbnail_url: "/api/images/IMG1/thumbnail",
    preview_url: "/api/images/IMG1/thumbnail",
    original_url: "/api/images/IMG1/original",
    enrichment: Object.fromEntries(STAGES.map((s) => [s, enriched ? "done" : "pending"])),
  };
}

describe("DetailPanel", () => {
  it("says what is not computed yet, then shows it once enrichment is done", async () => {
    let reads = 0;
    mockApi({
      // Searchable but not enriched on the first read; enriched from the second on.
      "GET /api/images/:id": () => ({ body: image(reads++ > 0) }),
      "GET /api/records/:id": ({ path }: Call) => ({
        body: { id: path.split("/")[3], name: "cat", description: "", tags: [], owner: "alice", images: [] },
      }),
      "POST /api/search/similar": () => ({ body: { hits: [], collection: "C1", model_id: "m" } }),
      "GET /api/images/:id/feedback": () => ({ body: [] }),
    });
    renderWithProviders(
      <DetailPanel imageId="IMG1" collection="C1" onClose={() => {}} onOpenImage={() => {}} onSearchLike={() => {}} />,
    );
    expect(await screen.findAllByText("not computed yet")).toHaveLength(2);
    expect(screen.getByText(/its duplicate check is queued/)).toBeInTheDocument();
    expect(screen.getByText("quality: pending")).toBeInTheDocument();
    // The panel looks again while stages are pending.
    await waitFor(() => expect(screen.getByText("0.710")).toBeInTheDocument(), { timeout: 5000 });
    // An older verdict without the record's name: it is looked up, never shown as a raw id.
    await waitFor(() => expect(screen.getByTestId("verdict")).toHaveTextContent("Near-exact copy of cat"));
    expect(screen.getByText("quality: done")).toBeInTheDocument();
    expect(screen.queryByText("not computed yet")).not.toBeInTheDocument();
  });
});
