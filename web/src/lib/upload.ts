/**
 * One browser upload, the way the API wants it from a browser: presign, PUT the bytes to the
 * signed URL (with progress), ingest by key, then follow the embedding job. A PDF goes the same
 * way and becomes one record, an image per page; its pages are followed on the record, since
 * the ingest answers with the first page's job only.
 */
import { api, unwrap } from "@/api/client";
import { ApiError } from "@/api/errors";
import type { CatalogRecord, IngestResult, Job } from "@/api/types";

export type UploadPhase = "queued" | "uploading" | "ingesting" | "embedding" | "done" | "failed";

export interface UploadProgress {
  phase: UploadPhase;
  /** 0..1 of the bytes sent. */
  sent: number;
  result?: IngestResult;
  job?: Job;
  /** A PDF's pages, once it is a record: how many are embedded (or failed) of how many. */
  pages?: PageProgress;
  error?: string;
}

export interface PageProgress {
  embedded: number;
  failed: number;
  total: number;
}

export function isPdf(file: File): boolean {
  return file.type === "application/pdf" || /\.pdf$/i.test(file.name);
}

/** Where a file stands in a batch's summary: each file is in exactly one of these, so the counts
 * always add up to the number of files (a file being embedded is in progress, not yet added). */
export type UploadOutcome = "active" | "added" | "duplicate" | "rejected";

export function uploadOutcome({ phase, result, error }: UploadProgress): UploadOutcome {
  if (error || phase === "failed") return "rejected";
  if (phase !== "done") return "active";
  if (result?.status === "added") return "added";
  if (result?.status === "duplicate") return "duplicate";
  return "rejected";
}

export function stem(filename: string): string {
  const base = filename.split(/[\\/]/).pop() ?? filename;
  const dot = base.lastIndexOf(".");
  return (dot > 0 ? base.slice(0, dot) : base) || "untitled";
}

/** Where and how the bytes go: the API itself, or (blobs on S3) the bucket, straight. */
export interface UploadTarget {
  url: string;
  method?: string;
  /** Headers the signature covers; they must be sent as they are. */
  headers?: Record<string, string>;
}

/** Send `file` to a presigned URL, reporting the fraction sent (fetch cannot report it). */
export function putWithProgress(
  target: UploadTarget,
  file: Blob,
  onProgress: (fraction: number) => void,
  signal?: AbortSignal,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(target.method ?? "PUT", target.url);
    xhr.setRequestHeader("Content-Type", file.type || "application/octet-stream");
    for (const [name, value] of Object.entries(target.headers ?? {})) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable && event.total > 0) onProgress(event.loaded / event.total);
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve();
        return;
      }
      let body: unknown = xhr.responseText;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        // a plain-text error body is used as it is
      }
      reject(ApiError.from(xhr.status, body));
    };
    xhr.onerror = () => reject(new TypeError("network error while uploading"));
    xhr.onabort = () => reject(new DOMException("upload cancelled", "AbortError"));
    signal?.addEventListener("abort", () => xhr.abort(), { once: true });
    xhr.send(file);
  });
}

export interface UploadOptions {
  collection: string;
  /** Add to this record; otherwise one new record per file, named after the file. */
  recordId?: string | undefined;
  tags?: string[] | undefined;
  signal?: AbortSignal | undefined;
  /** How often to ask for the embedding job's status. */
  pollMs?: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function uploadImage(
  file: File,
  options: UploadOptions,
  report: (progress: UploadProgress) => void,
): Promise<UploadProgress> {
  let state: UploadProgress = { phase: "uploading", sent: 0 };
  const set = (next: Partial<UploadProgress>) => {
    state = { ...state, ...next };
    report(state);
  };
  set({});
  const presigned = await unwrap(
    // With the size, an S3 bucket itself refuses a byte more than was announced.
    api.POST("/api/images/presign", {
      body: { collection: options.collection, filename: file.name, size: file.size },
    }),
  );
  if (file.size > presigned.max_bytes) {
    throw new ApiError(413, "too_large", `${file.name} is larger than the ${presigned.max_bytes} bytes allowed`);
  }
  await putWithProgress(presigned, file, (sent) => set({ sent }), options.signal);
  set({ phase: "ingesting", sent: 1 });
  const result = await unwrap(
    api.POST("/api/images/ingest", {
      body: options.recordId
        ? { key: presigned.key, record_id: options.recordId }
        : { key: presigned.key, record: { name: stem(file.name), description: "", tags: options.tags ?? [] } },
    }),
  );
  if (result.status !== "added" || !result.job_id) {
    set({ phase: "done", result });
    return state;
  }
  set({ phase: "embedding", result });
  if (isPdf(file) && result.record_id) {
    const pages = await followDocument(result.record_id, (p) => set({ pages: p }), options);
    set({ phase: "done", pages });
    return state;
  }
  for (;;) {
    if (options.signal?.aborted) throw new DOMException("upload cancelled", "AbortError");
    const job = await unwrap(api.GET("/api/jobs/{job_id}", { params: { path: { job_id: result.job_id } } }));
    if (job.status === "done" || job.status === "failed") {
      set({ phase: "done", job });
      return state;
    }
    set({ job });
    await sleep(options.pollMs ?? 700);
  }
}

/** Where a document's pages stand: its images are all made at ingest (pending), then each is
 * embedded or fails. */
export function pageProgress(record: CatalogRecord): PageProgress {
  const pageCount = record.metadata.page_count;
  const embedded = record.images.filter((i) => i.status === "embedded").length;
  const failed = record.images.filter((i) => i.status === "failed").length;
  const total = typeof pageCount === "number" ? Math.max(pageCount, record.images.length) : record.images.length;
  return { embedded, failed, total };
}

/** Poll the record of an ingested PDF until none of its page images waits any more. */
export async function followDocument(
  recordId: string,
  report: (pages: PageProgress) => void,
  options: Pick<UploadOptions, "signal" | "pollMs"> = {},
): Promise<PageProgress> {
  for (;;) {
    if (options.signal?.aborted) throw new DOMException("upload cancelled", "AbortError");
    const record = (await unwrap(api.GET("/api/records/{record_id}", { params: { path: { record_id: recordId } } }))) as CatalogRecord;
    const pages = pageProgress(record);
    report(pages);
    if (record.images.length > 0 && record.images.every((i) => i.status !== "pending")) return pages;
    await sleep(options.pollMs ?? 700);
  }
}

/** Run `worker` over `items`, at most `limit` at a time. */
export async function eachLimited<T>(items: T[], limit: number, worker: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await worker(item);
    }
  });
  await Promise.all(lanes);
}
