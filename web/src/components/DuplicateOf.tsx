/** "Near-exact copy of <record>": a duplicate verdict in words, naming the record, never a raw id. */
import { Link } from "react-router-dom";

import { useImage, useRecord } from "@/api/queries";

const verdictWords: Record<string, string> = {
  exact: "Duplicate of",
  near_exact: "Near-exact copy of",
  similar: "Similar to",
};

export function DuplicateOf({
  tier,
  recordId,
  recordName,
  imageId,
  onOpen,
}: {
  tier: string;
  recordId: string | null | undefined;
  recordName?: string | null | undefined;
  imageId: string | null | undefined;
  /** Open the other image in place (the detail panel); otherwise the name links to its record. */
  onOpen?: ((imageId: string) => void) | undefined;
}) {
  // Verdicts name the record; an older answer (or none) leaves it to be looked up.
  const other = useImage(recordName || recordId ? undefined : (imageId ?? undefined));
  const id = recordId ?? other.data?.record_id;
  const record = useRecord(recordName ? undefined : (id ?? undefined));
  const name = recordName ?? record.data?.name ?? "an existing image";
  const link = "font-medium text-brand-700 underline";
  return (
    <span data-testid="verdict" data-tier={tier}>
      {verdictWords[tier] ?? "Duplicate of"}{" "}
      {onOpen && imageId ? (
        <button type="button" className={link} onClick={() => onOpen(imageId)} title={`Open this image (${imageId})`}>
          {name}
        </button>
      ) : id ? (
        <Link to={`/records/${id}`} className={link}>
          {name}
        </Link>
      ) : (
        name
      )}
    </span>
  );
}
