"""The sweep's building blocks on hand-made vectors: candidates, tiers, constraints."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from lookalike.composition import Lookalike
from lookalike.core.errors import InvalidInput
from lookalike.dedup.clusters import phash_candidate_pairs, sweep
from lookalike.dedup.tiers import DedupThresholds, collection_thresholds, model_thresholds

LIMITS = DedupThresholds(phash_gate=6, near_exact_cosine=0.9, similar_cosine=0.8)


def _unit(rows: NDArray[np.float64]) -> NDArray[np.float32]:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _exact_neighbours(vectors: NDArray[np.float32], k: int = 10):  # type: ignore[no-untyped-def]
    def search(row: int) -> Iterator[tuple[int, float]]:
        scores = vectors @ vectors[row]
        for other in np.argsort(-scores)[: k + 1]:
            yield int(other), float(scores[other])

    return search


@given(
    st.lists(st.integers(0, 2**64 - 1), min_size=2, max_size=40),
    st.integers(0, 11),
    st.lists(st.integers(0, 63), max_size=6),
)
@settings(max_examples=60, deadline=None)
def test_phash_candidates_equal_brute_force(hashes: list[int], gate: int, flips: list[int]) -> None:
    # A planted near copy makes close pairs likely, not just random far ones.
    near = hashes[0]
    for bit in flips:
        near ^= 1 << bit
    values: list[int | None] = [*hashes, near, None]
    expected = {
        (a, b)
        for a, b in combinations(range(len(values)), 2)
        if values[a] is not None
        and values[b] is not None
        and (values[a] ^ values[b]).bit_count() <= gate  # type: ignore[operator]
    }
    assert phash_candidate_pairs(values, gate) == expected


def _scene() -> tuple[NDArray[np.float32], list[int | None]]:
    """Rows 0-2: one picture and two copies; 3-4: another shot of it (similar only);
    5-6: different pictures with the same layout (pHash close, vectors far); 7: alone."""
    rng = np.random.default_rng(1)
    base = rng.standard_normal(64)
    other_shot = base + 0.45 * rng.standard_normal(64)
    rows = [
        base,
        base + 0.05 * rng.standard_normal(64),
        base + 0.05 * rng.standard_normal(64),
        other_shot,
        other_shot + 0.05 * rng.standard_normal(64),
        rng.standard_normal(64),
        rng.standard_normal(64),
        rng.standard_normal(64),
    ]
    h = 0x0123456789ABCDEF
    phashes: list[int | None] = [h, h ^ 0b11, h ^ 0b1100, h ^ (2**40 - 1), h ^ (2**40 - 1) ^ 1]
    layout = 0xFEDCBA9876543210
    phashes += [layout, layout ^ 1, None]
    return _unit(np.array(rows)), phashes


def test_sweep_tiers_copies_apart_from_other_shots() -> None:
    vectors, phashes = _scene()
    assert vectors[0] @ vectors[3] >= 0.8  # the other shot is "similar" to the original
    clusters, stats = sweep(vectors, phashes, _exact_neighbours(vectors), LIMITS)
    by_tier = {(c.tier, tuple(c.members)) for c in clusters}
    assert ("near_exact", (0, 1, 2)) in by_tier
    assert ("near_exact", (3, 4)) in by_tier
    assert ("similar", (0, 1, 2, 3, 4)) in by_tier
    # Same layout, different picture: the pHash gate alone never makes a duplicate.
    assert not any(5 in c.members or 6 in c.members or 7 in c.members for c in clusters)
    assert stats.points == 8 and stats.phash_pairs >= 4 and stats.edges >= 4
    # Each group once: the two copy groups nest in the scene's group, nothing repeats it.
    assert len(clusters) == 3
    scene = next(i for i, c in enumerate(clusters) if c.tier == "similar")
    assert [c.parent for c in clusters if c.tier == "near_exact"] == [scene, scene]
    assert clusters[scene].parent is None
    assert len({tuple(c.members) for c in clusters}) == len(clusters)


def test_a_copy_group_that_is_the_whole_scene_is_one_cluster() -> None:
    vectors, phashes = _scene()
    clusters, _ = sweep(vectors[:3], phashes[:3], _exact_neighbours(vectors[:3]), LIMITS)
    assert [(c.tier, c.members, c.parent) for c in clusters] == [("near_exact", [0, 1, 2], None)]


def test_different_verdict_splits_and_same_verdict_joins() -> None:
    vectors, phashes = _scene()
    clusters, _ = sweep(
        vectors, phashes, _exact_neighbours(vectors), LIMITS, different=[(0, 1)], same=[(5, 7)]
    )
    for c in clusters:
        assert not {0, 1} <= set(c.members), "a 'different' pair must never share a cluster"
    assert any(set(c.members) == {5, 7} for c in clusters), "a 'same' pair is always grouped"


def test_sweep_of_nothing() -> None:
    clusters, stats = sweep(np.zeros((0, 8), np.float32), [], lambda row: [], LIMITS)
    assert clusters == [] and stats.points == 0


def test_huge_component_is_split_to_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    from lookalike.dedup import clusters as module

    monkeypatch.setattr(module, "MAX_COMPONENT", 4)
    vectors, phashes = _scene()
    found, stats = sweep(vectors, phashes, _exact_neighbours(vectors), LIMITS)
    assert stats.split_components == 1
    assert all(len(c.members) <= 4 for c in found)
    assert any(c.tier == "near_exact" and c.members == [0, 1, 2] for c in found)


def test_thresholds_validate_and_layer() -> None:
    assert model_thresholds("efficientnet-lite0") != model_thresholds("clip-vit-b-32-laion2b")
    layered = collection_thresholds(
        "efficientnet-lite0", {"dedup": {"phash_gate": 4}}, {"similar_cosine": 0.5}
    )
    assert layered.phash_gate == 4 and layered.similar_cosine == 0.5
    for bad in (
        {"phash_gate": 12},
        {"near_exact_cosine": 1.5},
        {"similar_cosine": 0},
        {"near_exact_cosine": 0.5, "similar_cosine": 0.6},
        {"bogus": 1},
    ):
        with pytest.raises(InvalidInput):
            LIMITS.merged(bad)


def test_keeper_policy_rules_in_order() -> None:
    from datetime import UTC, datetime

    from lookalike.catalog import Image
    from lookalike.dedup.sweep import choose_keeper

    def image(id_: str, w: int, q: float | None, day: int, mime: str, size: int) -> Image:
        return Image(
            id=id_,
            width=w,
            height=w,
            quality_score=q,
            created_at=datetime(2026, 1, day, tzinfo=UTC),
            mime=mime,
            bytes=size,
        )

    big = image("a", 2000, 0.2, 3, "image/jpeg", 100)
    sharp = image("b", 1000, 0.9, 2, "image/webp", 300)
    old = image("c", 1000, 0.5, 1, "image/png", 200)
    group = [big, sharp, old]
    formats = ["image/png", "image/webp", "image/jpeg"]
    assert choose_keeper(group, ["resolution", "quality"], formats) is big
    assert choose_keeper(group, ["quality"], formats) is sharp
    assert choose_keeper(group, ["oldest"], formats) is old
    assert choose_keeper(group, ["newest"], formats) is big
    assert choose_keeper(group, ["format"], formats) is old
    assert choose_keeper(group, ["bytes"], formats) is sharp
    # Ties fall through to the next rule, then to the id.
    assert choose_keeper([sharp, old], ["resolution", "oldest"], formats) is old
    assert choose_keeper([sharp, old], [], formats) is sharp


def test_verdict_looks_past_a_crowd_of_look_alikes(tmp_path: Path) -> None:
    """More close look-alikes than the first search returns, none of them a copy by pHash:
    the verdict still finds the near-exact copy through the pHash gate's index."""

    from lookalike.catalog import new_id
    from lookalike.dedup.verdicts import VERDICT_CANDIDATES, nearest_duplicate
    from lookalike.imaging.hashes import phash_chunks
    from lookalike.vectors.base import IndexSettings, Point, VectorSpec
    from lookalike.vectors.qdrant_edge import QdrantEdgeIndex

    rng = np.random.default_rng(3)
    query = _unit(rng.standard_normal((1, 64)))[0]
    phash = "0123456789abcdef"
    far = "fedcba9876543210"
    crowd = [
        _unit((query + 0.02 * rng.standard_normal(64))[None])[0]
        for _ in range(VERDICT_CANDIDATES + 4)
    ]
    copy = _unit((query + 0.2 * rng.standard_normal(64))[None])[0]
    assert float(copy @ query) < min(float(v @ query) for v in crowd)
    index = QdrantEdgeIndex(tmp_path)
    try:
        index.create_collection(
            "c",
            [VectorSpec("v", 64)],
            IndexSettings(),
            {f"phash_q{i}": "keyword" for i in range(4)} | {"phash": "keyword"},
        )
        ids = [new_id() for _ in range(len(crowd) + 2)]
        points = [
            Point(id=i, vectors={"v": v}, payload={"phash": far, **phash_chunks(far)})
            for i, v in zip(ids, crowd, strict=False)
        ]
        copy_id, new = ids[-2], ids[-1]
        points.append(
            Point(id=copy_id, vectors={"v": copy}, payload={"phash": phash, **phash_chunks(phash)})
        )
        index.upsert("c", points)
        assert len(crowd) > VERDICT_CANDIDATES
        verdict = nearest_duplicate(
            index,
            "c",
            "v",
            new,
            query,
            "0123456789abcdee",  # one bit from the copy's
            DedupThresholds(
                phash_gate=6, near_exact_cosine=float(copy @ query) - 0.01, similar_cosine=0.5
            ),
        )
    finally:
        index.close()
    assert verdict is not None and verdict.tier == "near_exact" and verdict.image_id == copy_id


def test_an_image_in_two_clusters_keeps_each_clusters_score(
    rt: Lookalike, photos: dict[str, bytes]
) -> None:
    from lookalike.catalog.models import DuplicateCluster, DuplicateClusterMember
    from lookalike.dedup.review import cluster_members
    from lookalike.ingest.pipeline import IngestFile, NewRecord
    from lookalike.records.service import create_collection

    collection = create_collection(rt, "local", "c")
    ids = [
        rt.ingest.add(collection, NewRecord(name=n, owner="o"), [IngestFile(photos[n], n)])[0]
        for n in ("coffee", "rocket", "chelsea")
    ]
    a, b, c = (r.image_id for r in ids)

    def cluster(id_: str, keeper: str, scores: dict[str, float]) -> DuplicateCluster:
        made = DuplicateCluster(id=id_, tier="similar", keeper_image_id=keeper)
        made.members = [DuplicateClusterMember(image_id=i, score=s) for i, s in scores.items()]
        return made

    first = cluster("1", a, {b: 0.7, a: 1.0})
    second = cluster("2", c, {a: 0.9, b: 0.8, c: 1.0})
    members = cluster_members(rt, [first, second])
    assert [(m.image_id, m.score) for m in members["1"]] == [(a, 1.0), (b, 0.7)]
    assert [(m.image_id, m.score) for m in members["2"]] == [(c, 1.0), (a, 0.9), (b, 0.8)]
    assert {m.name for m in members["2"]} == {"coffee", "rocket", "chelsea"}
