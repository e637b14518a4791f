import { describe, expect, it } from "vitest";

import type { IngestResult } from "@/api/types";

import { uploadOutcome, type UploadProgress } from "./upload";

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
