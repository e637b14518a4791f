import { describe, expect, it } from "vitest";

import type { IngestResult } from "@/api/types";

import { mockApi } from "@/test/api";

import { followDocument, isPdf, uploadOutcome, type PageProgress, type UploadProgress } from "./upload";

const added: IngestResult = { filename: "a.jpg", status: "added", image_id: "I1", record_id: "R1", job_id: "J1" };
const duplicate: IngestResult = { filename: "b.jpg", status: "duplicate", image_id: "I0", record_id: "R0" };
const rejected: IngestResult = { filename: "c.jpg", status: "rejected", image_id: null, record_id: null };

describe("uploadOutcome", () => {
  it("puts a file in exactly one count at every step, so the counts add up to the files", () => {
    // One file's whole life: an added image is in progress while it is embedded.
    const steps: [UploadProgress, string][] = [
      [{ phase: "queued", sent: 0 }, "active"],
      [{ phase: "uploading", sent: 0.5 }, "active"],
      [{ phase: "ingesting", sent: 1 }, "active"],
      [{ phase: "embedding", sent: 1, result: added }, "active"],
      [{ phase: "done", sent: 1, result: added }, "added"],
    ];
    for (const [progress, outcome] of steps) expect(uploadOutcome(progress)).toBe(outcome);

    expect(uploadOutcome({ phase: "done", sent: 1, result: duplicate })).toBe("duplicate");
    expect(uploadOutcome({ phase: "done", sent: 1, result: rejected })).toBe("rejected");
    expect(uploadOutcome({ phase: "failed", sent: 0, error: "network error while uploading" })).toBe("rejected");
  });
});

describe("followDocument", () => {
  it("polls the record of a PDF until no page waits, reporting each step", async () => {
    // Three pages made at ingest, embedded one per look; the last one fails.
    const states = [
      ["pending", "pending", "pending"],
      ["embedded", "pending", "pending"],
      ["embedded", "embedded", "pending"],
      ["embedded", "embedded", "failed"],
    ];
    let look = 0;
    mockApi({
      "GET /api/records/R1": () => {
        const statuses = states[Math.min(look++, states.length - 1)]!;
        return {
          body: {
            id: "R1",
            name: "bridges",
            metadata: { page_count: 3 },
            images: statuses.map((status, i) => ({ id: `P${i + 1}`, page: i + 1, status })),
          },
        };
      },
    });
    const seen: PageProgress[] = [];
    const last = await followDocument("R1", (p) => seen.push(p), { pollMs: 1 });
    expect(seen.map((p) => p.embedded)).toEqual([0, 1, 2, 2]);
    expect(seen.every((p) => p.total === 3)).toBe(true);
    expect(last).toEqual({ embedded: 2, failed: 1, total: 3 });
  });

  it("knows a PDF by its type or its name", () => {
    expect(isPdf(new File([], "a.pdf", { type: "application/pdf" }))).toBe(true);
    expect(isPdf(new File([], "REPORT.PDF"))).toBe(true);
    expect(isPdf(new File([], "a.jpg", { type: "image/jpeg" }))).toBe(false);
  });
});
