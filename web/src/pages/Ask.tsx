/**
 * Ask a question of the current collection: the pages and images that answer it are found
 * first and listed at once, the model's answer streams in beside them, then its citations; a
 * citation opens its page with the supporting words highlighted.
 */
import { Info, MessageSquareText, Quote, Send, Square } from "lucide-react";
import { useCallback, useEffect, useRef, useState, type FormEvent } from "react";
import { Link } from "react-router-dom";

import { ApiError } from "@/api/errors";
import type { AskResponse, AskSource, Citation } from "@/api/types";
import { AnswerText } from "@/components/AnswerText";
import { AuthImage } from "@/components/AuthImage";
import { CitationViewer, type CitedPage } from "@/components/CitationViewer";
import { Badge, Button, Card, EmptyState, ErrorState, Input, PageHeader, Spinner } from "@/components/ui";
import { askStream } from "@/lib/ask";
import { useCurrentCollection } from "@/lib/collection";

type Status = "idle" | "asking" | "streaming" | "done" | "stopped" | "failed";

interface AskState {
  status: Status;
  sources: AskSource[];
  answer: string;
  response: AskResponse | null;
  error: unknown;
}

const EMPTY: AskState = { status: "idle", sources: [], answer: "", response: null, error: null };

function isAbort(error: unknown): boolean {
  return error instanceof DOMException && error.name === "AbortError";
}

function errorTitle(error: unknown, partial: boolean): string {
  if (error instanceof ApiError && error.code === "llm_unavailable") return "The chat model cannot answer";
  return partial ? "The answer stopped half-way" : "Cannot answer";
}

function pageLabel(page: number | null | undefined): string {
  return page ? ` · page ${page}` : "";
}

function SourceItem({ source, onOpen }: { source: AskSource; onOpen: () => void }) {
  return (
    <li>
      <button
        type="button"
        onClick={onOpen}
        data-testid="ask-source"
        className="flex w-full items-start gap-3 rounded-md p-2 text-left hover:bg-slate-50 focus-visible:outline-2 focus-visible:outline-brand-600"
      >
        <AuthImage src={source.preview_url} alt={`${source.name}${pageLabel(source.page)}`} className="size-16 shrink-0 rounded border border-slate-200" />
        <span className="min-w-0 flex-1 text-sm">
          <span className="flex items-baseline gap-1.5">
            <span className="font-semibold text-brand-700">[{source.number}]</span>
            <span className="truncate font-medium text-slate-900">{source.name}</span>
          </span>
          <span className="mt-0.5 block text-xs text-slate-500">
            {source.page ? `page ${source.page} · ` : ""}score {source.score.toFixed(3)}
            {source.matched.length > 0 && ` · ${source.matched.join(" + ")}`}
          </span>
          {!source.in_prompt && (
            <Badge tone="amber" className="mt-1">
              not shown to the model
            </Badge>
          )}
        </span>
      </button>
    </li>
  );
}

function CitationItem({ citation, onOpen }: { citation: Citation; onOpen: () => void }) {
  return (
    <li>
      <button
        type="button"
        onClick={onOpen}
        data-testid="citation"
        className="flex w-full gap-3 rounded-md border border-slate-200 p-3 text-left hover:border-brand-300 hover:bg-brand-50/40 focus-visible:outline-2 focus-visible:outline-brand-600"
      >
        <Quote className="mt-0.5 size-4 shrink-0 text-brand-600" aria-hidden />
        <span className="min-w-0 text-sm">
          <span className="font-medium text-slate-900">
            [{citation.source}] {citation.name}
            {pageLabel(citation.page)}
          </span>
          <span className="mt-0.5 block text-slate-600">“{citation.text}”</span>
          {!citation.cited_by_model && <span className="mt-0.5 block text-xs text-slate-500">matched by shared words, not cited by the model</span>}
        </span>
      </button>
    </li>
  );
}

export function AskPage() {
  const { collection, isLoading } = useCurrentCollection();
  const [question, setQuestion] = useState("");
  const [state, setState] = useState<AskState>(EMPTY);
  const [cited, setCited] = useState<CitedPage | null>(null);
  const abort = useRef<AbortController | null>(null);

  // Leaving the page stops an answer still being written.
  useEffect(() => () => abort.current?.abort(), []);

  const submit = useCallback(
    async (event?: FormEvent) => {
      event?.preventDefault();
      const asked = question.trim();
      if (!collection || !asked) return;
      abort.current?.abort();
      const controller = new AbortController();
      abort.current = controller;
      setCited(null);
      setState({ ...EMPTY, status: "asking" });
      // A question asked again before the last answer ended: the old one no longer writes here.
      const update = (next: (s: AskState) => AskState) => {
        if (abort.current === controller) setState(next);
      };
      try {
        await askStream(
          { question: asked, collection: collection.id },
          {
            onSources: (sources) => update((s) => ({ ...s, status: "streaming", sources })),
            onDelta: (text) => update((s) => ({ ...s, answer: s.answer + text })),
            onDone: (response) =>
              update((s) => ({ ...s, status: "done", response, sources: response.sources, answer: response.answer ?? s.answer })),
          },
          controller.signal,
        );
      } catch (error) {
        if (controller.signal.aborted || isAbort(error)) {
          update((s) => (s.status === "done" ? s : { ...s, status: "stopped" }));
        } else {
          update((s) => ({ ...s, status: "failed", error }));
        }
      } finally {
        if (abort.current === controller) abort.current = null;
      }
    },
    [collection, question],
  );

  const { status, sources, answer, response, error } = state;
  const busy = status === "asking" || status === "streaming";

  const openSource = (n: number) => {
    const source = sources.find((s) => s.number === n);
    const citation = response?.citations.find((c) => c.source === n);
    if (!source && !citation) return;
    const page = citation ?? source!;
    setCited({ source: n, imageId: page.image_id, name: page.name, page: page.page, text: citation?.text ?? null, boxes: citation?.boxes ?? [] });
  };
  const openCitation = (c: Citation) =>
    setCited({ source: c.source, imageId: c.image_id, name: c.name, page: c.page, text: c.text, boxes: c.boxes });

  if (!isLoading && !collection) {
    return (
      <>
        <PageHeader title="Ask" />
        <EmptyState icon={<MessageSquareText className="size-10" />} title="No collection to ask" action={<Link className="font-medium text-brand-700 underline" to="/collections">Create a collection</Link>}>
          Questions are answered from a collection&apos;s pages and images. Create one first.
        </EmptyState>
      </>
    );
  }

  const notes = response?.notes ?? [];
  const citations = response?.citations ?? [];
  return (
    <>
      <PageHeader
        title="Ask"
        description={
          <>
            Questions answered from <span className="font-medium text-slate-800">{collection?.name ?? "…"}</span>, citing the pages the answer comes from.
          </>
        }
      />
      <form onSubmit={(e) => void submit(e)} className="mb-6 flex gap-2">
        <Input
          aria-label="Question"
          placeholder="Ask a question about the documents and images…"
          value={question}
          onChange={(e) => setQuestion(e.target.value)}
          disabled={!collection}
          maxLength={2000}
        />
        {busy ? (
          <Button variant="secondary" onClick={() => abort.current?.abort()}>
            <Square className="size-4" aria-hidden /> Stop
          </Button>
        ) : (
          <Button type="submit" variant="primary" disabled={!collection || !question.trim()}>
            <Send className="size-4" aria-hidden /> Ask
          </Button>
        )}
      </form>

      {status === "idle" ? (
        <EmptyState icon={<MessageSquareText className="size-10" />} title="Ask about your collection">
          The answer cites its sources as [1], [2]: open one to see the page with the supporting words highlighted.
        </EmptyState>
      ) : (
        <div className="grid gap-6 lg:grid-cols-[minmax(0,1fr)_22rem]">
          <div className="space-y-4">
            <Card className="p-5" aria-live="polite" aria-busy={busy}>
              <div className="mb-2 flex items-center justify-between gap-2">
                <h2 className="text-sm font-semibold text-slate-900">Answer</h2>
                {response?.model && <span className="text-xs text-slate-500">{response.model}</span>}
                {status === "stopped" && <Badge tone="amber">stopped</Badge>}
              </div>
              {answer ? (
                <AnswerText text={answer} sources={sources} onOpen={openSource} />
              ) : status === "asking" ? (
                <Spinner label="Finding the sources" />
              ) : status === "streaming" ? (
                <Spinner label="Writing the answer" />
              ) : status === "done" && response?.answer === null ? (
                <p className="text-sm text-slate-500">No answer: no chat model is configured. The sources found are listed.</p>
              ) : status === "stopped" ? (
                <p className="text-sm text-slate-500">Stopped before the answer began.</p>
              ) : null}
              {status === "streaming" && answer && <span className="ml-0.5 inline-block h-4 w-1.5 animate-pulse bg-brand-500 align-middle" aria-hidden />}
            </Card>
            {status === "failed" && <ErrorState title={errorTitle(error, Boolean(answer))} error={error} onRetry={() => void submit()} />}
            {notes.length > 0 && (
              <ul className="space-y-1 rounded-lg border border-amber-200 bg-amber-50 p-3 text-sm text-amber-900" aria-label="Notes">
                {notes.map((note) => (
                  <li key={note} className="flex gap-2">
                    <Info className="mt-0.5 size-4 shrink-0" aria-hidden />
                    {note}
                  </li>
                ))}
              </ul>
            )}
            {citations.length > 0 && (
              <section aria-labelledby="citations-heading">
                <h2 id="citations-heading" className="mb-2 text-sm font-semibold text-slate-900">
                  Citations
                </h2>
                <ul className="space-y-2">
                  {citations.map((c, i) => (
                    <CitationItem key={`${c.source}-${i}`} citation={c} onOpen={() => openCitation(c)} />
                  ))}
                </ul>
              </section>
            )}
          </div>
          <Card className="h-fit p-3">
            <h2 className="px-2 pb-2 text-sm font-semibold text-slate-900">Sources</h2>
            {sources.length ? (
              <ul className="space-y-1" aria-label="Sources">
                {sources.map((s) => (
                  <SourceItem key={s.number} source={s} onOpen={() => openSource(s.number)} />
                ))}
              </ul>
            ) : status === "asking" ? (
              <Spinner label="Searching" />
            ) : (
              <p className="px-2 pb-2 text-sm text-slate-500">Nothing in the collection matched the question.</p>
            )}
          </Card>
        </div>
      )}
      <CitationViewer cited={cited} onClose={() => setCited(null)} />
    </>
  );
}
