/** A group of look-alike images: the suggested keeper first, and what to do with the group. */
import { clsx } from "clsx";
import { Check, Crown, GitMerge, Tag, X } from "lucide-react";
import { type ReactNode, useState } from "react";

import type { Cluster, ClusterStatus, DuplicateTier } from "@/api/types";
import type { ClusterAction } from "@/api/queries";
import { formatBytes, formatScore } from "@/lib/format";

import { AuthImage } from "./AuthImage";
import { Dialog } from "./Dialog";
import { TagInput } from "./TagInput";
import { Badge, Button, Card, Field, Select, type Tone } from "./ui";

const tierTone: Record<DuplicateTier, Tone> = { exact: "red", near_exact: "amber", similar: "blue" };
const tierLabel: Record<DuplicateTier, string> = { exact: "Exact", near_exact: "Near-exact", similar: "Similar" };
const statusTone: Record<ClusterStatus, Tone> = { open: "slate", duplicate: "red", not_duplicate: "green", merged: "blue" };
const statusLabel: Record<ClusterStatus, string> = {
  open: "To review",
  duplicate: "Duplicates",
  not_duplicate: "Not duplicates",
  merged: "Merged",
};

export function ClusterCard({
  cluster,
  onAction,
  onOpenImage,
  groups = [],
  renderGroup,
}: {
  cluster: Cluster;
  onAction: (action: ClusterAction) => void;
  onOpenImage?: (imageId: string) => void;
  /** Near-exact clusters inside this one: shown within it, their members not repeated here. */
  groups?: Cluster[];
  renderGroup?: (group: Cluster) => ReactNode;
}) {
  const [keeper, setKeeper] = useState(cluster.keeper ?? cluster.members[0]?.image_id ?? "");
  const tier = cluster.tier as DuplicateTier;
  const status = cluster.status as ClusterStatus;
  const [merging, setMerging] = useState(false);
  const [mode, setMode] = useState<"move" | "drop">("move");
  const [tagging, setTagging] = useState(false);
  const [tags, setTags] = useState<string[]>([]);
  const grouped = new Set(groups.flatMap((g) => g.members.map((m) => m.image_id)));
  const members = cluster.members
    .filter((m) => !grouped.has(m.image_id))
    .sort((a, b) => Number(b.image_id === keeper) - Number(a.image_id === keeper));
  const done = status !== "open";

  return (
    <Card className="p-4">
      <article aria-label={`Cluster of ${cluster.members.length} images`} data-testid="cluster" data-status={cluster.status}>
        <header className="mb-3 flex flex-wrap items-center gap-2">
          <Badge tone={tierTone[tier] ?? "slate"}>{tierLabel[tier] ?? cluster.tier}</Badge>
          <Badge tone={statusTone[status] ?? "slate"}>{statusLabel[status] ?? cluster.status}</Badge>
          <span className="text-sm text-slate-600">{cluster.members.length} images</span>
          <div className="ml-auto flex flex-wrap gap-2">
            <Button size="sm" onClick={() => onAction({ kind: "mark", verdict: "duplicate" })} disabled={status === "duplicate" || status === "merged"}>
              <Check className="size-4" aria-hidden /> Mark duplicates
            </Button>
            <Button size="sm" onClick={() => onAction({ kind: "mark", verdict: "not_duplicate" })} disabled={status === "not_duplicate" || status === "merged"}>
              <X className="size-4" aria-hidden /> Mark not duplicates
            </Button>
            <Button size="sm" onClick={() => setMerging(true)} disabled={status === "merged"}>
              <GitMerge className="size-4" aria-hidden /> Merge
            </Button>
            <Button size="sm" onClick={() => setTagging(true)}>
              <Tag className="size-4" aria-hidden /> Tag
            </Button>
          </div>
        </header>
        <ul className={clsx("grid grid-cols-2 gap-3 sm:grid-cols-3 lg:grid-cols-5", done && "opacity-80")}>
          {members.map((m) => {
            const isKeeper = m.image_id === keeper;
            return (
              <li key={m.image_id} className={clsx("overflow-hidden rounded-lg border bg-white", isKeeper ? "border-amber-400 ring-2 ring-amber-300" : "border-slate-200")}>
                <button type="button" className="block w-full" onClick={() => onOpenImage?.(m.image_id)} aria-label={`Open ${m.name}`}>
                  <AuthImage src={m.preview_url} alt={m.name} className="aspect-square w-full" />
                </button>
                <div className="space-y-1 p-2 text-xs">
                  <p className="truncate font-medium text-slate-800" title={m.name}>
                    {m.name}
                  </p>
                  <p className="text-slate-500">
                    {m.width && m.height ? `${m.width}×${m.height} · ` : ""}
                    {formatBytes(m.bytes)} · q {formatScore(m.quality_score, 2)}
                  </p>
                  <p className="text-slate-500">score {formatScore(m.score)}</p>
                  {isKeeper ? (
                    <Badge tone="amber">
                      <Crown className="size-3" aria-hidden /> {m.image_id === cluster.keeper ? "Suggested keeper" : "Keeper"}
                    </Badge>
                  ) : (
                    <button type="button" className="text-brand-700 underline" onClick={() => setKeeper(m.image_id)} disabled={status === "merged"}>
                      Keep this one
                    </button>
                  )}
                </div>
              </li>
            );
          })}
        </ul>
        {groups.length > 0 && renderGroup && (
          <section className="mt-4 space-y-3" aria-label="Copies within this group">
            <h3 className="text-sm font-medium text-slate-700">
              Copies of one photo within this group ({groups.length})
            </h3>
            {groups.map((g) => (
              <div key={g.id}>{renderGroup(g)}</div>
            ))}
          </section>
        )}
      </article>
      <Dialog open={merging} onOpenChange={setMerging} title="Merge this cluster?" description="The keeper stays; the other images are merged into its record.">
        <div className="space-y-4">
          <Field label="The other images">
            {(props) => (
              <Select {...props} value={mode} onChange={(e) => setMode(e.target.value as "move" | "drop")}>
                <option value="move">move into the keeper's record</option>
                <option value="drop">are deleted</option>
              </Select>
            )}
          </Field>
          <div className="flex justify-end gap-2">
            <Button onClick={() => setMerging(false)}>Cancel</Button>
            <Button
              variant="primary"
              onClick={() => {
                onAction({ kind: "merge", keeper, mode });
                setMerging(false);
              }}
            >
              Merge into keeper
            </Button>
          </div>
        </div>
      </Dialog>
      <Dialog open={tagging} onOpenChange={setTagging} title="Tag every image's record" description="The tags are added to the records of all images in the cluster.">
        <div className="space-y-4">
          <TagInput value={tags} onChange={setTags} label="Tags to add" />
          <div className="flex justify-end gap-2">
            <Button onClick={() => setTagging(false)}>Cancel</Button>
            <Button
              variant="primary"
              disabled={!tags.length}
              onClick={() => {
                onAction({ kind: "tag", tags });
                setTags([]);
                setTagging(false);
              }}
            >
              Add tags
            </Button>
          </div>
        </div>
      </Dialog>
    </Card>
  );
}
