import { ChevronLeft, ChevronRight, FileImage, Plus, Search } from "lucide-react";
import { useEffect, useState } from "react";
import { Link, useNavigate, useParams, useSearchParams } from "react-router-dom";

import { useCollection, useRecords } from "@/api/queries";
import type { CatalogRecord } from "@/api/types";
import { AuthImage } from "@/components/AuthImage";
import { StatusBadge } from "@/components/StatusBadge";
import { Badge, Button, Card, EmptyState, ErrorState, Input, LoadingBlock, PageHeader, Skeleton } from "@/components/ui";
import { formatDate, pluralize } from "@/lib/format";

const PAGE_SIZE = 20;

function useDebounced<T>(value: T, ms: number): T {
  const [debounced, setDebounced] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setDebounced(value), ms);
    return () => clearTimeout(timer);
  }, [value, ms]);
  return debounced;
}

function imageSummary(record: CatalogRecord) {
  const pending = record.images.filter((i) => i.status === "pending").length;
  const failed = record.images.filter((i) => i.status === "failed").length;
  return (
    <div className="flex flex-wrap gap-1">
      <Badge>{pluralize(record.images.length, "image")}</Badge>
      {pending > 0 && <StatusBadge status="pending" />}
      {failed > 0 && <StatusBadge status="failed" />}
    </div>
  );
}

export function RecordsPage() {
  const { collectionId } = useParams<{ collectionId: string }>();
  const navigate = useNavigate();
  const [params, setParams] = useSearchParams();
  const [text, setText] = useState(params.get("q") ?? "");
  const q = useDebounced(text.trim(), 250);
  const page = Math.max(0, Number(params.get("page") ?? 0) || 0);
  const collection = useCollection(collectionId);
  const records = useRecords(collectionId, q, page, PAGE_SIZE);

  useEffect(() => {
    setParams(
      (prev) => {
        const next = new URLSearchParams(prev);
        if (q) next.set("q", q);
        else next.delete("q");
        if ((prev.get("q") ?? "") !== q) next.delete("page");
        return next;
      },
      { replace: true },
    );
  }, [q, setParams]);

  const setPage = (n: number) =>
    setParams((prev) => {
      const next = new URLSearchParams(prev);
      next.set("page", String(n));
      return next;
    });

  const total = records.data?.total ?? 0;
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  const newRecord = (
    <Button variant="primary" onClick={() => navigate(`/collections/${collectionId}/records/new`)}>
      <Plus className="size-4" aria-hidden /> New record
    </Button>
  );

  if (collection.error) return <ErrorState error={collection.error} title="This collection cannot be opened" />;

  return (
    <>
      <nav aria-label="Breadcrumb" className="mb-2 text-sm text-slate-500">
        <Link to="/collections" className="hover:underline">
          Collections
        </Link>{" "}
        / <span className="text-slate-700">{collection.data?.name ?? "…"}</span>
      </nav>
      <PageHeader
        title={collection.data?.name ?? "Records"}
        description={collection.data ? `${collection.data.model} · ${pluralize(total, "record")}` : undefined}
        actions={newRecord}
      />
      <div className="mb-4 max-w-md">
        <label htmlFor="record-search" className="sr-only">
          Search records by name
        </label>
        <div className="relative">
          <Search className="pointer-events-none absolute left-3 top-1/2 size-4 -translate-y-1/2 text-slate-400" aria-hidden />
          <Input
            id="record-search"
            type="search"
            placeholder="Search records by name"
            className="pl-9"
            value={text}
            onChange={(event) => setText(event.target.value)}
          />
        </div>
      </div>
      {records.isLoading ? (
        <LoadingBlock label="Loading records">
          <div className="space-y-2">
            {Array.from({ length: 6 }, (_, i) => (
              <Skeleton key={i} className="h-16" />
            ))}
          </div>
        </LoadingBlock>
      ) : records.error ? (
        <ErrorState error={records.error} onRetry={() => void records.refetch()} />
      ) : !records.data?.items.length ? (
        q ? (
          <EmptyState icon={<Search className="size-10" />} title={`No record named like “${q}”`}>
            Try another name, or clear the search.
          </EmptyState>
        ) : (
          <EmptyState icon={<FileImage className="size-10" />} title="No records in this collection" action={newRecord}>
            A record has a name, a description, tags and one or more images. You can also{" "}
            <Link to="/upload" className="font-medium text-brand-700 underline">
              upload a batch of photos
            </Link>
            , one record per file.
          </EmptyState>
        )
      ) : (
        <Card className="overflow-hidden">
          <ul className="divide-y divide-slate-100" aria-label="Records">
            {records.data.items.map((record) => (
              <li key={record.id}>
                <Link
                  to={`/records/${record.id}`}
                  className="flex items-center gap-4 px-4 py-3 hover:bg-slate-50 focus-visible:bg-slate-50"
                >
                  <AuthImage
                    src={record.images[0]?.thumbnail_url}
                    alt={record.name}
                    className="size-12 shrink-0 rounded-md"
                  />
                  <div className="min-w-0 flex-1">
                    <p className="truncate font-medium text-slate-900">{record.name}</p>
                    <p className="truncate text-sm text-slate-500">{record.description || "No description"}</p>
                  </div>
                  <div className="hidden flex-wrap gap-1 md:flex">
                    {record.tags.slice(0, 4).map((tag) => (
                      <Badge key={tag} tone="blue">
                        {tag}
                      </Badge>
                    ))}
                  </div>
                  <div className="hidden sm:block">{imageSummary(record)}</div>
                  <time className="hidden w-36 text-right text-xs text-slate-500 lg:block" dateTime={record.created_at}>
                    {formatDate(record.created_at)}
                  </time>
                </Link>
              </li>
            ))}
          </ul>
          <div className="flex items-center justify-between gap-2 border-t border-slate-100 px-4 py-3 text-sm">
            <span className="text-slate-600">
              {page * PAGE_SIZE + 1}–{Math.min(total, (page + 1) * PAGE_SIZE)} of {total}
            </span>
            <div className="flex items-center gap-2">
              <Button size="sm" onClick={() => setPage(page - 1)} disabled={page === 0} aria-label="Previous page">
                <ChevronLeft className="size-4" aria-hidden />
              </Button>
              <span aria-live="polite">
                Page {page + 1} of {pages}
              </span>
              <Button size="sm" onClick={() => setPage(page + 1)} disabled={page + 1 >= pages} aria-label="Next page">
                <ChevronRight className="size-4" aria-hidden />
              </Button>
            </div>
          </div>
        </Card>
      )}
    </>
  );
}
