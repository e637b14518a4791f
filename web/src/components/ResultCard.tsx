import { clsx } from "clsx";

import type { Hit } from "@/api/types";
import { formatScore } from "@/lib/format";

import { AuthImage } from "./AuthImage";

export function ResultCard({ hit, onOpen, active = false }: { hit: Hit; onOpen: () => void; active?: boolean }) {
  return (
    <button
      type="button"
      onClick={onOpen}
      data-testid="result"
      className={clsx(
        "group block w-full overflow-hidden rounded-lg border bg-white text-left shadow-sm transition hover:shadow-md",
        active ? "border-brand-500 ring-2 ring-brand-500" : "border-slate-200",
      )}
      aria-label={`${hit.name}, score ${formatScore(hit.score)}`}
    >
      <AuthImage src={hit.preview_url} alt={hit.name} className="aspect-square w-full" />
      <div className="flex items-center justify-between gap-2 px-2.5 py-2">
        <span className="truncate text-sm font-medium text-slate-800" title={hit.name}>
          {hit.name}
        </span>
        <span className="shrink-0 rounded bg-slate-100 px-1.5 py-0.5 font-mono text-xs tabular-nums text-slate-700">
          {formatScore(hit.score)}
        </span>
      </div>
    </button>
  );
}
