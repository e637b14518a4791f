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

Incremental scoring, for points just added (`score_new_points`, `OodStats`):

- one search per new point, for its ``2k`` nearest others (the candidates). Its ``dnn`` and
  ``kdist`` are as exact as that search (its k nearest are among them). The ``kdist`` of each
  neighbour is estimated inside the candidate set (its k nearest among those ``2k + 1``
  points): an upper bound, exact whenever the collection holds no more than ``2k + 1``
  points. ``density`` divides by those estimates.
- ``ood`` is exact against the collection as it is: `OodStats` keeps the count, the sum of the
  unit vectors and the sum of their outer products, which give the mean direction and the
  mean and variance of ``u`` without reading the collection again.
- the scores of points already there are not recomputed: `NewPointsUpdate.nearest_new` gives
  the candidates' distance to the nearest new point, their new ``dnn`` where it is smaller. A
  point whose nearest neighbour is now a new point without being among that point's ``2k``
  nearest (kNN is not symmetric: an isolated point, the edge of a cluster) is not found, and
  keeps a ``dnn`` that is too large until the next full pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from numpy.typing import NDArray

from lookalike.core.errors import InvalidInput, Unsupported
from lookalike.vectors.base import VectorIndex

DENSITY_EPS = 1e-6
# Below this norm the mean of the vectors has no usable direction.
_MEAN_NORM_EPS = 1e-9
# A variance of `u` below this is rounding left over from the running sums, not spread.
_VAR_EPS = 1e-12

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
    return scan_collection(index, collection, vector_name, k, ef=ef, exact=exact).neighbours


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
    return scan_collection(index, collection, vector_name, k, ef=ef, exact=exact).scores(k)


@dataclass(frozen=True)
class CollectionScan:
    """One pass over a collection: every point's id, vector (row i of `vectors`) and kNN."""

    ids: list[str]
    vectors: NDArray[np.float32]
    neighbours: Neighbours

    def scores(self, k: int) -> dict[str, AnomalyScores]:
        """`anomaly_scores` of every point; empty below two points (no neighbours to score by)."""
        if len(self.ids) < 2:
            return {}
        return anomaly_scores(self.ids, self.vectors, self.neighbours, k)


def scan_collection(
    index: VectorIndex,
    collection: str,
    vector_name: str,
    k: int,
    *,
    ef: int | None = None,
    exact: bool = False,
) -> CollectionScan:
    """What `score_collection` reads, kept: the caller can also build `OodStats` from it."""
    ids, vectors, neighbours = _scan(index, collection, vector_name, k, ef=ef, exact=exact)
    return CollectionScan(ids, vectors, neighbours)


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


def _unit_rows(matrix: NDArray[np.floating]) -> NDArray[np.float64]:
    rows = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit: NDArray[np.float64] = rows / np.where(norms > 0, norms, 1.0)
    return unit


def _ood(matrix: NDArray[np.float64]) -> NDArray[np.float64]:
    unit = _unit_rows(matrix)
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


# --- incremental ----------------------------------------------------------------------


_FOLD_ROWS = 256


@dataclass
class OodStats:
    """Running sums over a collection's unit vectors: enough for its exact ``ood`` of any vector.

    ``dim x dim`` floats (8 MB at 1024 dimensions), whatever the size of the collection. New
    vectors wait in a small pending block and are folded into the second moments 256 at a
    time: adding one or two vectors to a 1280 x 1280 matrix cost ~15 ms per ingest batch.
    """

    dim: int
    count: int = 0
    total: NDArray[np.float64] = field(init=False)
    outer: NDArray[np.float64] = field(init=False)
    _pending: list[NDArray[np.float64]] = field(init=False, default_factory=list)
    # (mean direction, mean cos to it, std of u) or None without either; None until asked.
    _summary: tuple[NDArray[np.float64], float, float] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.total = np.zeros(self.dim)
        self.outer = np.zeros((self.dim, self.dim))

    @classmethod
    def of(cls, dim: int, chunks: Iterable[NDArray[np.floating]]) -> OodStats:
        """Stats of every vector in `chunks` (arrays of shape (n, dim), read one at a time)."""
        stats = cls(dim)
        for chunk in chunks:
            stats.add(chunk)
        return stats

    def add(self, vectors: NDArray[np.floating]) -> None:
        """Count in more vectors (shape (n, dim)); they are normalised first."""
        shape = np.shape(vectors)
        if len(shape) != 2 or shape[1] != self.dim:
            raise InvalidInput(f"vectors must have shape (n, {self.dim}), got {shape}")
        unit = _unit_rows(vectors)
        self.count += len(unit)
        self.total += unit.sum(axis=0)
        self._pending.append(unit)
        if sum(len(p) for p in self._pending) >= _FOLD_ROWS:
            block = np.concatenate(self._pending)
            self.outer += block.T @ block
            self._pending = []
        self._summary = None

    def ood(self, vectors: NDArray[np.floating]) -> NDArray[np.float64]:
        """The ``ood`` z-scores of `vectors` against the vectors counted in (see the module doc).

        Equal to `anomaly_scores`' ``ood`` for a vector that was counted in; 0 when the
        collection has no mean direction or no spread.
        """
        unit = _unit_rows(vectors)
        summary = self._summarise()
        if summary is None:
            return np.zeros(len(unit))
        direction, mean_cos, std = summary
        u = 1.0 - _rowdot(unit, direction)
        z: NDArray[np.float64] = (u - (1.0 - mean_cos)) / std
        return z

    def _summarise(self) -> tuple[NDArray[np.float64], float, float] | None:
        if self._summary is None and self.count > 0:
            mean = self.total / self.count
            mean_norm = float(np.linalg.norm(mean))
            if mean_norm >= _MEAN_NORM_EPS:
                direction = mean / mean_norm
                # u = 1 - cos(x, c), so mean(u) = 1 - mean(x.c) with mean(x.c) = |mean|, and
                # var(u) = var(x.c) = E[(x.c)^2] - mean(x.c)^2 = c.outer.c / count - |mean|^2.
                second = float(direction @ self.outer @ direction)
                second += sum(float(np.sum(_rowdot(p, direction) ** 2)) for p in self._pending)
                var = second / self.count - mean_norm**2
                if var > _VAR_EPS:
                    self._summary = (direction, mean_norm, math.sqrt(var))
        return self._summary


def _rowdot(rows: NDArray[np.float64], other: NDArray[np.float64]) -> NDArray[np.float64]:
    """`rows @ other` for the small products of incremental scoring, without BLAS: its threads
    cost milliseconds per tiny call when ONNX Runtime keeps every core busy."""
    subscripts = "ij,kj->ik" if other.ndim == 2 else "ij,j->i"
    out: NDArray[np.float64] = np.einsum(subscripts, rows, other)
    return out


@dataclass(frozen=True)
class PointScores:
    """The scores `score_new_points` gives one point; ``ood`` is None when it had no `OodStats`."""

    dnn: float
    density: float
    ood: float | None


@dataclass(frozen=True)
class NewPointsUpdate:
    """What `score_new_points` found.

    `new`: the scores of each new point (a point alone in its collection has none).
    `estimates`: the same scores for the other points met among the candidates, estimated
    inside the candidate set (upper bounds: for points that have no score of their own yet).
    `nearest_new`: each of those other points' distance to the nearest new point; where that
    is below its stored ``dnn``, it is its new ``dnn``.
    """

    new: dict[str, PointScores]
    estimates: dict[str, PointScores]
    nearest_new: dict[str, float]


def score_new_points(
    index: VectorIndex,
    collection: str,
    vector_name: str,
    ids: Sequence[str],
    vectors: NDArray[np.floating],
    k: int,
    *,
    stats: OodStats | None = None,
    ef: int | None = None,
) -> NewPointsUpdate:
    """Scores of points just stored in `collection` (row i of `vectors` is ``ids[i]``), from
    one search per point for its ``2k`` nearest others and one `retrieve` of their vectors;
    see the module doc. ``ood`` comes from `stats`, which should count the new points in."""
    if k < 1:
        raise InvalidInput("k must be >= 1")
    shape = np.shape(vectors)
    if len(shape) != 2 or shape[0] != len(ids):
        raise InvalidInput(f"vectors must have shape ({len(ids)}, dim), got {shape}")
    unit = _unit_rows(vectors)
    new_rows = {point_id: i for i, point_id in enumerate(ids)}
    limit = 2 * k + 1  # the point itself and 2k others
    candidates: list[list[str]] = []
    for point_id, query in zip(ids, unit, strict=True):
        hits = index.search(
            collection,
            vector_name,
            query.astype(np.float32),
            limit=limit,
            ef=None if ef is None else max(ef, limit),
            with_payload=False,
        )
        candidates.append([hit.id for hit in hits if hit.id != point_id][: limit - 1])
    wanted = sorted({o for found in candidates for o in found if o not in new_rows})
    stored = {
        point.id: point.vectors[vector_name]
        for point in index.retrieve(collection, wanted, with_vectors=True)
        if vector_name in point.vectors
    }

    new: dict[str, PointScores] = {}
    estimates: dict[str, PointScores] = {}
    tightest: dict[str, float] = {}  # the smallest kdist estimate seen for each other point
    nearest_new: dict[str, float] = {}
    for point_id, found in zip(ids, candidates, strict=True):
        members = [point_id, *(o for o in found if o in new_rows or o in stored)]
        if len(members) < 2:
            continue
        matrix = _unit_rows(
            np.stack([unit[new_rows[m]] if m in new_rows else stored[m] for m in members])
        )
        dist, kdist, density = _local_scores(matrix, k)
        dnn = dist.min(axis=1)
        dist_from_new = dist[0]
        ood: list[float | None] = (
            [float(z) for z in stats.ood(matrix)] if stats is not None else [None] * len(members)
        )
        new[point_id] = PointScores(float(dnn[0]), float(density[0]), ood[0])
        for j, other in enumerate(members[1:], start=1):
            if other in new_rows:
                continue
            distance = float(dist_from_new[j])
            nearest_new[other] = min(nearest_new.get(other, 2.0), max(distance, 0.0))
            if kdist[j] < tightest.get(other, np.inf):
                tightest[other] = float(kdist[j])
                estimates[other] = PointScores(float(dnn[j]), float(density[j]), ood[j])
    return NewPointsUpdate(new, estimates, nearest_new)


def _local_scores(
    unit: NDArray[np.float64], k: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Distances (inf on the diagonal), kdist and density of every row of `unit`, with the
    other rows as the only points."""
    dist = np.clip(1.0 - _rowdot(unit, unit), 0.0, 2.0)
    np.fill_diagonal(dist, np.inf)
    kk = min(k, len(unit) - 1)
    order = np.argsort(dist, axis=1, kind="stable")[:, :kk]
    nearest = np.take_along_axis(dist, order, axis=1)
    kdist = nearest.mean(axis=1)
    density = (kdist + DENSITY_EPS) / (kdist[order].mean(axis=1) + DENSITY_EPS)
    return dist, kdist, density


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
