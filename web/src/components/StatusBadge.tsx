import { Badge, type Tone } from "./ui";

const tones: Record<string, Tone> = {
  embedded: "green",
  done: "green",
  added: "green",
  pending: "amber",
  queued: "amber",
  running: "amber",
  duplicate: "blue",
  failed: "red",
  rejected: "red",
};

/** An image's embedding status, a job's status, or an ingest outcome. */
export function StatusBadge({ status, title }: { status: string; title?: string | undefined }) {
  return (
    <Badge tone={tones[status] ?? "slate"}>
      <span title={title}>{status}</span>
    </Badge>
  );
}
