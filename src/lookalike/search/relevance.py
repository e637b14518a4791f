"""When a hit is a match at all: each model's relevance cut-off, per kind of query.

A cosine means something different for every model, and for an image query than for a text
query (CLIP's text-to-image cosines sit far below its image-to-image ones), so the cut-offs are
per model and per kind. Hits below the cut-off are "weaker matches": hidden unless asked for.

The offline model's image cut-off comes from `bench/dedup_eval.py --relevance` on the sample
photos and their edited copies: at 0.45 every copy (resized, recompressed, brightened, grey,
cropped, rotated, flipped, captioned) is kept and 99% of the unrelated pairs are hidden (the
unrelated cosines: median 0.16, 99th percentile 0.41, highest 0.60). No CLIP weights can be
had on the machine that measured it, so CLIP's follow published practice (unrelated photos
below about 0.5 image-to-image; captions that fit score above 0.2) until a run says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lookalike.catalog import Collection

QueryKind = Literal["image", "text"]


@dataclass(frozen=True)
class RelevanceCutoffs:
    image: float | None = None
    text: float | None = None


# Only models whose cosines are known get one (an int8 variant shares its model's): a cut-off
# guessed for another model would hide what it finds, so any other model shows every hit.
MODEL_CUTOFFS: dict[str, RelevanceCutoffs] = {
    "efficientnet-lite0": RelevanceCutoffs(image=0.45),
    "clip-vit-b-32-laion2b": RelevanceCutoffs(image=0.5, text=0.2),
}


def relevance_cutoff(collection: Collection, kind: QueryKind) -> float | None:
    """The cut-off for a `kind` query in `collection` (None: every hit counts)."""
    cutoffs = MODEL_CUTOFFS.get(collection.model.removesuffix("-int8"))
    if cutoffs is None:
        return None
    return cutoffs.image if kind == "image" else cutoffs.text
