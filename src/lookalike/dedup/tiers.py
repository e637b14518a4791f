"""Duplicate tiers and their thresholds.

Three tiers, strongest first:

``exact``
    The same bytes (sha256). Within one collection the same bytes are stored once, so ingest
    answers such a file with "duplicate" and the stored image; a sweep never finds this tier.
``near_exact``
    pHash within `phash_gate` bits *and* embedding cosine >= `near_exact_cosine`: a resized,
    recompressed, brightened or grayscale copy of the same picture. The pHash gate alone lets
    through different pictures with similar layouts, the cosine alone different shots of one
    scene; both together are what "duplicate" means to people.
``similar``
    Embedding cosine >= `similar_cosine` only: crops, rotations, other shots of the same thing.

A cosine means something different for every model (EfficientNet features sit much closer
together than CLIP's), so the defaults are per model and a collection may override them.
The defaults come from `bench/dedup_eval.py`; docs/quality.md has the measurements.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from lookalike.catalog import Collection
from lookalike.core.errors import InvalidInput
from lookalike.imaging.phash_index import MAX_GATE

Tier = Literal["exact", "near_exact", "similar"]
TIERS: tuple[Tier, ...] = ("exact", "near_exact", "similar")


@dataclass(frozen=True)
class DedupThresholds:
    phash_gate: int = 6
    near_exact_cosine: float = 0.9
    similar_cosine: float = 0.8

    def checked(self) -> DedupThresholds:
        """Itself, or `InvalidInput` naming the value out of range."""
        if not 0 <= self.phash_gate <= MAX_GATE:
            raise InvalidInput(f"phash_gate must be between 0 and {MAX_GATE} bits")
        for name in ("near_exact_cosine", "similar_cosine"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise InvalidInput(f"{name} must be in (0, 1], got {value}")
        if self.similar_cosine > self.near_exact_cosine:
            raise InvalidInput("similar_cosine must not be above near_exact_cosine")
        return self

    def merged(self, overrides: Mapping[str, Any] | None) -> DedupThresholds:
        """These thresholds with the given fields replaced (unknown fields refused)."""
        if not overrides:
            return self
        unknown = set(overrides) - set(asdict(self))
        if unknown:
            raise InvalidInput(f"unknown dedup threshold(s): {', '.join(sorted(unknown))}")
        values = {k: v for k, v in overrides.items() if v is not None}
        try:
            return replace(self, **values).checked()
        except TypeError as exc:
            raise InvalidInput(f"bad dedup thresholds: {exc}") from None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# Measured with bench/dedup_eval.py on the sample photos (see docs/quality.md). The CLIP
# figures are the ones the same benchmark gives for the CLIP export; only a random-weight
# export of that architecture could be measured here, so they follow published CLIP practice
# (copies >= 0.95, same subject >= 0.85) until a run with the real weights says otherwise.
MODEL_THRESHOLDS: dict[str, DedupThresholds] = {
    "efficientnet-lite0": DedupThresholds(phash_gate=6, near_exact_cosine=0.7, similar_cosine=0.65),
    "clip": DedupThresholds(phash_gate=6, near_exact_cosine=0.95, similar_cosine=0.85),
}
FALLBACK_THRESHOLDS = DedupThresholds()


def model_thresholds(model: str) -> DedupThresholds:
    """The default thresholds for a registry model name."""
    if model in MODEL_THRESHOLDS:
        return MODEL_THRESHOLDS[model]
    if "clip" in model:
        return MODEL_THRESHOLDS["clip"]
    return FALLBACK_THRESHOLDS


def collection_thresholds(
    model: str, vector_settings: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> DedupThresholds:
    """Model defaults, then the collection's own (`vector_settings["dedup"]`), then `overrides`."""
    stored = vector_settings.get("dedup") if vector_settings else None
    return model_thresholds(model).merged(stored).merged(overrides)


def tier_of(cosine: float, hamming: int | None, thresholds: DedupThresholds) -> Tier | None:
    """The tier of a pair of different images (None: not duplicates at all)."""
    if (
        hamming is not None
        and hamming <= thresholds.phash_gate
        and cosine >= thresholds.near_exact_cosine
    ):
        return "near_exact"
    if cosine >= thresholds.similar_cosine:
        return "similar"
    return None


def thresholds_of(
    collection: Collection, overrides: Mapping[str, Any] | None = None
) -> DedupThresholds:
    return collection_thresholds(collection.model, collection.vector_settings or {}, overrides)
