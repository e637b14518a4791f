/** One file of an upload batch: its progress, then what became of it. */
import { CheckCircle2, CircleAlert, Copy, FileText, Loader2 } from "lucide-react";
import type { ReactNode } from "react";
import { Link } from "react-router-dom";

import { useImage } from "@/api/queries";
import { formatBytes, pluralize } from "@/lib/format";
import { isPdf, type PageProgress, type UploadProgress } from "@/lib/upload";

import { DuplicateOf } from "./DuplicateOf";
import { StatusBadge } from "./StatusBadge";

const phaseLabel: Record<UploadProgress["phase"], string> = {
  queued: "Waiting",
  uploading: "Uploading",
  ingesting: "Checking",
  embedding: "Embedding",
  done: "Done",
  failed: "Failed",
};

/** An added image's duplicate verdict, once its duplicate check has run (the image is looked
 * at again until then). */
function AddedVerdict({ imageId }: { imageId: string }) {
  const verdict = useImage(imageId).data?.duplicate;
  if (!verdict) return null;
  return <DuplicateOf tier={verdict.tier} recordId={verdict.record_id} recordName={verdict.record_name} imageId={verdict.image_id} />;
}

function Bar({ label, percent }: { label: string; percent: number }) {
  return (
    <div
      className="h-1.5 flex-1 overflow-hidden rounded-full bg-slate-200"
      role="progressbar"
      aria-label={label}
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={percent}
    >
      <div className="h-full rounded-full bg-brand-500 transition-[width]" style={{ width: `${percent}%` }} />
    </div>
  );
}

/** An added PDF: its pages embedded one by one, then what became of them. */
function DocumentPages({ name, recordId, pages, done }: { name: string; recordId: string | null | undefined; pages: PageProgress | undefined; done: boolean }) {
  const link = recordId && (
    <Link to={`/records/${recordId}`} className="text-brand-700 underline">
      open record
    </Link>
  );
  if (done && pages) {
    return (
      <span className="flex flex-wrap items-center gap-2" data-testid="page-progress">
        Added: {pages.embedded} of {pluralize(pages.total, "page")} embedded
        {pages.failed > 0 && <span className="text-red-700">{pages.failed} failed</span>}
        {link}
      </span>
    );
  }
  const percent = pages && pages.total ? Math.round((pages.embedded / pages.total) * 100) : 0;
  return (
    <span className="block">
      <span className="flex items-center gap-2">Added {link}</span>
      <span className="mt-1 flex items-center gap-2">
        <Bar label={`Pages of ${name}`} percent={percent} />
        <span className="shrink-0 text-right text-xs text-slate-500" data-testid="page-progress">
          {pages ? `page ${pages.embedded} of ${pages.total} embedded` : "Reading the pages"}
        </span>
      </span>
    </span>
  );
}

export function UploadRow({ file, progress }: { file: File; progress: UploadProgress }) {
  const { phase, result, job, error } = progress;
  const percent = Math.round(progress.sent * 100);
  let outcome: ReactNode = null;
  let icon = <Loader2 className="size-4 animate-spin text-slate-400" aria-hidden />;
  if (error) {
    icon = <CircleAlert className="size-4 text-red-600" aria-hidden />;
    outcome = <span className="text-red-700">{error}</span>;
  } else if (result?.status === "rejected") {
    icon = <CircleAlert className="size-4 text-red-600" aria-hidden />;
    outcome = <span className="text-red-700">Rejected: {result.error?.message ?? "not accepted"}</span>;
  } else if (result?.status === "duplicate") {
    icon = <Copy className="size-4 text-brand-600" aria-hidden />;
    outcome = (
      <DuplicateOf
        tier="exact"
        recordId={result.duplicate?.record_id ?? result.record_id}
        recordName={result.duplicate?.record_name}
        imageId={result.image_id}
      />
    );
  } else if (result?.status === "added" && isPdf(file)) {
    if (phase === "done") {
      icon = progress.pages?.failed ? <CircleAlert className="size-4 text-red-600" aria-hidden /> : <CheckCircle2 className="size-4 text-emerald-600" aria-hidden />;
    } else {
      icon = <FileText className="size-4 text-slate-400" aria-hidden />;
    }
    outcome = <DocumentPages name={file.name} recordId={result.record_id} pages={progress.pages} done={phase === "done"} />;
  } else if (result?.status === "added") {
    if (phase === "done") {
      icon =
        job?.status === "failed" ? (
          <CircleAlert className="size-4 text-red-600" aria-hidden />
        ) : (
          <CheckCircle2 className="size-4 text-emerald-600" aria-hidden />
        );
    }
    outcome = (
      <span className="flex items-center gap-2">
        Added
        {result.record_id && (
          <Link to={`/records/${result.record_id}`} className="text-brand-700 underline">
            open record
          </Link>
        )}
        {job && <StatusBadge status={job.status === "done" ? "embedded" : job.status} title={job.error ?? undefined} />}
        {job?.error && <span className="text-red-700">{job.error}</span>}
        {result.duplicate ? (
          <DuplicateOf
            tier={result.duplicate.tier}
            recordId={result.duplicate.record_id}
            recordName={result.duplicate.record_name}
            imageId={result.duplicate.image_id}
          />
        ) : (
          phase === "done" && job?.status === "done" && result.image_id && <AddedVerdict imageId={result.image_id} />
        )}
      </span>
    );
  }
  const status = result?.status ?? (error ? "failed" : phaseLabel[phase]);
  return (
    <li className="flex items-center gap-3 px-4 py-3" data-testid="upload-row" data-status={status} data-phase={phase}>
      {icon}
      <div className="min-w-0 flex-1">
        <div className="flex items-baseline justify-between gap-2">
          <p className="truncate text-sm font-medium text-slate-900" title={file.name}>
            {file.name}
          </p>
          <span className="shrink-0 text-xs text-slate-500">{formatBytes(file.size)}</span>
        </div>
        {outcome ? (
          <div className="mt-0.5 text-sm">{outcome}</div>
        ) : (
          <div className="mt-1.5 flex items-center gap-2">
            <Bar label={`Upload of ${file.name}`} percent={percent} />
            <span className="w-20 text-right text-xs text-slate-500">
              {phaseLabel[phase]} {phase === "uploading" ? `${percent}%` : ""}
            </span>
          </div>
        )}
      </div>
    </li>
  );
}
