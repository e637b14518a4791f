"""The tier rules: geometric evidence first, the pHash-and-cosine rule where there is none."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lookalike.core.errors import InvalidInput
from lookalike.dedup.tiers import (
    DedupThresholds,
    collection_thresholds,
    hashes_say_copy,
    needs_match,
    tier_of,
)
from lookalike.imaging.photo_match import PhotoMatch

T = DedupThresholds(phash_gate=6, near_exact_cosine=0.9, similar_cosine=0.8)
COPY = PhotoMatch(
    keypoints=800,
    matches=500,
    inliers=480,
    overlap=0.75,
    containment=1.0,
    correlation=0.98,
    spread=0.9,
)


def test_geometric_evidence_decides_whatever_the_hashes_say() -> None:
    # A crop: the pHash is far off and the cosine middling, the geometry says one photo.
    assert tier_of(0.82, 30, T, COPY) == "near_exact"
    # Even below the similar cosine (a heavily recoloured copy found through the pHash gate).
    assert tier_of(0.5, 4, T, COPY) == "near_exact"
    # A stereo pair: hashes within the gate and a high cosine, but a second plane.
    stereo = replace(COPY, overlap=0.93, second_plane=0.2)
    assert tier_of(0.97, 2, T, stereo) == "similar"
    # Pans: each frame only partly inside the other.
    assert tier_of(0.95, 3, T, replace(COPY, overlap=0.55, containment=0.57)) == "similar"
    # Aligned but the pixels disagree (a re-take from the same tripod).
    assert tier_of(0.95, 3, T, replace(COPY, correlation=0.4)) == "similar"
    # Agreement in one patch only: the same watermark on two different photos.
    assert tier_of(0.95, 3, T, replace(COPY, spread=0.2)) == "similar"
    assert tier_of(0.5, 30, T, replace(COPY, inliers=5)) is None
    assert tier_of(0.99, 0, T, replace(COPY, same_pixels=True)) == "exact"


def test_without_features_the_hashes_and_the_cosine_decide() -> None:
    blank = PhotoMatch(keypoints=3, matches=0, inliers=0, overlap=0, containment=0, correlation=0)
    for match in (None, blank):
        assert tier_of(0.91, 6, T, match) == "near_exact"
        assert tier_of(0.89, 6, T, match) == "similar"
        assert tier_of(0.86, 0, T, match) == "near_exact"  # identical hashes need less
        assert tier_of(0.84, 0, T, match) == "similar"
        assert tier_of(0.99, 7, T, match) == "similar"  # outside the gate
        assert tier_of(0.99, None, T, match) == "similar"  # no pHash
        assert tier_of(0.7, 0, T, match) is None
    # Switched off, the evidence is ignored.
    off = replace(T, geometric_check=False)
    assert tier_of(0.82, 30, off, COPY) == "similar"
    assert not needs_match(0.99, 0, off)


def test_the_cosine_needed_falls_as_the_hashes_close() -> None:
    needed = []
    for bits in range(T.phash_gate + 1):
        cosine = next(c / 1000 for c in range(700, 1001) if hashes_say_copy(c / 1000, bits, T))
        needed.append(cosine)
    assert needed == sorted(needed)
    assert needed[0] == pytest.approx(0.85, abs=0.002)
    assert needed[-1] == pytest.approx(0.9, abs=0.002)


def test_candidates_for_the_geometric_check() -> None:
    assert needs_match(0.8, None, T)
    assert needs_match(0.3, 6, T)
    assert not needs_match(0.79, 7, T)


@pytest.mark.parametrize(
    "overrides",
    [
        {"min_overlap": 1.5},
        {"min_overlap": 0.95, "min_containment": 0.9},
        {"min_correlation": -2},
        {"max_second_plane": -0.1},
        {"min_spread": 1.1},
        {"min_inliers": 2},
        {"min_keypoints": 0},
        {"phash_gate": 12},
        {"similar_cosine": 0.95},
        {"sharpness": 3},
    ],
)
def test_bad_thresholds_are_refused_by_name(overrides: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        T.merged(overrides)


def test_a_collection_overrides_the_model_defaults() -> None:
    stored = {"dedup": {"geometric_check": False, "min_overlap": 0.5}}
    merged = collection_thresholds("efficientnet-lite0", stored, {"similar_cosine": 0.6})
    assert merged.geometric_check is False
    assert merged.min_overlap == 0.5
    assert merged.similar_cosine == 0.6
    assert merged.min_containment == DedupThresholds().min_containment
