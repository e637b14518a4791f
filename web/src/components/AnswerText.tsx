/** An answer's text with its `[n]` markers as chips that open the cited source. */
import { Fragment } from "react";

import type { AskSource } from "@/api/types";
import { splitCitations } from "@/lib/ask";

function sourceLabel(source: AskSource | undefined, n: number): string {
  if (!source) return `Source ${n}`;
  return source.page ? `Source ${n}: ${source.name}, page ${source.page}` : `Source ${n}: ${source.name}`;
}

export function AnswerText({
  text,
  sources,
  onOpen,
}: {
  text: string;
  sources: AskSource[];
  onOpen: (source: number) => void;
}) {
  return (
    <p className="whitespace-pre-wrap text-[15px] leading-7 text-slate-800" data-testid="answer">
      {splitCitations(text).map((part, i) =>
        part.kind === "text" ? (
          <Fragment key={i}>{part.text}</Fragment>
        ) : (
          <span key={i} className="mx-0.5 inline-flex gap-0.5 align-baseline">
            {part.sources.map((n) => {
              const source = sources.find((s) => s.number === n);
              return (
                <button
                  key={n}
                  type="button"
                  data-testid="citation-chip"
                  aria-label={`Open ${sourceLabel(source, n)}`}
                  title={sourceLabel(source, n)}
                  disabled={!source}
                  onClick={() => onOpen(n)}
                  className="inline-flex h-5 min-w-5 items-center justify-center rounded-full bg-brand-50 px-1.5 text-xs font-semibold text-brand-700 ring-1 ring-inset ring-brand-100 hover:bg-brand-100 focus-visible:outline-2 focus-visible:outline-brand-600 disabled:cursor-default disabled:opacity-60"
                >
                  {n}
                </button>
              );
            })}
          </span>
        ),
      )}
    </p>
  );
}
