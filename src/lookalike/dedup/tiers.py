"""Duplicate tiers and the rules that decide them.

Three tiers, strongest first:

``exact``
    The same bytes (sha256), or the same pixels in another file (a PNG saved again as lossless
    WebP). Within one collection the same bytes are stored once, so ingest answers such a file
    with "duplicate" and the stored image.
``near_exact``
    The same photograph after edits: resized, recompressed, converted, cropped by up to about
    a third, framed with borders or letterbox bars, watermarked or captioned, recoloured,
    brightened, blurred, noised, squashed or seen in perspective. Decided by *evidence* that
    the two are one photograph (`imaging.photo_match`): local features that agree under one
    homography, one frame (mostly) inside the other and covering most of it, the aligned
    pixels correlating, and no second plane (parallax). Only when an image has too few
    features for that evidence (a blank, tiny or heavily blurred one) does a joint rule on
    pHash and cosine decide: the closer the hashes, the less cosine it needs.
``similar``
    Embedding cosine >= `similar_cosine`: the same scene or subject, other shots of it
    (bursts, stereo pairs, re-takes), crops of more than a third, mirror images.

Which pairs are looked at is the engines' job: the nearest images by embedding (cosine >=
`similar_cosine`) and those within `phash_gate` bits. A cosine means something different for
every model (EfficientNet features sit much closer together than CLIP's), so the cosine
defaults are per model; the geometric ones are properties of images, the same for every
model. A collection may override any of them. `bench/dedup_eval.py` measures them all;
docs/quality.md has the figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from lookalike.catalog import Collection
from lookalike.core.errors import InvalidInput
from lookalike.imaging.phash_index import MAX_GATE
from lookalike.imaging.photo_match import PhotoMatch

Tier = Literal["exact", "near_exact", "similar"]
TIERS: tuple[Tier, ...] = ("exact", "near_exact", "similar")


@dataclass(frozen=True)
class DedupThresholds:
    # Candidates, and the fallback rule for images without enough features: within
    # `phash_gate` bits, near_exact needs `near_exact_cosine` at the gate and less for closer
    # hashes, down to halfway to `similar_cosine` for identical hashes.
    phash_gate: int = 6
    near_exact_cosine: float = 0.9
    similar_cosine: float = 0.8
    # The geometric evidence (`imaging.photo_match`); off, the fallback rule decides alone.
    geometric_check: bool = True
    min_keypoints: int = 50  # fewer in either image: no evidence, the fallback rule decides
    min_inliers: int = 12
    min_overlap: float = 0.6  # a crop keeps at least this share of its original's frame
    min_containment: float = 0.9  # one frame (almost) wholly inside the other
    min_correlation: float = 0.7  # the aligned pixels agree
    max_second_plane: float = 0.12  # matches a second homography explains: parallax
    min_spread: float = 0.35  # share of the detailed areas the agreement covers

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
        for name in ("min_overlap", "min_containment", "max_second_plane", "min_spread"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InvalidInput(f"{name} must be in [0, 1], got {value}")
        if not -1.0 <= self.min_correlation <= 1.0:
            raise InvalidInput(f"min_correlation must be in [-1, 1], got {self.min_correlation}")
        for name in ("min_keypoints", "min_inliers"):
            if getattr(self, name) < 4:
                raise InvalidInput(f"{name} must be at least 4 (a homography needs four points)")
        if self.min_overlap > self.min_containment:
            raise InvalidInput("min_overlap must not be above min_containment")
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


def tier_of(
    cosine: float,
    hamming: int | None,
    thresholds: DedupThresholds,
    match: PhotoMatch | None = None,
) -> Tier | None:
    """The tier of a pair of different images (None: not duplicates at all). `match` is the
    geometric evidence, when it was measured (`needs_match` says when it is worth it)."""
    if match is not None and match.same_pixels:
        return "exact"
    evidence = (
        same_photograph(match, thresholds)
        if match is not None and thresholds.geometric_check
        else None
    )
    if evidence is True:
        return "near_exact"
    if evidence is None and hashes_say_copy(cosine, hamming, thresholds):
        return "near_exact"
    if cosine >= thresholds.similar_cosine:
        return "similar"
    return None


def same_photograph(match: PhotoMatch, thresholds: DedupThresholds) -> bool | None:
    """Whether the geometry shows one photograph; None when an image has too few features
    for it to show anything (blank, tiny, heavily blurred)."""
    if match.keypoints < thresholds.min_keypoints:
        return None
    return (
        match.inliers >= thresholds.min_inliers
        and match.overlap >= thresholds.min_overlap
        and match.containment >= thresholds.min_containment
        and match.correlation >= thresholds.min_correlation
        and match.second_plane <= thresholds.max_second_plane
        and match.spread >= thresholds.min_spread
    )


def same_scene(match: PhotoMatch | None, thresholds: DedupThresholds) -> bool:
    """Whether the geometry shows the same scene, one photograph or not: many matches agree
    under one homography across the part both frames show (a pan, a stereo pair, a burst).
    A similar pair with this evidence outranks one that only looks alike."""
    return (
        match is not None
        and thresholds.geometric_check
        and match.keypoints >= thresholds.min_keypoints
        and match.inliers >= thresholds.min_inliers
        and match.correlation >= thresholds.min_correlation
        and match.spread >= thresholds.min_spread
    )


def hashes_say_copy(cosine: float, hamming: int | None, thresholds: DedupThresholds) -> bool:
    """The fallback rule: pHash within the gate and a cosine that the hashes' closeness
    lowers, from `near_exact_cosine` at the gate to halfway to `similar_cosine` at 0 bits."""
    if hamming is None or hamming > thresholds.phash_gate:
        return False
    slack = (thresholds.near_exact_cosine - thresholds.similar_cosine) / 2
    closeness = 1.0 - hamming / thresholds.phash_gate if thresholds.phash_gate else 1.0
    return cosine >= thresholds.near_exact_cosine - slack * closeness


def needs_match(cosine: float, hamming: int | None, thresholds: DedupThresholds) -> bool:
    """Whether a pair is a near-exact candidate worth the geometric check: as similar as the
    similar tier, or within the pHash gate."""
    return thresholds.geometric_check and (
        cosine >= thresholds.similar_cosine
        or (hamming is not None and hamming <= thresholds.phash_gate)
    )


def thresholds_of(
    collection: Collection, overrides: Mapping[str, Any] | None = None
) -> DedupThresholds:
    return collection_thresholds(collection.model, collection.vector_settings or {}, overrides)
