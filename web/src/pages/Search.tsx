import * as Tabs from "@radix-ui/react-tabs";
import { clsx } from "clsx";
import { ArrowLeft, ImageIcon, ImageOff, ScanSearch, SlidersHorizontal, Type, X } from "lucide-react";
import { useCallback, useEffect, useMemo, useRef, useState, type FormEvent } from "react";
import { useInView } from "react-intersection-observer";
import { Link, useSearchParams } from "react-router-dom";

import { isNotFound } from "@/api/errors";
import { useSearch, type SearchQuery } from "@/api/queries";
import type { SearchFilters } from "@/api/types";
import { DetailPanel } from "@/components/DetailPanel";
import { Dropzone } from "@/components/Dropzone";
import { ResultCard } from "@/components/ResultCard";
import { TagInput } from "@/components/TagInput";
import { Button, Card, EmptyState, ErrorState, Field, Input, LoadingBlock, PageHeader, Select, Skeleton, Spinner } from "@/components/ui";
import { useCurrentCollection } from "@/lib/collection";

type Mode = "image" | "text";

// The product CLIP model, the one the API's own error advises for text search.
const CLIP_MODEL = "clip-vit-b-32-laion2b";

interface FilterState {
  tags: string[];
  from: string;
  to: string;
  owner: string;
  minQuality: string;
  maxNsfw: string;
}

const NO_FILTERS: FilterState = { tags: [], from: "", to: "", owner: "", minQuality: "", maxNsfw: "" };

function toFilters(f: FilterState): SearchFilters | undefined {
  const filters: SearchFilters = {};
  if (f.tags.length) filters.tags_any = f.tags;
  if (f.from) filters.created_after = `${f.from}T00:00:00`;
  if (f.to) filters.created_before = `${f.to}T23:59:59`;
  if (f.owner.trim()) filters.owner = f.owner.trim();
  if (f.minQuality !== "") filters.min_quality = Number(f.minQuality);
  if (f.maxNsfw !== "") filters.max_nsfw = Number(f.maxNsfw);
  return Object.keys(filters).length ? filters : undefined;
}

function useObjectUrl(file: File | null): string | null {
  const url = useMemo(() => (file ? URL.createObjectURL(file) : null), [file]);
  useEffect(() => () => void (url && URL.revokeObjectURL(url)), [url]);
  return url;
}

export function SearchPage() {
  const { collection, isLoading: collectionsLoading } = useCurrentCollection();
  const [params, setParams] = useSearchParams();
  const [mode, setMode] = useState<Mode>(params.get("q") ? "text" : "image");
  const [file, setFile] = useState<File | null>(null);
  const [imageId, setImageId] = useState(params.get("image") ?? "");
  const [text, setText] = useState(params.get("q") ?? "");
  const [filters, setFilters] = useState<FilterState>(NO_FILTERS);
  const [limit, setLimit] = useState(24);
  const [threshold, setThreshold] = useState("");
  const [phashGate, setPhashGate] = useState("");
  const [searched, setSearched] = useState<SearchQuery | null>(null);
  // Results belong to the collection searched: picking another in the header starts afresh.
  const query = searched?.collection === collection?.id ? searched : null;
  const [selected, setSelected] = useState<number | null>(null);
  const [adhoc, setAdhoc] = useState<string | null>(null);
  const nonce = useRef(0);
  // A link to /search?image=ID or ?q=TEXT searches at once (but only the first time).
  const autoRan = useRef(false);
  const preview = useObjectUrl(file);
  const results = useSearch(query);
  const hits = useMemo(() => results.data?.pages.flatMap((p) => p.hits) ?? [], [results.data]);
  const lastPage = results.data?.pages.at(-1);
  const showWeaker = () => query && setSearched({ ...query, includeWeaker: true, nonce: ++nonce.current });
  const weakerNote = lastPage?.weaker && !results.hasNextPage && (
    <div className="flex flex-wrap items-center justify-center gap-3 py-6 text-sm text-slate-600">
      <span>
        Weaker matches, below this model's relevance cut-off ({lastPage.cutoff?.toFixed(2)}), are hidden.
      </span>
      <Button size="sm" onClick={showWeaker}>
        Show weaker matches
      </Button>
    </div>
  );
  const { ref: sentinel, inView } = useInView({ rootMargin: "400px" });

  const run = useCallback(
    (overrides: Partial<Pick<SearchQuery, "kind" | "file" | "imageId" | "text">> = {}) => {
      if (!collection) return;
      const kind = overrides.kind ?? (mode === "text" ? "text" : file && !imageId.trim() ? "file" : "image_id");
      const next: SearchQuery = {
        collection: collection.id,
        kind,
        file: overrides.file ?? file ?? undefined,
        imageId: overrides.imageId ?? imageId.trim(),
        text: overrides.text ?? text.trim(),
        limit,
        scoreThreshold: threshold === "" ? undefined : Number(threshold),
        phashGate: phashGate === "" ? undefined : Number(phashGate),
        filter: toFilters(filters),
        nonce: ++nonce.current,
      };
      if (next.kind === "file" && !next.file) return;
      if (next.kind === "image_id" && !next.imageId) return;
      if (next.kind === "text" && (!next.text || !collection.supports_text)) return;
      autoRan.current = true;
      setSelected(null);
      setAdhoc(null);
      setSearched(next);
      setParams(
        next.kind === "text" ? { q: next.text! } : next.kind === "image_id" ? { image: next.imageId! } : {},
        { replace: true },
      );
    },
    [collection, mode, file, imageId, text, limit, threshold, phashGate, filters, setParams],
  );

  useEffect(() => {
    if (autoRan.current || !collection) return;
    if (params.get("image") || params.get("q")) {
      autoRan.current = true;
      run();
    }
  }, [collection, params, run]);

  // Paste an image from the clipboard anywhere on the page to search with it.
  useEffect(() => {
    function onPaste(event: ClipboardEvent) {
      const target = event.target as HTMLElement | null;
      if (target?.closest("input, textarea")) return;
      const pasted = Array.from(event.clipboardData?.files ?? []).find((f) => f.type.startsWith("image/"));
      if (!pasted) return;
      event.preventDefault();
      setMode("image");
      setFile(pasted);
      setImageId("");
      run({ kind: "file", file: pasted });
    }
    window.addEventListener("paste", onPaste);
    return () => window.removeEventListener("paste", onPaste);
  }, [run]);

  useEffect(() => {
    if (inView && results.hasNextPage && !results.isFetchingNextPage) void results.fetchNextPage();
  }, [inView, results]);

  const step = useCallback(
    (delta: -1 | 1) => {
      setAdhoc(null);
      setSelected((index) => {
        if (index === null) return index;
        const next = index + delta;
        if (next < 0) return index;
        if (next >= hits.length) {
          if (results.hasNextPage) void results.fetchNextPage();
          return index;
        }
        return next;
      });
    },
    [hits.length, results],
  );

  function startOver() {
    setSearched(null);
    setImageId("");
    setParams({}, { replace: true });
  }

  function submit(event: FormEvent) {
    event.preventDefault();
    run();
  }

  if (!collectionsLoading && !collection) {
    return (
      <>
        <PageHeader title="Search" />
        <EmptyState icon={<ScanSearch className="size-10" />} title="No collection to search" action={<Link className="font-medium text-brand-700 underline" to="/collections">Create a collection</Link>}>
          Search finds look-alikes inside one collection.
        </EmptyState>
      </>
    );
  }

  const textSupported = collection?.supports_text ?? true;
  const textUnavailable = mode === "text" && !textSupported;
  const selectedHit = selected !== null ? hits[selected] : undefined;
  const panelImage = adhoc ?? selectedHit?.image_id;
  const feedbackQuery = query
    ? query.kind === "text"
      ? { text: query.text }
      : query.kind === "image_id"
        ? { image_id: query.imageId }
        : undefined
    : undefined;

  return (
    <>
      <PageHeader title="Search" description={<>Look-alikes in <span className="font-medium text-slate-800">{collection?.name ?? "…"}</span>, by image or by text.</>} />
      <div className="grid gap-6 lg:grid-cols-[20rem_minmax(0,1fr)]">
        <Card className="h-fit p-4">
          <form onSubmit={submit} className="space-y-4" aria-label="Search">
            <Tabs.Root value={mode} onValueChange={(v) => setMode(v as Mode)}>
              <Tabs.List className="grid grid-cols-2 rounded-md bg-slate-100 p-1" aria-label="Search by">
                {(
                  [
                    ["image", "Image", ImageIcon],
                    ["text", "Text", Type],
                  ] as const
                ).map(([value, label, Icon]) => (
                  <Tabs.Trigger
                    key={value}
                    value={value}
                    className="flex items-center justify-center gap-1.5 rounded px-2 py-1.5 text-sm font-medium text-slate-600 data-[state=active]:bg-white data-[state=active]:text-slate-900 data-[state=active]:shadow-sm"
                  >
                    <Icon className="size-4" aria-hidden /> {label}
                  </Tabs.Trigger>
                ))}
              </Tabs.List>
              <Tabs.Content value="image" className="mt-4 space-y-3">
                {file && preview ? (
                  <div className="relative overflow-hidden rounded-lg border border-slate-200">
                    <img src={preview} alt="Query" className="h-40 w-full object-contain bg-slate-50" />
                    <Button size="sm" variant="secondary" className="absolute right-2 top-2" aria-label="Remove the query image" onClick={() => setFile(null)}>
                      <X className="size-4" aria-hidden />
                    </Button>
                  </div>
                ) : (
                  <Dropzone
                    compact
                    multiple={false}
                    label="Drop a query image"
                    hint="or click, or paste one (Ctrl+V)"
                    inputLabel="Query image"
                    onFiles={([picked]) => {
                      if (!picked) return;
                      setFile(picked);
                      setImageId("");
                      run({ kind: "file", file: picked });
                    }}
                  />
                )}
                <Field label="…or an image id">
                  {(props) => (
                    <Input {...props} name="image_id" placeholder="01J…" className="font-mono text-xs" value={imageId} onChange={(e) => setImageId(e.target.value)} />
                  )}
                </Field>
              </Tabs.Content>
              <Tabs.Content value="text" className="mt-4 space-y-2">
                <Field label="Describe what you look for">
                  {(props) => (
                    <Input {...props} name="text_query" placeholder="a red sneaker on white" value={text} onChange={(e) => setText(e.target.value)} disabled={!textSupported} />
                  )}
                </Field>
                {!textSupported && (
                  <p id="text-unsupported" className="rounded-md bg-amber-50 p-2 text-xs text-amber-800">
                    This collection's model ({collection?.model}) embeds images only: text search needs a CLIP model. Get one
                    with <code>lookalike model pull {CLIP_MODEL}</code>, or export one with{" "}
                    <code>pip install 'lookalike[export]'</code> and <code>lookalike model export</code>.
                  </p>
                )}
              </Tabs.Content>
            </Tabs.Root>

            <details className="group rounded-md border border-slate-200">
              <summary className="flex cursor-pointer items-center gap-2 px-3 py-2 text-sm font-medium text-slate-700">
                <SlidersHorizontal className="size-4" aria-hidden /> Filters and options
              </summary>
              <div className="space-y-3 border-t border-slate-200 p-3">
                <TagInput label="Any of these tags" value={filters.tags} onChange={(tags) => setFilters({ ...filters, tags })} />
                <div className="grid grid-cols-2 gap-2">
                  <Field label="Added from">{(p) => <Input {...p} type="date" value={filters.from} onChange={(e) => setFilters({ ...filters, from: e.target.value })} />}</Field>
                  <Field label="Added until">{(p) => <Input {...p} type="date" value={filters.to} onChange={(e) => setFilters({ ...filters, to: e.target.value })} />}</Field>
                </div>
                <Field label="Owner">{(p) => <Input {...p} value={filters.owner} onChange={(e) => setFilters({ ...filters, owner: e.target.value })} />}</Field>
                <div className="grid grid-cols-2 gap-2">
                  <Field label="Min quality">{(p) => <Input {...p} type="number" min={0} max={1} step={0.05} placeholder="0–1" value={filters.minQuality} onChange={(e) => setFilters({ ...filters, minQuality: e.target.value })} />}</Field>
                  <Field label="Max NSFW">{(p) => <Input {...p} type="number" min={0} max={1} step={0.05} placeholder="0–1" value={filters.maxNsfw} onChange={(e) => setFilters({ ...filters, maxNsfw: e.target.value })} />}</Field>
                </div>
                <div className="grid grid-cols-3 gap-2">
                  <Field label="Per page">
                    {(p) => (
                      <Select {...p} value={limit} onChange={(e) => setLimit(Number(e.target.value))}>
                        {[12, 24, 48, 96].map((n) => (
                          <option key={n} value={n}>
                            {n}
                          </option>
                        ))}
                      </Select>
                    )}
                  </Field>
                  <Field label="Min score">{(p) => <Input {...p} type="number" min={-1} max={1} step={0.05} value={threshold} onChange={(e) => setThreshold(e.target.value)} />}</Field>
                  <Field label="pHash gate">{(p) => <Input {...p} type="number" min={0} max={11} step={1} value={phashGate} onChange={(e) => setPhashGate(e.target.value)} disabled={mode === "text"} />}</Field>
                </div>
                <p className="text-xs text-slate-500">The pHash gate keeps near-duplicates of the query image only (within that many bits).</p>
                <Button size="sm" variant="ghost" onClick={() => { setFilters(NO_FILTERS); setThreshold(""); setPhashGate(""); }}>
                  Reset filters
                </Button>
              </div>
            </details>
            <Button
              type="submit"
              variant="primary"
              className="w-full"
              busy={results.isFetching && !results.isFetchingNextPage}
              disabled={!collection || textUnavailable}
              aria-describedby={textUnavailable ? "text-unsupported" : undefined}
            >
              <ScanSearch className="size-4" aria-hidden /> Search
            </Button>
          </form>
        </Card>

        <section aria-label="Results" aria-busy={results.isFetching}>
          {!query ? (
            <EmptyState icon={<ScanSearch className="size-10" />} title="Find look-alikes">
              Drop or paste an image, enter an image id, or describe what you look for.
            </EmptyState>
          ) : results.isLoading ? (
            <LoadingBlock label="Searching">
              <div className="grid grid-cols-2 gap-3 sm:grid-cols-3 xl:grid-cols-4">
                {Array.from({ length: 8 }, (_, i) => (
                  <Skeleton key={i} className="aspect-[4/5]" />
                ))}
              </div>
            </LoadingBlock>
          ) : query.kind === "image_id" && isNotFound(results.error) ? (
            <EmptyState
              icon={<ImageOff className="size-10" />}
              title="No such image"
              action={
                <Button onClick={startOver}>
                  <ArrowLeft className="size-4" aria-hidden /> Back to search
                </Button>
              }
            >
              There is no image <span className="font-mono text-xs">{query.imageId}</span>: it may have been removed, or the id is
              mistyped.
            </EmptyState>
          ) : results.error ? (
            <ErrorState error={results.error} title="The search failed" onRetry={() => void results.refetch()} />
          ) : hits.length === 0 ? (
            <>
              <EmptyState icon={<ScanSearch className="size-10" />} title="No match">
                {lastPage?.weaker
                  ? "Nothing in this collection looks like it: every image scores below the relevance cut-off."
                  : "Loosen the filters, lower the minimum score or remove the pHash gate."}
              </EmptyState>
              {weakerNote}
            </>
          ) : (
            <>
              <p className="mb-3 text-sm text-slate-600" aria-live="polite">
                {hits.length} result{hits.length === 1 ? "" : "s"}
                {results.hasNextPage ? " so far" : ""}
              </p>
              <ul className="grid grid-cols-2 gap-3 sm:grid-cols-3 xl:grid-cols-4">
                {hits.map((hit, index) => (
                  <li key={`${hit.image_id}-${index}`}>
                    <ResultCard hit={hit} active={index === selected} onOpen={() => { setAdhoc(null); setSelected(index); }} />
                  </li>
                ))}
              </ul>
              <div ref={sentinel} className={clsx("flex justify-center py-6", !results.hasNextPage && "hidden")}>
                {results.isFetchingNextPage ? (
                  <Spinner label="Loading more" />
                ) : (
                  <Button size="sm" onClick={() => void results.fetchNextPage()}>
                    Load more
                  </Button>
                )}
              </div>
              {weakerNote}
            </>
          )}
        </section>
      </div>
      {panelImage && collection && (
        <DetailPanel
          imageId={panelImage}
          hit={adhoc ? undefined : selectedHit}
          collection={collection.id}
          query={feedbackQuery}
          position={selected !== null ? { index: selected, total: hits.length, more: Boolean(results.hasNextPage) } : undefined}
          onStep={selected !== null ? step : undefined}
          onClose={() => {
            setSelected(null);
            setAdhoc(null);
          }}
          onOpenImage={setAdhoc}
          onSearchLike={(id) => {
            setMode("image");
            setFile(null);
            setImageId(id);
            run({ kind: "image_id", imageId: id });
          }}
        />
      )}
    </>
  );
}
