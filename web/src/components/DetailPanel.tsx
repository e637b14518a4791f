/** Everything about one image: preview, record, payload, look-alikes, duplicate verdict, feedback. */
import { ChevronLeft, ChevronRight, ClipboardCopy, ExternalLink, Link2, ScanSearch } from "lucide-react";
import type { KeyboardEvent, ReactNode } from "react";
import { Link } from "react-router-dom";

import { absoluteUrl } from "@/api/client";
import type { DuplicateVerdict } from "@/api/types";
import { useImage, useRecord, useSimilar } from "@/api/queries";
import type { Hit } from "@/api/types";
import { copyText } from "@/lib/clipboard";
import { formatBytes, formatDate, formatScore } from "@/lib/format";

import { AuthImage } from "./AuthImage";
import { Sheet } from "./Dialog";
import { DuplicateOf } from "./DuplicateOf";
import { FeedbackButtons, FeedbackHistory } from "./FeedbackButtons";
import { StatusBadge } from "./StatusBadge";
import { Badge, Button, ErrorState, Skeleton } from "./ui";

function Section({ title, children }: { title: string; children: ReactNode }) {
  return (
    <section className="border-t border-slate-100 px-5 py-4">
      <h3 className="mb-2 text-xs font-semibold uppercase tracking-wide text-slate-500">{title}</h3>
      {children}
    </section>
  );
}

function Row({ label, children }: { label: string; children: ReactNode }) {
  return (
    <div className="flex justify-between gap-4 py-0.5 text-sm">
      <dt className="text-slate-500">{label}</dt>
      <dd className="min-w-0 truncate text-right text-slate-800">{children}</dd>
    </div>
  );
}

/** A stage that has not run yet (or is running). */
function isUnfinished(state: string | undefined): boolean {
  return state === "pending" || state === "running";
}

/** A computed score, or why there is none yet. */
function scoreOrState(score: number | null | undefined, state: string | undefined): string {
  if (score !== null && score !== undefined) return formatScore(score);
  if (isUnfinished(state)) return "not computed yet";
  if (state === "failed") return "failed";
  if (state === "skipped") return "not scored";
  return formatScore(score);
}

export function DuplicateVerdictView({ verdict, onOpen }: { verdict: DuplicateVerdict | null | undefined; onOpen?: (id: string) => void }) {
  if (verdict === undefined) return <p className="text-sm text-slate-500">Not checked for this image.</p>;
  if (verdict === null) return <p className="text-sm text-slate-600">No duplicate found when it was added.</p>;
  return (
    <p className="flex flex-wrap items-baseline gap-x-2 text-sm">
      <DuplicateOf tier={verdict.tier} recordId={verdict.record_id} recordName={verdict.record_name} imageId={verdict.image_id} onOpen={onOpen} />
      <span className="text-slate-500">score {formatScore(verdict.score)}</span>
    </p>
  );
}

export function DetailPanel({
  imageId,
  hit,
  collection,
  query,
  position,
  onClose,
  onStep,
  onOpenImage,
  onSearchLike,
}: {
  imageId: string;
  hit?: Hit | undefined;
  collection: string;
  query?: { image_id?: string; text?: string } | undefined;
  position?: { index: number; total: number; more: boolean } | undefined;
  onClose: () => void;
  onStep?: ((delta: -1 | 1) => void) | undefined;
  onOpenImage: (imageId: string) => void;
  onSearchLike: (imageId: string) => void;
}) {
  const image = useImage(imageId);
  const record = useRecord(image.data?.record_id ?? hit?.record_id);
  const similar = useSimilar(collection, imageId);
  const title = record.data?.name ?? hit?.name ?? "Image";

  function onKeyDown(event: KeyboardEvent) {
    const target = event.target as HTMLElement;
    if (target.closest("input, textarea, select")) return;
    if (event.key === "ArrowLeft" && onStep) {
      event.preventDefault();
      onStep(-1);
    } else if (event.key === "ArrowRight" && onStep) {
      event.preventDefault();
      onStep(1);
    }
  }

  const previewUrl = image.data?.preview_url ?? hit?.preview_url;
  return (
    <Sheet open onOpenChange={(open) => !open && onClose()} title={title} onKeyDown={onKeyDown}>
      <div className="bg-slate-900">
        <AuthImage
          eager
          src={image.data?.original_url ?? previewUrl}
          alt={title}
          fit="contain"
          className="mx-auto h-72 w-full bg-slate-900 sm:h-96"
        />
      </div>
      <div className="flex flex-wrap items-center gap-2 px-5 py-3">
        {position && onStep && (
          <div className="mr-auto flex items-center gap-1" aria-label="Browse results">
            <Button size="sm" onClick={() => onStep(-1)} disabled={position.index === 0} aria-label="Previous result">
              <ChevronLeft className="size-4" aria-hidden />
            </Button>
            <span className="text-xs text-slate-500" aria-live="polite">
              {position.index + 1} / {position.total}
              {position.more ? "+" : ""}
            </span>
            <Button
              size="sm"
              onClick={() => onStep(1)}
              disabled={position.index + 1 >= position.total && !position.more}
              aria-label="Next result"
            >
              <ChevronRight className="size-4" aria-hidden />
            </Button>
            <span className="ml-2 hidden text-xs text-slate-400 sm:inline">← → to browse</span>
          </div>
        )}
        <Button size="sm" onClick={() => void copyText(imageId, "Image id")}>
          <ClipboardCopy className="size-4" aria-hidden /> Copy id
        </Button>
        {previewUrl && (
          <Button size="sm" onClick={() => void copyText(absoluteUrl(previewUrl), "Preview URL")}>
            <Link2 className="size-4" aria-hidden /> Copy preview URL
          </Button>
        )}
        <Button size="sm" variant="primary" onClick={() => onSearchLike(imageId)}>
          <ScanSearch className="size-4" aria-hidden /> Find similar
        </Button>
      </div>

      {hit && (
        <Section title="Match">
          <dl>
            <Row label="Score">{formatScore(hit.score, 4)}</Row>
          </dl>
        </Section>
      )}

      <Section title="Record">
        {record.isLoading ? (
          <Skeleton className="h-16" />
        ) : record.data ? (
          <div className="space-y-2 text-sm">
            <div className="flex items-center justify-between gap-2">
              <p className="font-medium">{record.data.name}</p>
              <Link to={`/records/${record.data.id}`} className="inline-flex items-center gap-1 text-xs text-brand-700 underline">
                Edit record <ExternalLink className="size-3" aria-hidden />
              </Link>
            </div>
            <p className="whitespace-pre-line text-slate-600">{record.data.description || "No description"}</p>
            <div className="flex flex-wrap gap-1">
              {record.data.tags.map((t) => (
                <Badge key={t} tone="blue">
                  {t}
                </Badge>
              ))}
              <Badge>owner {record.data.owner}</Badge>
            </div>
          </div>
        ) : (
          <p className="text-sm text-slate-500">{hit?.name ?? "Unknown record"}</p>
        )}
      </Section>

      <Section title="Image">
        {image.isLoading ? (
          <Skeleton className="h-24" />
        ) : image.error ? (
          <ErrorState error={image.error} />
        ) : image.data ? (
          <dl>
            <Row label="Id">
              <span className="font-mono text-xs">{image.data.id}</span>
            </Row>
            <Row label="Status">
              <StatusBadge status={image.data.status} title={image.data.error ?? undefined} />
            </Row>
            <Row label="Size">
              {image.data.width}×{image.data.height} · {image.data.mime} · {formatBytes(image.data.bytes)}
            </Row>
            <Row label="Quality">{scoreOrState(image.data.quality_score, image.data.enrichment?.quality)}</Row>
            <Row label="NSFW">{scoreOrState(image.data.nsfw_score, image.data.enrichment?.nsfw)}</Row>
            <Row label="pHash">
              <span className="font-mono text-xs">{image.data.phash ?? "–"}</span>
            </Row>
            <Row label="Added">{formatDate(image.data.created_at)}</Row>
            {image.data.enrichment && Object.keys(image.data.enrichment).length > 0 ? (
              <Row label="Enrichment">
                <span className="inline-flex flex-wrap justify-end gap-1" aria-label="Enrichment stages">
                  {Object.entries(image.data.enrichment).map(([stage, state]) => (
                    <StatusBadge key={stage} status={`${stage}: ${state}`} tone={state} />
                  ))}
                </span>
              </Row>
            ) : null}
          </dl>
        ) : null}
      </Section>

      <Section title="Duplicate verdict">
        {!image.data ? (
          <Skeleton className="h-6" />
        ) : isUnfinished(image.data.enrichment?.duplicate) ? (
          <p className="text-sm text-slate-500">Not checked yet: the image is searchable, its duplicate check is queued.</p>
        ) : (
          <DuplicateVerdictView verdict={image.data.duplicate} onOpen={onOpenImage} />
        )}
      </Section>

      <Section title="Feedback">
        <FeedbackButtons imageId={imageId} query={query} />
        <div className="mt-3">
          <FeedbackHistory imageId={imageId} />
        </div>
      </Section>

      <Section title="Similar images">
        {similar.isLoading ? (
          <div className="grid grid-cols-4 gap-2">
            {[0, 1, 2, 3].map((i) => (
              <Skeleton key={i} className="aspect-square" />
            ))}
          </div>
        ) : similar.error ? (
          <p className="text-sm text-red-700">Look-alikes unavailable.</p>
        ) : similar.data?.hits.length ? (
          <ul className="grid grid-cols-4 gap-2" aria-label="Similar images">
            {similar.data.hits.map((h) => (
              <li key={h.image_id}>
                <button
                  type="button"
                  onClick={() => onOpenImage(h.image_id)}
                  className="block w-full overflow-hidden rounded-md text-left ring-brand-500 hover:ring-2"
                  aria-label={`Open ${h.name} (score ${formatScore(h.score)})`}
                >
                  <AuthImage src={h.preview_url} alt={h.name} className="aspect-square w-full" />
                  <span className="block truncate px-1 py-0.5 text-[11px] text-slate-600">{formatScore(h.score)}</span>
                </button>
              </li>
            ))}
          </ul>
        ) : (
          <p className="text-sm text-slate-500">No other image in this collection.</p>
        )}
      </Section>

      {hit?.payload && (
        <Section title="Payload">
          <pre className="max-h-64 overflow-auto rounded-md bg-slate-50 p-3 text-xs text-slate-700">
            {JSON.stringify(hit.payload, null, 2)}
          </pre>
        </Section>
      )}
    </Sheet>
  );
}
