/** Verdicts on an image (for the current query when there is one), and what was said before. */
import { Ban, Copy, ShieldAlert, ThumbsDown, ThumbsUp } from "lucide-react";
import { toast } from "sonner";

import { useFeedbackHistory, useGiveFeedback } from "@/api/queries";
import type { FeedbackAction } from "@/api/types";
import { formatDate } from "@/lib/format";

import { Badge, Button, Skeleton } from "./ui";

const ACTIONS: { action: FeedbackAction; label: string; icon: typeof ThumbsUp }[] = [
  { action: "relevant", label: "Relevant", icon: ThumbsUp },
  { action: "irrelevant", label: "Irrelevant", icon: ThumbsDown },
  { action: "duplicate", label: "Duplicate", icon: Copy },
  { action: "anomaly", label: "Anomaly", icon: ShieldAlert },
];

export function FeedbackButtons({
  imageId,
  query,
}: {
  imageId: string;
  query?: { image_id?: string; text?: string } | undefined;
}) {
  const give = useGiveFeedback();
  return (
    <div className="flex flex-wrap gap-2" role="group" aria-label="Feedback">
      {ACTIONS.map(({ action, label, icon: Icon }) => (
        <Button
          key={action}
          size="sm"
          busy={give.isPending && give.variables?.action === action}
          onClick={() =>
            give.mutate({ imageId, action, query }, { onSuccess: () => toast.success(`Marked ${label.toLowerCase()}`) })
          }
        >
          <Icon className="size-4" aria-hidden /> {label}
        </Button>
      ))}
    </div>
  );
}

export function FeedbackHistory({ imageId }: { imageId: string }) {
  const history = useFeedbackHistory(imageId);
  if (history.isLoading) return <Skeleton className="h-16" />;
  if (history.error) return <p className="text-sm text-red-700">Feedback history unavailable.</p>;
  const items = history.data?.items ?? [];
  if (!items.length) {
    return (
      <p className="flex items-center gap-2 text-sm text-slate-500">
        <Ban className="size-4" aria-hidden /> No feedback on this image yet.
      </p>
    );
  }
  return (
    <ul className="space-y-2" aria-label="Feedback history">
      {items.map((f) => (
        <li key={f.id} className="flex flex-wrap items-center gap-2 text-sm">
          <Badge tone={f.action === "relevant" ? "green" : f.action === "irrelevant" ? "red" : "amber"}>{f.action ?? `score ${f.score}`}</Badge>
          <span className="text-slate-700">{f.user}</span>
          <time className="text-xs text-slate-500" dateTime={f.created_at}>
            {formatDate(f.created_at)}
          </time>
          {f.query.text && <span className="truncate text-xs text-slate-500">for “{f.query.text}”</span>}
          {f.note && <span className="w-full text-xs text-slate-600">{f.note}</span>}
        </li>
      ))}
    </ul>
  );
}
