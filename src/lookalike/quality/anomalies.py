"""Outlier scores for the points of a collection, from their embeddings and k nearest neighbours.

Building block of the anomalies review queue: every point gets three scores, each larger for a
more unusual image. Vectors are taken as unit-norm (they are re-normalised defensively) and all
distances are cosine distances, ``d(a, b) = 1 - cos(a, b)`` in ``[0, 2]``.

``dnn``
    Distance to the nearest neighbour (other than the point itself). An exact duplicate has
    ``dnn == 0``; an isolated image has a large ``dnn``.

``density`` (LOF-style)
    ``kdist(p)`` is the mean distance from ``p`` to its k nearest neighbours ``N_k(p)``;
    ``density(p) = kdist(p) / mean(kdist(o) for o in N_k(p))``. About 1 inside a cluster,
    ``> 1`` when ``p`` lies in a sparser region than its neighbours (a point on its own near a
    tight cluster). This is the simplified local outlier factor (mean distances rather than
    reachability distances). A small epsilon (``DENSITY_EPS``) is added to both sides so a
    clump of exact duplicates gives 1 rather than 0/0. Neighbours that are not among the scored
    ids are left out of the denominator; with none left, ``density`` is 1.

``ood``
    Out-of-distribution score: ``c`` is the collection's mean direction (the normalised mean of
    the vectors), ``u(p) = 1 - cos(p, c)``, and ``ood(p)`` is the z-score of ``u(p)`` over the
    collection (``(u - mean(u)) / std(u)``, population std). 0 for every point when ``std(u)``
    is 0 or the mean vector vanishes (no mean direction).

`neighbours_of` finds the k nearest neighbours of every point through the engine's own
`VectorIndex.search` (one query per point, paging through `iter_points`), so no N x N matrix is
ever formed; `anomaly_scores` is pure numpy with memory linear in N (N x dim vectors plus N x k
neighbour distances). `score_collection` does both from one pass over the collection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import NDArray

from lookalike.errors import InvalidInput, Unsupported
from lookalike.vectors.base import VectorIndex

DENSITY_EPS = 1e-6
# Below this norm the mean of the vectors has no usable direction.
_MEAN_NORM_EPS = 1e-9

Neighbours = dict[str, list[tuple[str, float]]]


@dataclass(frozen=True)
class AnomalyScores:
    """The three outlier scores of one point (larger = more unusual); see the module doc."""

    dnn: float
    density: float
    ood: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def neighbours_of(
    index: VectorIndex,
    collection: str,
    vector_name: str,
    k: int,
    *,
    ef: int | None = None,
    exact: bool = False,
) -> Neighbours:
    """The k nearest neighbours of every point of `collection` by `vector_name`.

    Maps each point id to up to `k` ``(neighbour id, cosine distance)`` pairs, nearest first
    (ties by id), the point itself left out. One `search` per point; `ef` and `exact` are
    passed through to it.
    """
    _, _, neighbours = _scan(index, collection, vector_name, k, ef=ef, exact=exact)
    return neighbours


def score_collection(
    index: VectorIndex,
    collection: str,
    vector_name: str,
    k: int,
    *,
    ef: int | None = None,
    exact: bool = False,
) -> dict[str, AnomalyScores]:
    """`anomaly_scores` of every point of `collection`, reading it once."""
    ids, vectors, neighbours = _scan(index, collection, vector_name, k, ef=ef, exact=exact)
    if not ids:
        return {}
    return anomaly_scores(ids, vectors, neighbours, k)


def anomaly_scores(
    ids: Sequence[str],
    vectors: NDArray[np.floating],
    neighbours: Mapping[str, Sequence[tuple[str, float]]],
    k: int,
) -> dict[str, AnomalyScores]:
    """Scores for `ids` (row i of `vectors`, shape (N, dim), is the vector of ``ids[i]``).

    `neighbours` is what `neighbours_of` returns (only the first `k` of each list are used);
    every id needs at least one neighbour, so the collection must hold two points or more.
    """
    if k < 1:
        raise InvalidInput("k must be >= 1")
    matrix = np.asarray(vectors, dtype=np.float64)
    n = len(ids)
    if matrix.ndim != 2 or matrix.shape[0] != n:
        raise InvalidInput(f"vectors must have shape ({n}, dim), got {matrix.shape}")
    if n == 0:
        return {}
    position = {point_id: i for i, point_id in enumerate(ids)}
    if len(position) != n:
        raise InvalidInput("ids must be unique")

    # N x k neighbour distances and positions (-1 = not a scored id / missing), NaN-padded.
    dist = np.full((n, k), np.nan)
    nbr = np.full((n, k), -1, dtype=np.int64)
    for i, point_id in enumerate(ids):
        found = neighbours.get(point_id, ())[:k]
        if not found:
            raise InvalidInput(f"point {point_id!r} has no neighbours (need two points or more)")
        for j, (other, distance) in enumerate(found):
            dist[i, j] = max(float(distance), 0.0)
            nbr[i, j] = position.get(other, -1)

    dnn = dist[:, 0]
    kdist = np.nanmean(dist, axis=1)
    known = nbr >= 0
    nbr_kdist = np.where(known, kdist[np.where(known, nbr, 0)], 0.0)
    counts = known.sum(axis=1)
    nbr_mean = nbr_kdist.sum(axis=1) / np.maximum(counts, 1)
    density = np.where(counts > 0, (kdist + DENSITY_EPS) / (nbr_mean + DENSITY_EPS), 1.0)

    ood = _ood(matrix)
    return {
        point_id: AnomalyScores(dnn=float(dnn[i]), density=float(density[i]), ood=float(ood[i]))
        for i, point_id in enumerate(ids)
    }


def _ood(matrix: NDArray[np.float64]) -> NDArray[np.float64]:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit = matrix / np.where(norms > 0, norms, 1.0)
    mean = unit.mean(axis=0)
    mean_norm = float(np.linalg.norm(mean))
    if mean_norm < _MEAN_NORM_EPS:
        return np.zeros(len(matrix))
    u = 1.0 - unit @ (mean / mean_norm)
    std = float(u.std())
    if std <= 0.0:
        return np.zeros(len(matrix))
    z: NDArray[np.float64] = (u - u.mean()) / std
    return z


def _scan(
    index: VectorIndex,
    collection: str,
    vector_name: str,
    k: int,
    *,
    ef: int | None,
    exact: bool,
) -> tuple[list[str], NDArray[np.float32], Neighbours]:
    """One pass: the ids and vectors of every point holding `vector_name`, and their kNN."""
    if k < 1:
        raise InvalidInput("k must be >= 1")
    spec = next((s for s in index.vector_specs(collection) if s.name == vector_name), None)
    if spec is None:
        raise InvalidInput(f"collection {collection!r} has no vector {vector_name!r}")
    if spec.multivector or spec.distance == "euclid":
        raise Unsupported(
            f"anomaly scores need a single cosine (or dot) vector; {vector_name!r} is "
            f"{'a multivector' if spec.multivector else 'euclid'}"
        )
    ids: list[str] = []
    rows: list[NDArray[np.float32]] = []
    neighbours: Neighbours = {}
    for point in index.iter_points(collection, with_vectors=True):
        vector = point.vectors.get(vector_name)
        if vector is None:
            continue
        query = np.asarray(vector, dtype=np.float32)
        hits = index.search(
            collection,
            vector_name,
            query,
            limit=k + 1,
            ef=ef,
            exact=exact,
            with_payload=False,
        )
        found = sorted(
            ((hit.id, min(max(1.0 - hit.score, 0.0), 2.0)) for hit in hits if hit.id != point.id),
            key=lambda pair: (pair[1], pair[0]),
        )
        ids.append(point.id)
        rows.append(query)
        neighbours[point.id] = found[:k]
    vectors = np.stack(rows) if rows else np.zeros((0, spec.dim), dtype=np.float32)
    return ids, vectors, neighbours
