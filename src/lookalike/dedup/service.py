"""Duplicates: the verdict at ingest, dedup sweeps, clusters and what people decide about them.

- `IngestVerdicts` runs after each stored ingest batch: every new image gets the nearest image
  already in the collection and its tier (one filtered engine search per image, no full pass).
- `run_sweep` clusters a whole collection (or given images) with `quality.clusters.sweep` and
  stores the clusters with a suggested keeper; it runs in a request or as a `dedup_sweep` job.
- People's decisions are kept as pair verdicts ("same" / "different"; the latest one on a pair
  wins, the older ones stay as history) and every later sweep honours them.
- Cluster actions: mark duplicate / not duplicate, merge (keep one image; move the others into
  its record or drop them; the others' record fields are kept on the keeper's record), bulk tag.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session, selectinload

from lookalike.catalog import Collection, Feedback, Image, Record, new_id, utcnow
from lookalike.catalog.models import DuplicateCluster, DuplicateClusterMember, PairVerdict
from lookalike.catalog.repository import get_collection, get_image
from lookalike.core.errors import Conflict, ImageNotFound, InvalidInput, NotFound
from lookalike.dedup.clusters import Cluster, SweepStats, sweep
from lookalike.dedup.tiers import DedupThresholds, Tier, collection_thresholds
from lookalike.imaging import phash_hamming, phash_int
from lookalike.imaging.phash_index import candidate_filter
from lookalike.ingest.pipeline import Written
from lookalike.jobs.runner import JobContext, JobFunction
from lookalike.records.service import Services, delete_images, update_record
from lookalike.vectors.base import Filter, HasId, Hit

log = logging.getLogger(__name__)

SWEEP_JOB = "dedup_sweep"
VERDICT_CANDIDATES = 16  # nearest images the verdict at ingest looks at
MAX_SUBSET = 5000  # images in one "cluster these" request
Verdict = Literal["same", "different"]


def thresholds_of(
    collection: Collection, overrides: Mapping[str, Any] | None = None
) -> DedupThresholds:
    return collection_thresholds(collection.model, collection.vector_settings or {}, overrides)


# --- the verdict at ingest -------------------------------------------------------------------


@dataclass(frozen=True)
class DuplicateVerdict:
    tier: Tier
    image_id: str
    score: float


class IngestVerdicts:
    """After-ingest step: the duplicate verdict of each new image against its collection."""

    __name__ = "duplicate verdicts"

    def __init__(self, rt: Services) -> None:
        self.rt = rt

    def __call__(self, written: Written) -> None:
        with self.rt.catalog.session() as session:
            collection = session.get(Collection, written.collection_id)
            if collection is None:
                return
            thresholds = thresholds_of(collection)
            rows = session.execute(
                select(Image.id, Image.phash).where(Image.id.in_(written.image_ids))
            ).all()
            phashes: dict[str, str | None] = {row[0]: row[1] for row in rows}
        verdicts: dict[str, DuplicateVerdict] = {}
        for image_id, vector in zip(written.image_ids, written.vectors, strict=True):
            verdict = nearest_duplicate(
                self.rt,
                written.collection_id,
                written.vector_name,
                image_id,
                np.asarray(vector, dtype=np.float32),
                phashes.get(image_id),
                thresholds,
            )
            if verdict is not None:
                verdicts[image_id] = verdict
        if not verdicts:
            return

        def store(session: Session) -> None:
            # The image a verdict points at may have been deleted since the search found it.
            alive = set(
                session.scalars(
                    select(Image.id).where(Image.id.in_({v.image_id for v in verdicts.values()}))
                )
            )
            for image_id, v in verdicts.items():
                if v.image_id in alive:
                    session.execute(
                        update(Image)
                        .where(Image.id == image_id)
                        .values(
                            duplicate_tier=v.tier, duplicate_of=v.image_id, duplicate_score=v.score
                        )
                    )

        self.rt.catalog.retrying(store)


def nearest_duplicate(
    rt: Services,
    collection_id: str,
    vector_name: str,
    image_id: str,
    vector: NDArray[np.float32],
    phash: str | None,
    thresholds: DedupThresholds,
) -> DuplicateVerdict | None:
    """The strongest-tier, then most similar, image stored before `image_id` (ids are ULIDs,
    so "before" is "smaller id"; two copies in one batch do not point at each other).

    A near-exact copy has a cosine of at least `near_exact_cosine`, so it is among the nearest
    images by embedding: one search for them, with their pHashes, decides. Only when all of
    them are that close (a crowd of look-alikes) does a second search go through the pHash
    gate's index.
    """
    not_itself = (HasId((image_id,)),)

    def near_exact_among(hits: list[Hit]) -> DuplicateVerdict | None:
        for hit in hits:
            other = (hit.payload or {}).get("phash")
            if (
                phash is not None
                and hit.id < image_id
                and hit.score >= thresholds.near_exact_cosine
                and other
                and phash_hamming(other, phash) <= thresholds.phash_gate
            ):
                return DuplicateVerdict("near_exact", hit.id, round(hit.score, 6))
        return None

    hits = rt.vectors.search(
        collection_id,
        vector_name,
        vector,
        limit=VERDICT_CANDIDATES,
        query_filter=Filter(must_not=not_itself),
        score_threshold=thresholds.similar_cosine,
        with_payload=True,
    )
    verdict = near_exact_among(hits)
    if verdict is not None:
        return verdict
    crowded = len(hits) == VERDICT_CANDIDATES and hits[-1].score >= thresholds.near_exact_cosine
    if crowded and phash is not None:
        gate = candidate_filter(phash, thresholds.phash_gate)
        verdict = near_exact_among(
            rt.vectors.search(
                collection_id,
                vector_name,
                vector,
                limit=VERDICT_CANDIDATES,
                query_filter=Filter(should=gate.should, must_not=not_itself),
                score_threshold=thresholds.near_exact_cosine,
                with_payload=True,
            )
        )
        if verdict is not None:
            return verdict
    for hit in hits:
        if hit.id < image_id:
            return DuplicateVerdict("similar", hit.id, round(hit.score, 6))
    return None


# --- sweeps --------------------------------------------------------------------------------


@dataclass
class SweepResult:
    collection_id: str
    sweep_id: str
    clusters: list[DuplicateCluster]
    stats: dict[str, Any]
    thresholds: DedupThresholds


def run_sweep(
    rt: Services,
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

    def engine_neighbours(row: int) -> Iterator[tuple[int, float]]:
        hits = rt.vectors.search(
            collection.id,
            collection.vector_name,
            vectors[row],
            limit=k + 1,
            score_threshold=limits.similar_cosine,
            with_payload=False,
        )
        for hit in hits:
            other = row_of.get(hit.id)
            if other is not None:
                yield other, hit.score

    def subset_neighbours(row: int) -> Iterator[tuple[int, float]]:
        scores = vectors @ vectors[row]
        for other in np.argsort(-scores)[: k + 1]:
            yield int(other), float(scores[other])

    same, different = _pair_constraints(rt, collection.id, row_of)
    found, stats = sweep(
        vectors,
        phashes,
        engine_neighbours if image_ids is None else subset_neighbours,
        limits,
        same=same,
        different=different,
    )
    wanted = [c for c in found if c.tier in tiers]
    sweep_id = sweep_id or new_id()
    stored = _load_clusters(
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


def _latest_verdicts(session: Session, collection_id: str) -> dict[tuple[str, str], str]:
    """The current verdict of every decided pair (the latest decision wins)."""
    rows = session.execute(
        select(PairVerdict.image_a, PairVerdict.image_b, PairVerdict.verdict)
        .where(PairVerdict.collection_id == collection_id)
        .order_by(PairVerdict.created_at, PairVerdict.id)
    ).all()
    return {(row[0], row[1]): row[2] for row in rows}


def _pair_constraints(
    rt: Services, collection_id: str, row_of: Mapping[str, int]
) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    with rt.catalog.session() as session:
        verdicts = _latest_verdicts(session, collection_id)
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
    for c in clusters:
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


# --- reading clusters ----------------------------------------------------------------------


def _load_clusters(rt: Services, cluster_ids: Sequence[str]) -> list[DuplicateCluster]:
    if not cluster_ids:
        return []
    with rt.catalog.session() as session:
        found = session.scalars(
            select(DuplicateCluster)
            .where(DuplicateCluster.id.in_(list(cluster_ids)))
            .options(selectinload(DuplicateCluster.members))
        ).all()
    order = {cid: i for i, cid in enumerate(cluster_ids)}
    return sorted(found, key=lambda c: order[c.id])


def list_clusters(
    rt: Services,
    collection: Collection,
    *,
    status: str | None = None,
    tier: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[DuplicateCluster], int]:
    where = [DuplicateCluster.collection_id == collection.id]
    if status:
        where.append(DuplicateCluster.status == status)
    if tier:
        where.append(DuplicateCluster.tier == tier)
    with rt.catalog.session() as session:
        total = session.scalar(select(func.count()).select_from(DuplicateCluster).where(*where))
        ids = session.scalars(
            select(DuplicateCluster.id)
            .where(*where)
            .order_by(
                DuplicateCluster.tier.desc(), DuplicateCluster.created_at, DuplicateCluster.id
            )
            .limit(limit)
            .offset(offset)
        ).all()
    return _load_clusters(rt, ids), int(total or 0)


def get_cluster(rt: Services, tenant: str, cluster_id: str) -> tuple[DuplicateCluster, Collection]:
    with rt.catalog.session() as session:
        row = session.execute(
            select(DuplicateCluster, Collection)
            .join(Collection, DuplicateCluster.collection_id == Collection.id)
            .where(DuplicateCluster.id == cluster_id, Collection.tenant == tenant)
            .options(selectinload(DuplicateCluster.members))
        ).first()
    if row is None:
        raise NotFound(f"no duplicate cluster {cluster_id!r}")
    return row[0], row[1]


@dataclass(frozen=True)
class MemberInfo:
    image_id: str
    record_id: str
    name: str
    score: float
    width: int
    height: int
    quality_score: float | None
    bytes: int
    mime: str
    created_at: datetime


def cluster_members(
    rt: Services, clusters: Sequence[DuplicateCluster]
) -> dict[str, list[MemberInfo]]:
    """Each cluster's members with what a person needs to pick a keeper: the keeper first,
    then the most similar to it. An image in two clusters has a score in each."""
    wanted = {m.image_id for c in clusters for m in c.members}
    found: dict[str, tuple[Image, str]] = {}
    if wanted:
        with rt.catalog.session() as session:
            rows = session.execute(
                select(Image, Record.name)
                .join(Record, Image.record_id == Record.id)
                .where(Image.id.in_(list(wanted)))
            ).all()
        found = {image.id: (image, name) for image, name in rows}
    out: dict[str, list[MemberInfo]] = {}
    for c in clusters:
        ordered = sorted(c.members, key=lambda m: (m.image_id != c.keeper_image_id, -m.score))
        out[c.id] = [
            MemberInfo(
                image_id=image.id,
                record_id=image.record_id,
                name=name,
                score=m.score,
                width=image.width,
                height=image.height,
                quality_score=image.quality_score,
                bytes=image.bytes,
                mime=image.mime,
                created_at=image.created_at,
            )
            for m in ordered
            if m.image_id in found
            for image, name in (found[m.image_id],)
        ]
    return out


# --- people's decisions --------------------------------------------------------------------


def record_pair_verdict(
    rt: Services,
    tenant: str,
    user: str,
    image_a: str,
    image_b: str,
    verdict: Verdict,
    note: str | None = None,
) -> PairVerdict:
    """Store "same" / "different" for two images of one collection (a new row; latest wins)."""
    if verdict not in ("same", "different"):
        raise InvalidInput("verdict must be 'same' or 'different'")
    if image_a == image_b:
        raise InvalidInput("a pair needs two different images")
    a, b = sorted((image_a, image_b))
    with rt.catalog.session() as session:
        first, second = get_image(session, tenant, a), get_image(session, tenant, b)
        if first.collection_id != second.collection_id:
            raise InvalidInput("the two images are in different collections")
        (row,) = _record_verdicts(
            session, tenant, user, first.collection_id, [(a, b)], verdict, note=note
        )
    return row


def _record_verdicts(
    session: Session,
    tenant: str,
    user: str,
    collection_id: str,
    pairs: Sequence[tuple[str, str]],
    verdict: Verdict,
    *,
    note: str | None = None,
) -> list[PairVerdict]:
    """New verdict rows (each pair in id order, as the table requires)."""
    rows = []
    for x, y in pairs:
        a, b = sorted((x, y))
        rows.append(
            PairVerdict(
                tenant=tenant,
                collection_id=collection_id,
                image_a=a,
                image_b=b,
                verdict=verdict,
                user=user,
                note=note,
            )
        )
    session.add_all(rows)
    return rows


def pair_history(rt: Services, tenant: str, image_id: str) -> list[PairVerdict]:
    """Every decision involving `image_id`, oldest first."""
    with rt.catalog.session() as session:
        get_image(session, tenant, image_id)
        return list(
            session.scalars(
                select(PairVerdict)
                .where(
                    PairVerdict.tenant == tenant,
                    or_(PairVerdict.image_a == image_id, PairVerdict.image_b == image_id),
                )
                .order_by(PairVerdict.created_at, PairVerdict.id)
            )
        )


def mark_cluster(
    rt: Services,
    tenant: str,
    user: str,
    cluster_id: str,
    verdict: Literal["duplicate", "not_duplicate"],
    image_ids: Sequence[str] | None = None,
) -> DuplicateCluster:
    """ "duplicate": the chosen members (default all) are the same as the keeper.
    "not_duplicate": the chosen members (default all) are different from the rest."""
    cluster, collection = get_cluster(rt, tenant, cluster_id)
    _check_open(cluster)
    members = [m.image_id for m in cluster.members]
    chosen = list(image_ids) if image_ids else members
    stray = set(chosen) - set(members)
    if stray:
        raise InvalidInput(f"not in this cluster: {', '.join(sorted(stray))}")
    keeper = cluster.keeper_image_id or members[0]
    with rt.catalog.session() as session:
        if verdict == "duplicate":
            pairs = [(keeper, m) for m in chosen if m != keeper]
            _record_verdicts(session, tenant, user, collection.id, pairs, "same")
            status = "duplicate" if set(chosen) | {keeper} == set(members) else "open"
        elif image_ids:
            # The chosen ones differ from the rest (not necessarily from each other).
            rest = [m for m in members if m not in chosen]
            pairs = [(x, y) for x in chosen for y in rest]
            _record_verdicts(session, tenant, user, collection.id, pairs, "different")
            if len(rest) >= 2:
                session.execute(
                    delete(DuplicateClusterMember).where(
                        DuplicateClusterMember.cluster_id == cluster.id,
                        DuplicateClusterMember.image_id.in_(chosen),
                    )
                )
                if keeper in chosen:
                    session.execute(
                        update(DuplicateCluster)
                        .where(DuplicateCluster.id == cluster.id)
                        .values(keeper_image_id=rest[0])
                    )
                status = "open"
            else:
                status = "not_duplicate"
        else:
            pairs = [(x, y) for i, x in enumerate(members) for y in members[i + 1 :]]
            _record_verdicts(session, tenant, user, collection.id, pairs, "different")
            status = "not_duplicate"
        session.execute(
            update(DuplicateCluster)
            .where(DuplicateCluster.id == cluster.id)
            .values(status=status, decided_by=user, updated_at=utcnow())
        )
    return _load_clusters(rt, [cluster.id])[0]


def merge_cluster(
    rt: Services,
    tenant: str,
    user: str,
    cluster_id: str,
    *,
    keeper: str | None = None,
    mode: Literal["move", "drop"] = "move",
) -> DuplicateCluster:
    """Keep one image. "move": the other images join the keeper's record (and stay searchable
    there, tagged as duplicates); "drop": they are deleted. Either way the other records' name,
    description, tags and metadata are kept on the keeper's record, under `extra["merged"]`,
    and their tags are added to its tags; records left without images are deleted."""
    cluster, collection = get_cluster(rt, tenant, cluster_id)
    _check_open(cluster)
    members = [m.image_id for m in cluster.members]
    keeper_id = keeper or cluster.keeper_image_id or members[0]
    if keeper_id not in members:
        raise InvalidInput(f"the keeper {keeper_id!r} is not in this cluster")
    others = [m for m in members if m != keeper_id]
    with rt.catalog.session() as session:
        keeper_image = session.get(Image, keeper_id)
        if keeper_image is None:
            raise ImageNotFound(f"no image {keeper_id!r}")
        keeper_record = session.get(Record, keeper_image.record_id)
        assert keeper_record is not None
        other_images = session.scalars(select(Image).where(Image.id.in_(others))).all()
        merged_records: dict[str, Record] = {}
        for image in other_images:
            if image.record_id == keeper_record.id:
                continue
            record = session.get(Record, image.record_id)
            if record is not None and record.id not in merged_records:
                merged_records[record.id] = record
        kept = list((keeper_record.extra or {}).get("merged", []))
        tags = set(keeper_record.tags)
        for record in merged_records.values():
            kept.append(
                {
                    "record_id": record.id,
                    "name": record.name,
                    "description": record.description,
                    "tags": list(record.tags),
                    "metadata": record.extra,
                    "owner": record.owner,
                    "images": [i.id for i in other_images if i.record_id == record.id],
                }
            )
            tags.update(record.tags)
        keeper_record_id = keeper_record.id
        extra = {**(keeper_record.extra or {}), "merged": kept}
        _record_verdicts(
            session, tenant, user, collection.id, [(keeper_id, o) for o in others], "same"
        )
    update_record(rt, tenant, keeper_record_id, tags=sorted(tags), extra=extra)
    if mode == "drop":
        delete_images(rt, collection.id, others)
    else:
        with rt.catalog.session() as session:
            session.execute(
                update(Image).where(Image.id.in_(others)).values(record_id=keeper_record_id)
            )
        rt.vectors.set_payload(
            collection.id,
            others,
            {"record_id": keeper_record_id, "tags": sorted(tags), "duplicate_of": keeper_id},
        )
    with rt.catalog.session() as session:
        for record in session.scalars(
            select(Record).where(Record.id.in_(list(merged_records)), ~Record.images.any())
        ).all():
            session.delete(record)
        session.execute(
            update(DuplicateCluster)
            .where(DuplicateCluster.id == cluster.id)
            .values(
                status="merged", keeper_image_id=keeper_id, decided_by=user, updated_at=utcnow()
            )
        )
    return _load_clusters(rt, [cluster.id])[0]


def tag_cluster(
    rt: Services, tenant: str, cluster_id: str, tags: Sequence[str]
) -> DuplicateCluster:
    """Add `tags` to the records of every member (and their search payloads)."""
    clean = sorted({t.strip() for t in tags if t and t.strip()})
    if not clean:
        raise InvalidInput("give at least one non-empty tag")
    cluster, _ = get_cluster(rt, tenant, cluster_id)
    with rt.catalog.session() as session:
        records = (
            session.scalars(
                select(Record)
                .join(Image, Image.record_id == Record.id)
                .where(Image.id.in_([m.image_id for m in cluster.members]))
            )
            .unique()
            .all()
        )
        current = {r.id: list(r.tags) for r in records}
    for record_id, existing in current.items():
        update_record(rt, tenant, record_id, tags=sorted(set(existing) | set(clean)))
    return _load_clusters(rt, [cluster.id])[0]


def _check_open(cluster: DuplicateCluster) -> None:
    if cluster.status == "merged":
        raise Conflict(f"cluster {cluster.id} was merged already")


# --- background sweeps and exports ---------------------------------------------------------


def sweep_job(rt: Services) -> JobFunction:
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


def hard_negatives(rt: Services, tenant: str, collection_ref: str) -> Iterator[dict[str, Any]]:
    """Training pairs people said do not belong together: "irrelevant" search feedback (query →
    image) and "different" pair verdicts that are still current."""
    with rt.catalog.session() as session:
        collection = get_collection(session, tenant, collection_ref)
        rows = (
            session.execute(
                select(Feedback)
                .join(Image, Feedback.image_id == Image.id)
                .where(
                    Image.collection_id == collection.id,
                    Feedback.tenant == tenant,
                    Feedback.action == "irrelevant",
                )
                .order_by(Feedback.created_at, Feedback.id)
            )
            .scalars()
            .all()
        )
        for f in rows:
            yield {
                "kind": "search",
                "query_image_id": f.query_image_id,
                "query_text": f.query_text,
                "image_id": f.image_id,
                "label": "irrelevant",
                "user": f.user,
                "created_at": f.created_at.isoformat(),
            }
        for (a, b), verdict in sorted(_latest_verdicts(session, collection.id).items()):
            if verdict == "different":
                yield {"kind": "pair", "image_a": a, "image_b": b, "label": "different"}
