"""What people see and decide about duplicates: clusters and their members, pair verdicts
("same" / "different"; the latest on a pair wins, older ones stay as history), the cluster
actions (mark duplicate or not, merge: keep one image, move the others into its record or drop
them; bulk tag) and the export of hard negatives for training."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session, selectinload

from lookalike.catalog import Collection, Feedback, Image, Record, utcnow
from lookalike.catalog.models import DuplicateCluster, DuplicateClusterMember, PairVerdict
from lookalike.catalog.repository import get_collection, get_image
from lookalike.core.errors import Conflict, ImageNotFound, InvalidInput, NotFound
from lookalike.records.service import Services, delete_images, update_record

log = logging.getLogger(__name__)

Verdict = Literal["same", "different"]


def load_clusters(rt: Services, cluster_ids: Sequence[str]) -> list[DuplicateCluster]:
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
    return load_clusters(rt, ids), int(total or 0)


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


def nested_groups(rt: Services, cluster_ids: Sequence[str]) -> dict[str, list[str]]:
    """Cluster id -> the ids of the near-exact clusters nested in it."""
    out: dict[str, list[str]] = {}
    if not cluster_ids:
        return out
    with rt.catalog.session() as session:
        rows = session.execute(
            select(DuplicateCluster.parent_id, DuplicateCluster.id)
            .where(DuplicateCluster.parent_id.in_(list(cluster_ids)))
            .order_by(DuplicateCluster.id)
        ).all()
    for parent_id, cluster_id in rows:
        if parent_id is not None:
            out.setdefault(parent_id, []).append(cluster_id)
    return out


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


def latest_verdicts(session: Session, collection_id: str) -> dict[tuple[str, str], str]:
    """The current verdict of every decided pair (the latest decision wins)."""
    rows = session.execute(
        select(PairVerdict.image_a, PairVerdict.image_b, PairVerdict.verdict)
        .where(PairVerdict.collection_id == collection_id)
        .order_by(PairVerdict.created_at, PairVerdict.id)
    ).all()
    return {(row[0], row[1]): row[2] for row in rows}


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
    return load_clusters(rt, [cluster.id])[0]


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
    return load_clusters(rt, [cluster.id])[0]


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
    return load_clusters(rt, [cluster.id])[0]


def _check_open(cluster: DuplicateCluster) -> None:
    if cluster.status == "merged":
        raise Conflict(f"cluster {cluster.id} was merged already")


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
        for (a, b), verdict in sorted(latest_verdicts(session, collection.id).items()):
            if verdict == "different":
                yield {"kind": "pair", "image_a": a, "image_b": b, "label": "different"}
