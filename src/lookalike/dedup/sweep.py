"""Dedup sweeps: cluster a whole collection (or given images) with `dedup.clusters.sweep` and
store the clusters with a suggested keeper, in a request or as a `dedup_sweep` job. Every
sweep honours the pair decisions people made (`dedup.review`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from lookalike.catalog import Collection, Image, new_id
from lookalike.catalog.models import DuplicateCluster, DuplicateClusterMember
from lookalike.core.errors import ImageNotFound, InvalidInput, NotFound
from lookalike.dedup.clusters import Cluster, SweepStats, sweep
from lookalike.dedup.evidence import PhotoEvidence, pair_of
from lookalike.dedup.review import latest_verdicts, load_clusters
from lookalike.dedup.tiers import DedupThresholds, Tier, thresholds_of
from lookalike.dedup.verdicts import copy_groups
from lookalike.imaging import phash_int
from lookalike.imaging.photo_match import PhotoMatch
from lookalike.jobs.runner import JobContext, JobFunction
from lookalike.records.service import Services

log = logging.getLogger(__name__)

SWEEP_JOB = "dedup_sweep"
MAX_SUBSET = 5000  # images in one "cluster these" request
_CROWD = 4  # neighbours fetched per neighbour wanted, to see past copies of one photo


@dataclass
class SweepResult:
    collection_id: str
    sweep_id: str
    clusters: list[DuplicateCluster]
    stats: dict[str, Any]
    thresholds: DedupThresholds


class DedupServices(Services, Protocol):
    """What a sweep needs besides the stores: the geometric evidence, shared with the verdict
    stage so that pairs measured at ingest are not measured again."""

    evidence: PhotoEvidence


def run_sweep(
    rt: DedupServices,
    collection: Collection,
    *,
    image_ids: Sequence[str] | None = None,
    thresholds: Mapping[str, Any] | None = None,
    tiers: Sequence[Tier] = ("near_exact", "similar"),
    sweep_id: str | None = None,
) -> SweepResult:
    """Cluster the collection (or just `image_ids`) and store the clusters found.

    A whole-collection sweep replaces the open clusters of earlier sweeps; a sweep over some
    images replaces the open clusters that hold any of them. Decided clusters stay.
    """
    limits = thresholds_of(collection, thresholds)
    unknown = set(tiers) - {"exact", "near_exact", "similar"}
    if unknown:
        raise InvalidInput(f"unknown tier(s): {', '.join(sorted(unknown))}")
    ids, vectors, phashes = _load_points(rt, collection, image_ids)
    row_of = {image_id: row for row, image_id in enumerate(ids)}
    k = rt.settings.dedup_neighbours
    # Copies of one photo, as the verdicts at ingest grouped them: a neighbour list covers
    # k groups, so twenty copies of one photo do not crowd out another shot of the scene.
    group_of = copy_groups(rt.catalog, ids)

    def distinct(ranked: Iterable[tuple[int, float]]) -> Iterator[tuple[int, float]]:
        seen: set[str] = set()
        for other, score in ranked:
            group = group_of.get(ids[other], ids[other])
            if group not in seen:
                if len(seen) > k:
                    return
                seen.add(group)
            yield other, score

    def engine_neighbours(row: int) -> Iterator[tuple[int, float]]:
        hits = rt.vectors.search(
            collection.id,
            collection.vector_name,
            vectors[row],
            limit=_CROWD * (k + 1),
            score_threshold=limits.similar_cosine,
            with_payload=False,
        )
        yield from distinct((row_of[h.id], h.score) for h in hits if h.id in row_of)

    def subset_neighbours(row: int) -> Iterator[tuple[int, float]]:
        scores = vectors @ vectors[row]
        ranked = np.argsort(-scores)[: _CROWD * (k + 1)]
        yield from distinct((int(other), float(scores[other])) for other in ranked)

    def pair_matches(pairs: Sequence[tuple[int, int]]) -> dict[tuple[int, int], PhotoMatch]:
        found = rt.evidence.matches(collection.id, [(ids[a], ids[b]) for a, b in pairs])
        return {
            (a, b): found[pair_of(ids[a], ids[b])]
            for a, b in pairs
            if pair_of(ids[a], ids[b]) in found
        }

    same, different = _pair_constraints(rt, collection.id, row_of)
    found, stats = sweep(
        vectors,
        phashes,
        engine_neighbours if image_ids is None else subset_neighbours,
        limits,
        same=same,
        different=different,
        matches=pair_matches,
    )
    wanted = [c for c in found if c.tier in tiers]
    sweep_id = sweep_id or new_id()
    stored = load_clusters(
        rt,
        rt.catalog.retrying(
            lambda session: _store_clusters(
                session, rt, collection, ids, vectors, wanted, sweep_id, same, subset=image_ids
            )
        ),
    )
    return SweepResult(collection.id, sweep_id, stored, _stats(stats, len(stored)), limits)


def _stats(stats: SweepStats, clusters: int) -> dict[str, Any]:
    return {**stats.as_dict(), "clusters": clusters}


def _load_points(
    rt: Services, collection: Collection, image_ids: Sequence[str] | None
) -> tuple[list[str], NDArray[np.float32], list[int | None]]:
    if image_ids is not None:
        if not image_ids:
            raise InvalidInput("image_ids is empty: give at least two images, or none for all")
        if len(image_ids) > MAX_SUBSET:
            raise InvalidInput(f"at most {MAX_SUBSET} image_ids per request; sweep the collection")
        with rt.catalog.session() as session:
            known = set(
                session.scalars(
                    select(Image.id).where(
                        Image.collection_id == collection.id, Image.id.in_(list(image_ids))
                    )
                )
            )
        missing = [i for i in image_ids if i not in known]
        if missing:
            raise ImageNotFound(
                f"not in collection {collection.name!r}: {', '.join(missing[:5])}"
                + (" ..." if len(missing) > 5 else "")
            )
        points = rt.vectors.retrieve(
            collection.id, list(dict.fromkeys(image_ids)), with_vectors=True
        )
    else:
        points = list(rt.vectors.iter_points(collection.id, with_vectors=True))
    ids: list[str] = []
    rows: list[NDArray[np.float32]] = []
    phashes: list[int | None] = []
    for point in points:
        vector = point.vectors.get(collection.vector_name)
        if vector is None:
            continue
        v = np.asarray(vector, dtype=np.float32)
        norm = float(np.linalg.norm(v))
        ids.append(point.id)
        rows.append(v / norm if norm > 0 else v)
        value = (point.payload or {}).get("phash")
        phashes.append(phash_int(value) if value else None)
    matrix = np.stack(rows) if rows else np.zeros((0, collection.dim), dtype=np.float32)
    return ids, matrix, phashes


def _pair_constraints(
    rt: Services, collection_id: str, row_of: Mapping[str, int]
) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    with rt.catalog.session() as session:
        verdicts = latest_verdicts(session, collection_id)
    same: set[tuple[int, int]] = set()
    different: set[tuple[int, int]] = set()
    for (a, b), verdict in verdicts.items():
        if a in row_of and b in row_of:
            (same if verdict == "same" else different).add((row_of[a], row_of[b]))
    return same, different


def _store_clusters(
    session: Session,
    rt: Services,
    collection: Collection,
    ids: list[str],
    vectors: NDArray[np.float32],
    clusters: Sequence[Cluster],
    sweep_id: str,
    same: set[tuple[int, int]],
    *,
    subset: Sequence[str] | None,
) -> list[str]:
    """Replace the open clusters the sweep covered with `clusters`; returns the new ids.

    Members deleted since the sweep loaded its points are left out (run it in
    `catalog.retrying`: one deleted between this read and the commit fails the commit).
    """
    member_ids = {ids[row] for c in clusters for row in c.members}
    images = {
        i.id: i for i in session.scalars(select(Image).where(Image.id.in_(list(member_ids)))).all()
    }
    old = select(DuplicateCluster.id).where(
        DuplicateCluster.collection_id == collection.id, DuplicateCluster.status == "open"
    )
    if subset is not None:
        old = old.where(
            DuplicateCluster.id.in_(
                select(DuplicateClusterMember.cluster_id).where(
                    DuplicateClusterMember.image_id.in_(list(subset))
                )
            )
        )
    session.execute(
        delete(DuplicateCluster).where(DuplicateCluster.id.in_(list(session.scalars(old))))
    )
    stored: list[DuplicateCluster] = []
    by_index: dict[int, DuplicateCluster] = {}
    for index, c in enumerate(clusters):
        rows = {ids[row]: row for row in c.members if ids[row] in images}
        if len(rows) < 2:
            continue
        keeper = choose_keeper(
            [images[i] for i in rows],
            rt.settings.dedup_keeper_policy,
            rt.settings.dedup_preferred_formats,
        )
        keeper_row = rows[keeper.id]
        settled = all(
            (min(keeper_row, row), max(keeper_row, row)) in same
            for row in rows.values()
            if row != keeper_row
        )
        cluster = DuplicateCluster(
            collection_id=collection.id,
            sweep_id=sweep_id,
            tier=c.tier,
            status="duplicate" if settled else "open",
            keeper_image_id=keeper.id,
        )
        # The sweep's rows are unit vectors: a dot product is the cosine.
        for image_id, row in rows.items():
            score = (
                1.0 if row == keeper_row else round(float(vectors[keeper_row] @ vectors[row]), 6)
            )
            cluster.members.append(DuplicateClusterMember(image_id=image_id, score=score))
        session.add(cluster)
        stored.append(cluster)
        by_index[index] = cluster
    session.flush()
    for index, c in enumerate(clusters):
        if c.parent is not None and index in by_index and c.parent in by_index:
            by_index[index].parent_id = by_index[c.parent].id
    session.flush()
    return [c.id for c in stored]


def choose_keeper(
    images: Sequence[Image], policy: Sequence[str], preferred_formats: Sequence[str]
) -> Image:
    """The image to keep of a cluster, by the first rule of `policy` that tells them apart."""
    rank = {mime: i for i, mime in enumerate(preferred_formats)}

    def key(image: Image) -> tuple[Any, ...]:
        parts: list[Any] = []
        for rule in policy:
            if rule == "resolution":
                parts.append(-(image.width * image.height))
            elif rule == "quality":
                parts.append(-(image.quality_score if image.quality_score is not None else -1.0))
            elif rule == "oldest":
                parts.append(image.created_at)
            elif rule == "newest":
                parts.append(-image.created_at.timestamp())
            elif rule == "format":
                parts.append(rank.get(image.mime, len(rank)))
            elif rule == "bytes":
                parts.append(-image.bytes)
        parts.append(image.id)  # a stable last resort
        return tuple(parts)

    return min(images, key=key)


def sweep_job(rt: DedupServices) -> JobFunction:
    """The `dedup_sweep` job function for `JobRunner`."""

    def run(context: JobContext) -> dict[str, Any]:
        with rt.catalog.session() as session:
            collection = session.get(Collection, context.collection_id)
        if collection is None:
            raise NotFound(f"no collection {context.collection_id!r}")
        result = run_sweep(
            rt,
            collection,
            thresholds=context.params.get("thresholds"),
            tiers=context.params.get("tiers") or ("near_exact", "similar"),
            sweep_id=context.job_id,
        )
        return {
            "sweep_id": result.sweep_id,
            "stats": result.stats,
            "thresholds": result.thresholds.as_dict(),
        }

    return run
