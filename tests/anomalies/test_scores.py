"""Outlier scores on synthetic clustered embeddings, and kNN through the embedded engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from ulid import ULID

from lookalike.anomalies.scores import (
    AnomalyScores,
    OodStats,
    anomaly_scores,
    neighbours_of,
    score_collection,
    score_new_points,
)
from lookalike.core.errors import InvalidInput
from lookalike.vectors.base import IndexSettings, Point, VectorSpec
from lookalike.vectors.qdrant_edge import QdrantEdgeIndex

DIM = 64
K = 10


def _unit(matrix: NDArray[np.float64]) -> NDArray[np.float32]:
    unit: NDArray[np.float32] = (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(
        np.float32
    )
    return unit


def _dataset(seed: int = 7) -> tuple[list[str], NDArray[np.float32], set[str]]:
    """3 tight gaussian clusters of 100 points around a shared direction, and 3 planted
    outliers (random directions, far from every cluster and from the mean direction)."""
    rng = np.random.default_rng(seed)
    common = rng.normal(size=DIM) * 3.0
    centres = common + rng.normal(size=(3, DIM))
    clusters = [c + 0.15 * rng.normal(size=(100, DIM)) for c in centres]
    outliers = rng.normal(size=(3, DIM)) - common / 2
    vectors = _unit(np.vstack([*clusters, outliers]))
    ids = [f"p{i:03d}" for i in range(300)] + ["out0", "out1", "out2"]
    return ids, vectors, {"out0", "out1", "out2"}


def _brute_neighbours(
    ids: list[str], vectors: NDArray[np.float32], k: int
) -> dict[str, list[tuple[str, float]]]:
    """Reference kNN (test-only; fine for a few hundred points)."""
    sims = vectors.astype(np.float64) @ vectors.astype(np.float64).T
    np.fill_diagonal(sims, -np.inf)
    out: dict[str, list[tuple[str, float]]] = {}
    for i, point_id in enumerate(ids):
        order = sorted(range(len(ids)), key=lambda j: (-sims[i, j], ids[j]))[:k]
        out[point_id] = [(ids[j], float(1.0 - sims[i, j])) for j in order]
    return out


def _top(scores: dict[str, AnomalyScores], field: str, n: int) -> set[str]:
    ranked = sorted(scores, key=lambda pid: (-scores[pid].as_dict()[field], pid))
    return set(ranked[:n])


@pytest.mark.parametrize("field", ["dnn", "density", "ood"])
def test_planted_outliers_rank_top(field: str) -> None:
    ids, vectors, outliers = _dataset()
    scores = anomaly_scores(ids, vectors, _brute_neighbours(ids, vectors, K), K)
    assert _top(scores, field, 3) == outliers


def test_inliers_look_ordinary() -> None:
    ids, vectors, outliers = _dataset()
    scores = anomaly_scores(ids, vectors, _brute_neighbours(ids, vectors, K), K)
    inliers = [scores[pid] for pid in ids if pid not in outliers]
    densities = np.array([s.density for s in inliers])
    assert 0.7 < float(np.median(densities)) < 1.3
    assert all(scores[pid].density > 1.5 for pid in outliers)
    oods = np.array([s.ood for s in scores.values()])
    assert abs(float(oods.mean())) < 1e-9
    assert float(oods.std()) == pytest.approx(1.0)


def test_scores_are_deterministic() -> None:
    ids, vectors, _ = _dataset()
    neighbours = _brute_neighbours(ids, vectors, K)
    first = anomaly_scores(ids, vectors, neighbours, K)
    second = anomaly_scores(ids, vectors.copy(), dict(neighbours), K)
    assert first == second
    assert list(first) == ids
    assert set(first["out0"].as_dict()) == {"dnn", "density", "ood"}


def test_exact_duplicate_has_zero_dnn() -> None:
    ids, vectors, _ = _dataset()
    ids = [*ids, "dup"]
    vectors = np.vstack([vectors, vectors[5:6]])
    scores = anomaly_scores(ids, vectors, _brute_neighbours(ids, vectors, K), K)
    assert scores["dup"].dnn == pytest.approx(0.0, abs=1e-6)
    assert scores["p005"].dnn == pytest.approx(0.0, abs=1e-6)
    assert all(np.isfinite(list(s.as_dict().values())).all() for s in scores.values())


def test_rejects_bad_input() -> None:
    ids, vectors, _ = _dataset()
    neighbours = _brute_neighbours(ids, vectors, K)
    with pytest.raises(InvalidInput):
        anomaly_scores(ids, vectors, neighbours, 0)
    with pytest.raises(InvalidInput):
        anomaly_scores(ids[:-1], vectors, neighbours, K)
    with pytest.raises(InvalidInput):
        anomaly_scores(ids, vectors, {**neighbours, "out0": []}, K)
    assert anomaly_scores([], np.zeros((0, DIM), dtype=np.float32), {}, K) == {}


def test_neighbours_through_qdrant_edge_match_brute_force(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    count, k = 60, 5
    vectors = _unit(
        rng.normal(size=(4, 16))[rng.integers(0, 4, count)] + rng.normal(size=(count, 16))
    )
    ids = [str(ULID()) for _ in range(count)]
    index = QdrantEdgeIndex(tmp_path, full_scan_points=10)
    try:
        index.create_collection(
            "imgs", [VectorSpec("clip", 16)], IndexSettings(hnsw_m=16, hnsw_ef_construct=200), {}
        )
        index.upsert("imgs", [Point(pid, {"clip": v}) for pid, v in zip(ids, vectors, strict=True)])
        index.build_index("imgs", wait=True)
        found = neighbours_of(index, "imgs", "clip", k, ef=256)
        expected = _brute_neighbours(ids, vectors, k)
        assert set(found) == set(ids)
        for pid in ids:
            assert len(found[pid]) == k
            assert pid not in {other for other, _ in found[pid]}
            assert [d for _, d in found[pid]] == pytest.approx(
                [d for _, d in expected[pid]], abs=1e-5
            )
        # Same neighbour sets except where float ties could swap the last place.
        agree = sum({o for o, _ in found[p]} == {o for o, _ in expected[p]} for p in ids)
        assert agree >= count - 2
        scores = score_collection(index, "imgs", "clip", k, ef=256)
        reference = anomaly_scores(ids, vectors, found, k)
        assert set(scores) == set(ids)
        for pid in ids:
            assert scores[pid].as_dict() == pytest.approx(reference[pid].as_dict(), abs=1e-5)
    finally:
        index.close()


# --- incremental: OodStats and score_new_points -----------------------------------------


def test_ood_stats_give_the_collections_ood() -> None:
    ids, vectors, outliers = _dataset()
    expected = anomaly_scores(ids, vectors, _brute_neighbours(ids, vectors, K), K)
    # Counted in three uneven chunks, unnormalised: the same sums as all at once.
    stats = OodStats.of(DIM, [vectors[:7] * 3.0, vectors[7:250], vectors[250:]])
    assert stats.count == len(ids)
    ood = stats.ood(vectors)
    assert ood == pytest.approx([expected[pid].ood for pid in ids], abs=1e-6)
    assert {ids[i] for i in np.argsort(-ood)[:3]} == outliers


def test_ood_stats_fed_one_point_at_a_time_match() -> None:
    # Single-point batches, as ingest gives them: the pending block is folded in on the way.
    _, vectors, _ = _dataset()
    whole = OodStats.of(DIM, [vectors])
    trickle = OodStats.of(DIM, [vectors[i : i + 1] for i in range(len(vectors))])
    assert len(vectors) > 256
    assert trickle.ood(vectors) == pytest.approx(whole.ood(vectors), abs=1e-9)


def test_ood_stats_without_spread_or_direction_give_zero() -> None:
    same = np.tile(_unit(np.ones((1, DIM))), (5, 1))
    assert OodStats.of(DIM, [same]).ood(same) == pytest.approx(np.zeros(5))
    opposite = np.vstack([same[:1], -same[:1]])
    assert OodStats.of(DIM, [opposite]).ood(opposite) == pytest.approx(np.zeros(2))
    assert OodStats(DIM).ood(same) == pytest.approx(np.zeros(5))
    with pytest.raises(InvalidInput):
        OodStats(DIM).add(same[0])
    with pytest.raises(InvalidInput):
        OodStats(DIM).add(np.zeros((2, DIM + 1)))


def test_new_points_scored_from_one_search_each(tmp_path: Path) -> None:
    ids, vectors, _ = _dataset()
    ids = [str(ULID()) for _ in ids]  # the engine wants ULIDs
    outlier_ids = set(ids[300:])
    # The batch: the three outliers and five cluster points, stored after the rest.
    new = [*range(300, 303), 0, 100, 101, 200, 299]
    old = [i for i in range(len(ids)) if i not in new]
    index = QdrantEdgeIndex(tmp_path, full_scan_points=10_000)
    try:
        index.create_collection("imgs", [VectorSpec("clip", DIM)], IndexSettings(), {})
        index.upsert("imgs", [Point(ids[i], {"clip": vectors[i]}) for i in old])
        index.upsert("imgs", [Point(ids[i], {"clip": vectors[i]}) for i in new])
        stats = OodStats.of(DIM, [vectors])
        found = score_new_points(
            index, "imgs", "clip", [ids[i] for i in new], vectors[new], K, stats=stats
        )
    finally:
        index.close()

    brute = _brute_neighbours(ids, vectors, K)
    exact = anomaly_scores(ids, vectors, brute, K)
    assert set(found.new) == {ids[i] for i in new}
    for pid, scores in found.new.items():
        assert scores.dnn == pytest.approx(exact[pid].dnn, abs=1e-5)
        assert scores.ood == pytest.approx(exact[pid].ood, abs=1e-5)
        # Neighbours' kdist are upper bounds, so density can only come out lower.
        assert scores.density <= exact[pid].density + 1e-5
    assert all(found.new[pid].density > 1.5 for pid in outlier_ids)
    assert all(found.new[ids[i]].density < 1.5 for i in new if ids[i] not in outlier_ids)

    new_ids = {ids[i] for i in new}
    reverse = found_reverse = 0
    for i in old:
        pid = ids[i]
        nearest = min(float(1.0 - vectors[i].astype(np.float64) @ vectors[j]) for j in new)
        if brute[pid][0][0] in new_ids:  # a new point is now its nearest neighbour
            reverse += 1
            if pid in found.nearest_new:
                found_reverse += 1
                assert found.nearest_new[pid] == pytest.approx(brute[pid][0][1], abs=1e-5)
        if pid in found.nearest_new:  # the distance to a new point that found it
            assert found.nearest_new[pid] >= nearest - 1e-5
            assert found.estimates[pid].dnn >= exact[pid].dnn - 1e-5
    # kNN is not symmetric: a point at the edge of its cluster can have a new point as its
    # nearest without being among that point's 2k nearest. Most are found.
    assert reverse >= 3 and found_reverse >= 0.75 * reverse
    assert set(found.estimates) == set(found.nearest_new)
    assert not new_ids & set(found.nearest_new)


def test_a_point_alone_has_no_scores(tmp_path: Path) -> None:
    index = QdrantEdgeIndex(tmp_path)
    try:
        index.create_collection("imgs", [VectorSpec("clip", 16)], IndexSettings(), {})
        pid = str(ULID())
        vector = _unit(np.ones((1, 16)))
        index.upsert("imgs", [Point(pid, {"clip": vector[0]})])
        found = score_new_points(index, "imgs", "clip", [pid], vector, K)
        assert found.new == {} and found.nearest_new == {}
        with pytest.raises(InvalidInput):
            score_new_points(index, "imgs", "clip", [pid], vector, 0)
        with pytest.raises(InvalidInput):
            score_new_points(index, "imgs", "clip", [pid, pid], vector, K)
    finally:
        index.close()
