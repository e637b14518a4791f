"""The dedup sweep: candidate pairs from indexes, then agglomerative clustering per component.

1. *Candidates*, never all pairs: pHash neighbours through an in-memory multi-index hash (four
   16-bit chunks; two hashes within d bits share a chunk within d // 4 bits), and each point's
   k nearest neighbours by embedding through the vector engine. Memory is the N x dim vectors
   plus at most N x (k + pHash candidates) pairs: linear in N, no N x N matrix.
2. *Constraints* from people: a "different" pair is cut, a "same" pair is joined (distance 0).
3. *Components* of the candidate graph (union-find). Only images in one component can end up
   in one cluster, so each component is clustered on its own, with true pairwise distances from
   the vectors (a component is small: a handful of copies). A component that is still too
   big for a dense matrix is split by raising its edge threshold until its parts fit.
4. *Clustering*: `near_exact` groups are the images connected by near-exact pairs (the
   geometric check of `dedup.evidence` for the candidate pairs that could be copies, the
   pHash-and-cosine rule where it has nothing to go on; `dedup.tiers`); `similar` clusters by
   average linkage at the similar threshold. A cluster that still holds a "different" pair
   is re-clustered with complete linkage, which cannot hold one.
5. *Nesting*: each group is one cluster. A similar cluster with exactly a near-exact cluster's
   members is not made; a near-exact cluster inside a larger similar one names it as its parent
   (copies of one photo within a group of shots of one scene).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from lookalike.dedup.tiers import DedupThresholds, Tier, needs_match, same_scene, tier_of
from lookalike.imaging.hashes import PHASH_CHUNK_BITS, PHASH_CHUNKS
from lookalike.imaging.photo_match import PhotoMatch

# Beyond this many images a component's dense distance matrix (m^2 / 2 floats) gets costly.
MAX_COMPONENT = 2000
_FAR = 2.0  # the largest cosine distance: "never in one cluster"
_MATCH_BATCH = 16  # candidate pairs per geometric-check call
_CHECKS_PER_GROUP_PAIR = 3

# Given a row index, the (other row index, cosine) of its nearest neighbours by embedding.
NeighbourSearch = Callable[[int], Iterable[tuple[int, float]]]
# Given candidate row pairs, the geometric match of each pair that could be measured.
PairMatches = Callable[[Sequence[tuple[int, int]]], Mapping[tuple[int, int], PhotoMatch]]


@dataclass(frozen=True)
class Cluster:
    tier: Tier
    members: list[int]  # row indices, sorted
    # A near-exact group inside a larger similar group: that group's index in the sweep's
    # list. Each group of images is one cluster; a copy group nests in its scene group.
    parent: int | None = None


@dataclass
class SweepStats:
    points: int = 0
    phash_pairs: int = 0
    knn_pairs: int = 0
    edges: int = 0
    components: int = 0
    largest_component: int = 0
    split_components: int = 0
    photo_matches: int = 0  # candidate pairs with a geometric match
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "points": self.points,
            "phash_pairs": self.phash_pairs,
            "knn_pairs": self.knn_pairs,
            "edges": self.edges,
            "components": self.components,
            "largest_component": self.largest_component,
            "split_components": self.split_components,
            "photo_matches": self.photo_matches,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def phash_candidate_pairs(phashes: Sequence[int | None], max_distance: int) -> set[tuple[int, int]]:
    """Pairs (i < j) whose pHashes are within `max_distance` bits, by multi-index hashing."""
    radius = max_distance // PHASH_CHUNKS
    masks = _flip_masks(radius)
    tables: list[dict[int, list[int]]] = [defaultdict(list) for _ in range(PHASH_CHUNKS)]
    chunks_of: list[list[int] | None] = []
    for row, value in enumerate(phashes):
        if value is None:
            chunks_of.append(None)
            continue
        chunks = [
            (value >> (PHASH_CHUNK_BITS * (PHASH_CHUNKS - 1 - c))) & 0xFFFF
            for c in range(PHASH_CHUNKS)
        ]
        chunks_of.append(chunks)
        for c, chunk in enumerate(chunks):
            tables[c][chunk].append(row)
    pairs: set[tuple[int, int]] = set()
    for row, row_chunks in enumerate(chunks_of):
        if row_chunks is None:
            continue
        value = phashes[row]
        assert value is not None
        for c, chunk in enumerate(row_chunks):
            table = tables[c]
            for mask in masks:
                for other in table.get(chunk ^ mask, ()):
                    if other <= row:
                        continue
                    other_value = phashes[other]
                    assert other_value is not None
                    if (value ^ other_value).bit_count() <= max_distance:
                        pairs.add((row, other))
    return pairs


def _flip_masks(radius: int) -> list[int]:
    masks = []
    for r in range(radius + 1):
        for bits in combinations(range(PHASH_CHUNK_BITS), r):
            mask = 0
            for b in bits:
                mask |= 1 << b
            masks.append(mask)
    return masks


def sweep(
    vectors: NDArray[np.float32],
    phashes: Sequence[int | None],
    neighbours: NeighbourSearch,
    thresholds: DedupThresholds,
    *,
    same: Iterable[tuple[int, int]] = (),
    different: Iterable[tuple[int, int]] = (),
    matches: PairMatches | None = None,
) -> tuple[list[Cluster], SweepStats]:
    """Duplicate clusters among the rows of `vectors` (unit-norm), with their pHashes.

    `same` / `different` are people's decisions as row pairs; they always win over the scores.
    `matches` measures the geometric evidence of candidate pairs (`dedup.evidence`); without
    it the pHash-and-cosine rule alone decides near_exact.
    """
    n = len(vectors)
    stats = SweepStats(points=n)
    same_pairs = {_ordered(a, b) for a, b in same if a != b}
    different_pairs = {_ordered(a, b) for a, b in different if a != b} - same_pairs

    started = time.perf_counter()
    candidates: dict[tuple[int, int], float] = {}
    for a, b in phash_candidate_pairs(phashes, thresholds.phash_gate):
        candidates[(a, b)] = float(vectors[a] @ vectors[b])
        stats.phash_pairs += 1
    stats.seconds["phash_candidates"] = time.perf_counter() - started

    started = time.perf_counter()
    for row in range(n):
        for other, cosine in neighbours(row):
            if other == row or cosine < thresholds.similar_cosine:
                continue
            candidates.setdefault(_ordered(row, other), cosine)
            stats.knn_pairs += 1
    stats.seconds["vector_neighbours"] = time.perf_counter() - started

    started = time.perf_counter()
    near, scene = _near_pairs(candidates, phashes, thresholds, matches, stats)
    near = (near | same_pairs) - different_pairs
    scene -= different_pairs
    stats.seconds["photo_match"] = time.perf_counter() - started

    started = time.perf_counter()
    edges = {p: c for p, c in candidates.items() if c >= thresholds.similar_cosine}
    for pair in different_pairs:
        edges.pop(pair, None)
    for pair in near:
        edges[pair] = max(edges.get(pair, 0.0), thresholds.similar_cosine)
    for pair in same_pairs:
        edges[pair] = 1.0
    stats.edges = len(edges)

    clusters: list[Cluster] = []
    near_of, scene_of = _by_row(near), _by_row(scene)
    components = _components(n, edges)
    stats.components = len(components)
    stats.largest_component = max((len(c) for c in components), default=0)
    for component in components:
        for part in _fit(component, edges, thresholds, stats):
            part_near = {p for row in part for p in near_of.get(row, ())}
            part_scene = {p for row in part for p in scene_of.get(row, ())}
            clusters.extend(
                _cluster_component(
                    part, vectors, part_near, part_scene, thresholds, different_pairs
                )
            )
    stats.seconds["clustering"] = time.perf_counter() - started
    clusters.sort(key=lambda c: (c.tier != "near_exact", -len(c.members), c.members[0]))
    return _nested(clusters), stats


def _near_pairs(
    candidates: dict[tuple[int, int], float],
    phashes: Sequence[int | None],
    thresholds: DedupThresholds,
    matches: PairMatches | None,
    stats: SweepStats,
) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """The candidate pairs that are one photograph (by the geometric check where it was
    measured, by the pHash-and-cosine rule where it could not be), and those the geometry
    shows to be two shots of one scene.

    Groups are connected components, so a pair whose images are already joined through
    other pairs needs no check of its own: pairs go most similar first, in small batches, and
    those already joined are taken as they are. Twenty copies of one photo then cost about
    twenty checks, not the 190 of all their pairs.
    """

    def hamming(a: int, b: int) -> int | None:
        ha, hb = phashes[a], phashes[b]
        return None if ha is None or hb is None else (ha ^ hb).bit_count()

    joined = _UnionFind()
    near: set[tuple[int, int]] = set()
    scene: set[tuple[int, int]] = set()
    checkable: list[tuple[int, int]] = []
    for pair, cosine in sorted(candidates.items(), key=lambda item: -item[1]):
        distance = hamming(*pair)
        if matches is not None and needs_match(cosine, distance, thresholds):
            checkable.append(pair)
        elif tier_of(cosine, distance, thresholds) in ("exact", "near_exact"):
            near.add(pair)
            joined.union(*pair)
    # Groups compared and found apart, and how often: a few checks per pair of groups, through
    # their most similar members, settle it (a copy of a photo is found through the original
    # or most of its copies; a crop may miss the copies framed otherwise, not all of them).
    apart: Counter[tuple[int, int]] = Counter()
    for start in range(0, len(checkable), _MATCH_BATCH):
        batch = []
        for pair in checkable[start : start + _MATCH_BATCH]:
            roots = _ordered(joined.root(pair[0]), joined.root(pair[1]))
            if roots[0] == roots[1]:
                near.add(pair)
            elif apart[roots] < _CHECKS_PER_GROUP_PAIR:
                batch.append(pair)
        found = matches(batch) if matches is not None and batch else {}
        stats.photo_matches += len(found)
        for pair in batch:
            tier = tier_of(candidates[pair], hamming(*pair), thresholds, found.get(pair))
            if tier in ("exact", "near_exact"):
                near.add(pair)
                joined.union(*pair)
            else:
                apart[_ordered(joined.root(pair[0]), joined.root(pair[1]))] += 1
                if same_scene(found.get(pair), thresholds):
                    scene.add(pair)
    return near, scene


def _by_row(pairs: set[tuple[int, int]]) -> dict[int, list[tuple[int, int]]]:
    """Each row's pairs, so that a component finds its own without a pass over all pairs."""
    out: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for pair in pairs:
        out[pair[0]].append(pair)
        out[pair[1]].append(pair)
    return out


class _UnionFind:
    def __init__(self) -> None:
        self._parent: dict[int, int] = {}

    def root(self, x: int) -> int:
        parent = self._parent
        while parent.get(x, x) != x:
            parent[x] = parent.get(parent[x], parent[x])
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.root(a), self.root(b)
        if ra != rb:
            self._parent[max(ra, rb)] = min(ra, rb)


def _nested(clusters: list[Cluster]) -> list[Cluster]:
    """Each near-exact cluster with the similar cluster that holds all of its members as its
    parent (a similar cluster with exactly its members was never made)."""
    similar = [(index, set(c.members)) for index, c in enumerate(clusters) if c.tier == "similar"]
    out = []
    for cluster in clusters:
        parent = None
        if cluster.tier == "near_exact":
            members = set(cluster.members)
            parent = next((i for i, group in similar if members < group), None)
        out.append(Cluster(cluster.tier, cluster.members, parent))
    return out


def _ordered(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


def _components(n: int, edges: Collection[tuple[int, int]]) -> list[list[int]]:
    """Connected components with two or more members (union-find)."""
    parent = list(range(n))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = defaultdict(list)
    touched = {x for pair in edges for x in pair}
    for x in sorted(touched):
        groups[root(x)].append(x)
    return [g for g in groups.values() if len(g) > 1]


def _fit(
    component: list[int],
    edges: dict[tuple[int, int], float],
    thresholds: DedupThresholds,
    stats: SweepStats,
) -> list[list[int]]:
    """`component`, or parts of it small enough for a dense matrix (stricter edges inside)."""
    if len(component) <= MAX_COMPONENT:
        return [component]
    stats.split_components += 1
    members = set(component)
    inner = {p: c for p, c in edges.items() if p[0] in members}
    index = {x: i for i, x in enumerate(component)}
    floor = thresholds.similar_cosine
    while True:
        floor = min(1.0, floor + 0.01)
        kept = {p: c for p, c in inner.items() if c >= floor}
        local = _components(len(component), [(index[a], index[b]) for a, b in kept])
        parts = [[component[i] for i in part] for part in local]
        if all(len(p) <= MAX_COMPONENT for p in parts) or floor >= 1.0:
            out: list[list[int]] = []
            for part in parts:
                out.extend(_chunks(part, MAX_COMPONENT))
            return out


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _cluster_component(
    rows: list[int],
    vectors: NDArray[np.float32],
    near: set[tuple[int, int]],
    scene: set[tuple[int, int]],
    thresholds: DedupThresholds,
    different: set[tuple[int, int]],
) -> list[Cluster]:
    rows = sorted(rows)
    block = vectors[rows]
    distance = np.clip(1.0 - block @ block.T, 0.0, _FAR).astype(np.float64)
    position = {row: i for i, row in enumerate(rows)}
    local_near = {(position[a], position[b]) for a, b in near if a in position and b in position}
    local_different = {
        (position[a], position[b]) for a, b in different if a in position and b in position
    }
    # Copies, and shots the geometry ties to one scene, join before anything that only
    # looks alike: they end in one similar cluster whatever else joins it.
    for a, b in scene:
        if a in position and b in position:
            i, j = position[a], position[b]
            distance[i, j] = distance[j, i] = 0.0
    for i, j in local_near:
        distance[i, j] = distance[j, i] = 0.0
    for i, j in local_different:
        distance[i, j] = distance[j, i] = _FAR
    np.fill_diagonal(distance, 0.0)

    out: list[Cluster] = []
    near_sets = set()
    for group in _near_groups(len(rows), local_near, local_different):
        members = sorted(rows[i] for i in group)
        out.append(Cluster("near_exact", members))
        near_sets.add(tuple(members))

    for group in _linkage_groups(distance, 1.0 - thresholds.similar_cosine, "average"):
        for part in _honour_different(group, distance, thresholds, local_different):
            members = sorted(rows[i] for i in part)
            if tuple(members) not in near_sets:
                out.append(Cluster("similar", members))
    return out


def _near_groups(
    m: int, near: set[tuple[int, int]], different: set[tuple[int, int]]
) -> list[list[int]]:
    """Copies of one photograph: connected by near-exact pairs. Chaining is safe here, as each
    link is evidence of one photograph (a crop and a bordered copy of one original are copies
    of each other through it). A group holding a pair people called different is cut into
    parts in which every pair is near-exact."""
    groups = [[i for i in group] for group in _components(m, near)]
    out: list[list[int]] = []
    for group in groups:
        members = set(group)
        if not any(a in members and b in members for a, b in different):
            out.append(group)
            continue
        inside = np.full((len(group), len(group)), _FAR)
        index = {x: i for i, x in enumerate(group)}
        for a, b in near:
            if a in members and b in members:
                inside[index[a], index[b]] = inside[index[b], index[a]] = 0.0
        np.fill_diagonal(inside, 0.0)
        out.extend([group[i] for i in part] for part in _linkage_groups(inside, 0.0, "complete"))
    return out


def _linkage_groups(
    distance: NDArray[np.float64], threshold: float, method: str
) -> list[list[int]]:
    """Groups of two or more indices cut from the `method` linkage tree at `threshold`."""
    m = len(distance)
    if m < 2:
        return []
    tree = linkage(squareform(distance, checks=False), method=method)
    # A hair above the threshold: a pair exactly at it counts as inside.
    labels = fcluster(tree, t=threshold + 1e-9, criterion="distance")
    groups: dict[int, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        groups[int(label)].append(i)
    return [g for g in groups.values() if len(g) > 1]


def _honour_different(
    group: list[int],
    distance: NDArray[np.float64],
    thresholds: DedupThresholds,
    different: set[tuple[int, int]],
) -> list[list[int]]:
    members = set(group)
    if not any(a in members and b in members for a, b in different):
        return [group]
    sub = distance[np.ix_(group, group)]
    return [
        [group[i] for i in part]
        for part in _linkage_groups(sub, 1.0 - thresholds.similar_cosine, "complete")
    ]
