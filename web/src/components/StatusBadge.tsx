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
  skipped: "slate",
};

/** An image's embedding status, a job's or an enrichment stage's status, or an ingest outcome;
 * `tone` names the status to colour by when the label says more than the status. */
export function StatusBadge({ status, title, tone }: { status: string; title?: string | undefined; tone?: string }) {
  return (
    <Badge tone={tones[tone ?? status] ?? "slate"}>
      <span title={title}>{status}</span>
    </Badge>
  );
}
