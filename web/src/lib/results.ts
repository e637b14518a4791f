import { toast } from "sonner";

import type { IngestResult } from "@/api/types";

/** One toast that sums up what an ingest did: added, duplicates, and each rejection's reason. */
export function announceResults(results: IngestResult[]): void {
  const added = results.filter((r) => r.status === "added").length;
  const duplicates = results.filter((r) => r.status === "duplicate");
  const rejected = results.filter((r) => r.status === "rejected");
  if (added) toast.success(`${added} image${added === 1 ? "" : "s"} added; embedding in the background`);
  if (duplicates.length) {
    toast.info(
      `${duplicates.length} already in the collection: ${duplicates.map((d) => d.filename ?? d.image_id).join(", ")}`,
    );
  }
  for (const r of rejected) toast.error(`${r.filename ?? "A file"} was rejected: ${r.error?.message ?? "not accepted"}`);
}
