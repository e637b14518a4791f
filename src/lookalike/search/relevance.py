"""When a hit is a match at all: each model's relevance cut-off, per kind of query.

A cosine means something different for every model, and for an image query than for a text
query (CLIP's text-to-image cosines sit far below its image-to-image ones), so the cut-offs are
per model and per kind. Hits below the cut-off are "weaker matches": hidden unless asked for.

The offline model's image cut-off comes from the cosine scan of `bench/dedup_eval.py`: 61
photographs (the real sample photos and synthetic scenes), 19 edited copies of each and second
shots of some scenes, 850,000 pairs. At 0.55, 99.4% of the pairs of one photograph or one scene
stay visible, and 98% of what is shown is at least the same subject (two landscapes); at 0.45,
27% of what is shown would be other subjects. Among the real photos alone the unrelated cosines
run: median 0.16, 99th percentile 0.41, highest 0.60. No CLIP weights can be had on the machine
that measured it, so CLIP's follow published practice (unrelated photos below about 0.5
image-to-image; captions that fit score above 0.2) until a run says otherwise.
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
    "efficientnet-lite0": RelevanceCutoffs(image=0.55),
    "clip-vit-b-32-laion2b": RelevanceCutoffs(image=0.5, text=0.2),
}


def relevance_cutoff(collection: Collection, kind: QueryKind) -> float | None:
    """The cut-off for a `kind` query in `collection` (None: every hit counts)."""
    cutoffs = MODEL_CUTOFFS.get(collection.model.removesuffix("-int8"))
    if cutoffs is None:
        return None
    return cutoffs.image if kind == "image" else cutoffs.text
