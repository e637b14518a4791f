import { clsx } from "clsx";
import { Copy, ScanSearch } from "lucide-react";
import { useState } from "react";
import { Link, useNavigate } from "react-router-dom";
import { toast } from "sonner";

import type { Cluster, ClusterStatus } from "@/api/types";
import { isMissingRoute } from "@/api/errors";
import { type ClusterAction, useClusterAction, useClusters, useFindDuplicates } from "@/api/queries";
import { ClusterCard } from "@/components/ClusterCard";
import { DetailPanel } from "@/components/DetailPanel";
import { Button, EmptyState, ErrorState, LoadingBlock, PageHeader, Skeleton } from "@/components/ui";
import { useCurrentCollection } from "@/lib/collection";

const FILTERS: { value: ClusterStatus | "all"; label: string }[] = [
  { value: "open", label: "To review" },
  { value: "duplicate", label: "Duplicates" },
  { value: "not_duplicate", label: "Not duplicates" },
  { value: "merged", label: "Merged" },
  { value: "all", label: "All" },
];

/** The page's clusters with near-exact groups inside their similar cluster (when both are on
 * the page) rather than beside it: each group of images shown once. */
export function topLevel(clusters: Cluster[]): { cluster: Cluster; groups: Cluster[] }[] {
  const byId = new Map(clusters.map((c) => [c.id, c]));
  return clusters
    .filter((c) => !c.parent_id || !byId.has(c.parent_id))
    .map((c) => ({
      cluster: c,
      groups: (c.groups ?? []).map((id) => byId.get(id)).filter((g): g is Cluster => g !== undefined),
    }));
}

const done: Record<ClusterAction["kind"], (a: ClusterAction) => string> = {
  mark: (a) => (a.kind === "mark" && a.verdict === "duplicate" ? "Marked as duplicates" : "Marked as not duplicates"),
  merge: () => "Cluster merged",
  tag: (a) => (a.kind === "tag" ? `Tagged ${a.tags.join(", ")}` : "Tagged"),
};

function Unavailable() {
  return (
    <EmptyState icon={<Copy className="size-10" />} title="Dedup is not available on this server">
      This server does not offer duplicate clusters yet; update Lookalike to review them here.
    </EmptyState>
  );
}

export function DedupPage() {
  const { collection, isLoading: collectionsLoading } = useCurrentCollection();
  const [status, setStatus] = useState<ClusterStatus | "all">("open");
  const [opened, setOpened] = useState<string | null>(null);
  const navigate = useNavigate();
  const clusters = useClusters(collection?.id, status);
  const sweep = useFindDuplicates(collection?.id ?? "");
  const action = useClusterAction(collection?.id ?? "");
  const act = (cluster: Cluster) => (a: ClusterAction) =>
    action.mutate({ cluster, action: a }, { onSuccess: () => toast.success(done[a.kind](a)) });

  if (!collectionsLoading && !collection) {
    return (
      <>
        <PageHeader title="Dedup" />
        <EmptyState icon={<Copy className="size-10" />} title="No collection to deduplicate" action={<Link className="font-medium text-brand-700 underline" to="/collections">Create a collection</Link>} />
      </>
    );
  }

  const findButton = (
    <Button
      variant="primary"
      busy={sweep.isPending}
      onClick={() =>
        sweep.mutate(undefined, {
          onSuccess: (result) => toast.success(`${result.clusters.length} cluster${result.clusters.length === 1 ? "" : "s"} of look-alikes found`),
        })
      }
    >
      <ScanSearch className="size-4" aria-hidden /> Find duplicates
    </Button>
  );

  return (
    <>
      <PageHeader
        title="Dedup"
        description={
          <>
            Groups of exact, near-exact and similar images in <span className="font-medium text-slate-800">{collection?.name ?? "…"}</span>, each with a suggested keeper.
            <span className="mt-1 block text-xs text-slate-500">
              Near-exact: the same photograph after edits (resized, cropped, framed, recoloured, watermarked). Similar: the same scene or subject, such as another shot of it.
            </span>
          </>
        }
        actions={findButton}
      />
      <div role="group" aria-label="Show clusters" className="mb-4 flex flex-wrap gap-1">
        {FILTERS.map((f) => (
          <button
            key={f.value}
            type="button"
            aria-pressed={status === f.value}
            onClick={() => setStatus(f.value)}
            className={clsx(
              "rounded-full px-3 py-1 text-sm font-medium",
              status === f.value ? "bg-brand-600 text-white" : "bg-white text-slate-700 ring-1 ring-slate-200 hover:bg-slate-50",
            )}
          >
            {f.label}
          </button>
        ))}
      </div>
      {clusters.isLoading || collectionsLoading ? (
        <LoadingBlock label="Loading clusters">
          <div className="space-y-4">
            {[0, 1].map((i) => (
              <Skeleton key={i} className="h-64" />
            ))}
          </div>
        </LoadingBlock>
      ) : clusters.error ? (
        isMissingRoute(clusters.error) ? <Unavailable /> : <ErrorState error={clusters.error} onRetry={() => void clusters.refetch()} />
      ) : !clusters.data?.clusters.length ? (
        <EmptyState icon={<Copy className="size-10" />} title={status === "open" ? "Nothing to review" : "No clusters here"} action={findButton}>
          {status === "open"
            ? "Run “Find duplicates” to group the collection's look-alikes; new clusters show up here."
            : "No cluster has this status yet."}
        </EmptyState>
      ) : (
        <div className="space-y-4">
          <p className="text-sm text-slate-600">
            {clusters.data.total} cluster{clusters.data.total === 1 ? "" : "s"}
          </p>
          {topLevel(clusters.data.clusters).map(({ cluster: c, groups }) => (
            <ClusterCard
              key={c.id}
              cluster={c}
              groups={groups}
              onOpenImage={setOpened}
              onAction={act(c)}
              renderGroup={(g) => <ClusterCard cluster={g} onOpenImage={setOpened} onAction={act(g)} />}
            />
          ))}
        </div>
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
