import { clsx } from "clsx";
import { CheckCircle2, RefreshCw, RotateCcw, ShieldAlert } from "lucide-react";
import { useEffect, useState } from "react";
import { useInView } from "react-intersection-observer";
import { Link, useNavigate } from "react-router-dom";
import { toast } from "sonner";

import type { AnomalyItem, AnomalySort, ReviewedFilter } from "@/api/types";
import { isMissingRoute } from "@/api/errors";
import { useAnomalies, useGiveFeedback, useRecomputeAnomalies, useReviewAnomaly } from "@/api/queries";
import { AuthImage } from "@/components/AuthImage";
import { DetailPanel } from "@/components/DetailPanel";
import { Badge, Button, Card, EmptyState, ErrorState, Field, LoadingBlock, PageHeader, ScoreBar, Select, Skeleton, Spinner } from "@/components/ui";
import { useCurrentCollection } from "@/lib/collection";
import { formatDate } from "@/lib/format";

type OutlierScore = Exclude<AnomalySort, "review">;

const SCORES: { value: OutlierScore; label: string; hint: string }[] = [
  { value: "dnn", label: "Nearest-neighbour distance", hint: "far from every other image" },
  { value: "density", label: "Local density", hint: "in a sparse region" },
  { value: "ood", label: "Out of distribution", hint: "unlike the collection as a whole" },
];
const SORTS: { value: AnomalySort; label: string; hint: string }[] = [
  { value: "review", label: "Needs a look first", hint: "junk (noise, blank, tiny, crushed) and strong outliers first" },
  ...SCORES,
];

/** The largest of each score among the images shown, so the bars compare them with each other. */
type Maxima = Record<OutlierScore, number>;

function maxima(items: AnomalyItem[]): Maxima {
  const top = (key: OutlierScore) => Math.max(1e-9, ...items.map((i) => Math.abs(i.scores[key] ?? 0)));
  return { dnn: top("dnn"), density: top("density"), ood: top("ood") };
}

function AnomalyRow({
  item,
  sort,
  scale,
  onReview,
  onFeedback,
  onOpen,
}: {
  item: AnomalyItem;
  sort: AnomalySort;
  scale: Maxima;
  onReview: (reviewed: boolean) => void;
  onFeedback: () => void;
  onOpen: () => void;
}) {
  return (
    <li data-testid="anomaly" data-reviewed={item.reviewed}>
      <Card className={clsx("flex flex-col gap-4 p-3 sm:flex-row sm:items-center", item.reviewed && "bg-slate-50")}>
        <button type="button" onClick={onOpen} className="shrink-0" aria-label={`Open ${item.name}`}>
          <AuthImage src={item.preview_url} alt={item.name} className="size-28 rounded-md sm:size-24" />
        </button>
        <div className="min-w-0 flex-1 space-y-1.5">
          <div className="flex flex-wrap items-center gap-2">
            <Link to={`/records/${item.record_id}`} className="truncate font-medium text-slate-900 hover:underline">
              {item.name}
            </Link>
            {item.reviewed ? (
              <Badge tone="green">reviewed {item.reviewed_at ? formatDate(item.reviewed_at) : ""}</Badge>
            ) : (
              <Badge tone="amber">to review</Badge>
            )}
            {item.needs_review && <Badge tone="red">needs review</Badge>}
          </div>
          {item.reasons.length > 0 && (
            <ul className="text-sm text-red-700" aria-label="Why">
              {item.reasons.map((reason) => (
                <li key={reason}>{reason}</li>
              ))}
            </ul>
          )}
          <div className="max-w-md space-y-1">
            {SCORES.map((s) => (
              <div key={s.value} className={clsx(s.value === sort ? "font-semibold" : "opacity-80")}>
                <ScoreBar label={s.value} value={item.scores[s.value]} max={scale[s.value]} />
              </div>
            ))}
          </div>
        </div>
        <div className="flex flex-wrap gap-2 sm:flex-col">
          {item.reviewed ? (
            <Button size="sm" onClick={() => onReview(false)}>
              <RotateCcw className="size-4" aria-hidden /> Reopen
            </Button>
          ) : (
            <Button size="sm" variant="primary" onClick={() => onReview(true)}>
              <CheckCircle2 className="size-4" aria-hidden /> Mark reviewed
            </Button>
          )}
          <Button size="sm" onClick={onFeedback}>
            <ShieldAlert className="size-4" aria-hidden /> Confirm anomaly
          </Button>
        </div>
      </Card>
    </li>
  );
}

export function AnomaliesPage() {
  const { collection, isLoading: collectionsLoading } = useCurrentCollection();
  const navigate = useNavigate();
  const [sort, setSort] = useState<AnomalySort>("review");
  const [reviewed, setReviewed] = useState<ReviewedFilter>("false");
  const [which, setWhich] = useState<"flagged" | "all">("flagged");
  const [opened, setOpened] = useState<string | null>(null);
  const anomalies = useAnomalies(collection?.id, sort, reviewed, which === "flagged" ? true : undefined);
  const review = useReviewAnomaly(collection?.id ?? "");
  const recompute = useRecomputeAnomalies(collection?.id ?? "");
  const feedback = useGiveFeedback();
  const { ref: sentinel, inView } = useInView({ rootMargin: "300px" });
  const items = anomalies.data?.pages.flatMap((p) => p.items) ?? [];
  const total = anomalies.data?.pages[0]?.total ?? 0;
  const scale = maxima(items);

  useEffect(() => {
    if (inView && anomalies.hasNextPage && !anomalies.isFetchingNextPage) void anomalies.fetchNextPage();
  }, [inView, anomalies]);

  if (!collectionsLoading && !collection) {
    return (
      <>
        <PageHeader title="Anomalies" />
        <EmptyState icon={<ShieldAlert className="size-10" />} title="No collection to review" action={<Link className="font-medium text-brand-700 underline" to="/collections">Create a collection</Link>} />
      </>
    );
  }

  return (
    <>
      <PageHeader
        title="Anomalies"
        description={<>Outliers of <span className="font-medium text-slate-800">{collection?.name ?? "…"}</span>, most unusual first, for a person to review.</>}
        actions={
          <Button
            busy={recompute.isPending}
            onClick={() => recompute.mutate(undefined, { onSuccess: () => toast.success("Anomaly scores recomputed") })}
          >
            <RefreshCw className="size-4" aria-hidden /> {recompute.isPending ? "Recomputing…" : "Recompute scores"}
          </Button>
        }
      />
      <div className="mb-4 flex flex-wrap items-end gap-3">
        <Field label="Sort by" className="w-64">
          {(props) => (
            <Select {...props} value={sort} onChange={(e) => setSort(e.target.value as AnomalySort)}>
              {SORTS.map((s) => (
                <option key={s.value} value={s.value}>
                  {s.label}
                </option>
              ))}
            </Select>
          )}
        </Field>
        <Field label="Which images" className="w-44">
          {(props) => (
            <Select {...props} value={which} onChange={(e) => setWhich(e.target.value as "flagged" | "all")}>
              <option value="flagged">Needs review</option>
              <option value="all">All</option>
            </Select>
          )}
        </Field>
        <Field label="Show" className="w-44">
          {(props) => (
            <Select {...props} value={reviewed} onChange={(e) => setReviewed(e.target.value as ReviewedFilter)}>
              <option value="false">To review</option>
              <option value="true">Reviewed</option>
              <option value="all">All</option>
            </Select>
          )}
        </Field>
        <p className="pb-2 text-sm text-slate-500">{SORTS.find((s) => s.value === sort)?.hint}</p>
      </div>
      {anomalies.isLoading || collectionsLoading ? (
        <LoadingBlock label="Loading the review queue">
          <div className="space-y-3">
            {[0, 1, 2, 3].map((i) => (
              <Skeleton key={i} className="h-28" />
            ))}
          </div>
        </LoadingBlock>
      ) : anomalies.error ? (
        isMissingRoute(anomalies.error) ? (
          <EmptyState icon={<ShieldAlert className="size-10" />} title="Anomaly review is not available on this server">
            This server does not rank outliers yet; update Lookalike to review them here.
          </EmptyState>
        ) : (
          <ErrorState error={anomalies.error} onRetry={() => void anomalies.refetch()} />
        )
      ) : items.length === 0 ? (
        <EmptyState
          icon={<CheckCircle2 className="size-10" />}
          title={which === "flagged" ? "Nothing needs review" : reviewed === "false" ? "Nothing left to review" : "No images here"}
          action={
            which === "flagged" ? (
              <Button size="sm" onClick={() => setWhich("all")}>
                Show all images
              </Button>
            ) : undefined
          }
        >
          {which === "flagged"
            ? "No image is junk (noise, blank, tiny, crushed) or a strong outlier. The rest are listed under All."
            : reviewed === "false"
              ? "Every outlier has been reviewed. Recompute the scores after adding images."
              : "Try another filter."}
        </EmptyState>
      ) : (
        <>
          <p className="mb-3 text-sm text-slate-600">
            {total} image{total === 1 ? "" : "s"}
          </p>
          <ul className="space-y-3" aria-label="Review queue">
            {items.map((item) => (
              <AnomalyRow
                key={item.image_id}
                item={item}
                sort={sort}
                scale={scale}
                onOpen={() => setOpened(item.image_id)}
                onReview={(value) =>
                  review.mutate(
                    { imageId: item.image_id, reviewed: value },
                    { onSuccess: () => toast.success(value ? `Reviewed ${item.name}` : `Reopened ${item.name}`) },
                  )
                }
                onFeedback={() =>
                  feedback.mutate(
                    { imageId: item.image_id, action: "anomaly", note: `anomaly review (${sort})` },
                    { onSuccess: () => toast.success(`${item.name} confirmed as an anomaly`) },
                  )
                }
              />
            ))}
          </ul>
          <div ref={sentinel} className={clsx("flex justify-center py-6", !anomalies.hasNextPage && "hidden")}>
            {anomalies.isFetchingNextPage ? <Spinner label="Loading more" /> : <Button size="sm" onClick={() => void anomalies.fetchNextPage()}>Load more</Button>}
          </div>
        </>
      )}
      {opened && collection && (
        <DetailPanel
          imageId={opened}
          collection={collection.id}
          onClose={() => setOpened(null)}
          onOpenImage={setOpened}
          onSearchLike={(id) => navigate(`/search?image=${encodeURIComponent(id)}`)}
        />
      )}
    </>
  );
}
