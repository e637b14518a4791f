"""Catalog queries shared by the services. Every lookup is scoped to a tenant."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, String, cast, or_, select
from sqlalchemy.orm import Session

from lookalike.catalog.models import Collection, Image, Job, Record
from lookalike.core.errors import CollectionNotFound, ImageNotFound, NotFound, RecordNotFound

_Owned = TypeVar("_Owned", Record, Image, Job)


def get_collection(session: Session, tenant: str, id_or_name: str) -> Collection:
    """A collection by id or by name; another tenant's collection is reported as not found."""
    found = session.scalars(
        select(Collection).where(
            Collection.tenant == tenant,
            or_(Collection.id == id_or_name, Collection.name == id_or_name),
        )
    ).first()
    if found is None:
        raise CollectionNotFound(
            f"no collection {id_or_name!r}; list them with GET /api/collections "
            "or create it with POST /api/collections"
        )
    return found


def list_collections(session: Session, tenant: str) -> Sequence[Collection]:
    return session.scalars(
        select(Collection).where(Collection.tenant == tenant).order_by(Collection.name)
    ).all()


def _in_tenant(
    session: Session, model: type[_Owned], entity_id: str, tenant: str, missing: NotFound
) -> _Owned:
    """The row `entity_id` of `model` (a table with `collection_id`), if its collection is
    `tenant`'s; another tenant's row is as absent as one that does not exist."""
    table: Any = model
    found = session.scalars(
        select(model)
        .join(Collection, table.collection_id == Collection.id)
        .where(table.id == entity_id, Collection.tenant == tenant)
    ).first()
    if found is None:
        raise missing
    return found


def get_record(session: Session, tenant: str, record_id: str) -> Record:
    return _in_tenant(
        session, Record, record_id, tenant, RecordNotFound(f"no record {record_id!r}")
    )


def get_image(session: Session, tenant: str, image_id: str) -> Image:
    return _in_tenant(session, Image, image_id, tenant, ImageNotFound(f"no image {image_id!r}"))


def get_job(session: Session, tenant: str, job_id: str) -> Job:
    return _in_tenant(session, Job, job_id, tenant, NotFound(f"no job {job_id!r}"))


def list_jobs(
    session: Session, collection_id: str, *, status: str | None = None, limit: int = 100
) -> Sequence[Job]:
    """The collection's jobs, newest first."""
    query = select(Job).where(Job.collection_id == collection_id)
    if status:
        query = query.where(Job.status == status)
    return session.scalars(query.order_by(Job.created_at.desc()).limit(limit)).all()


def find_image_by_sha256(session: Session, collection_id: str, sha256: str) -> Image | None:
    return session.scalars(
        select(Image).where(Image.collection_id == collection_id, Image.sha256 == sha256)
    ).first()


def record_conditions(
    collection_id: str,
    *,
    name_contains: str | None = None,
    owner: str | None = None,
    tag: str | None = None,
) -> list[ColumnElement[bool]]:
    """WHERE conditions for listing a collection's records, the same on every database."""
    where: list[ColumnElement[bool]] = [Record.collection_id == collection_id]
    if name_contains:
        where.append(Record.name.ilike(f"%{_escape_like(name_contains)}%", escape="\\"))
    if owner:
        where.append(Record.owner == owner)
    if tag:
        # The JSON list as text contains the tag as a JSON string: portable across SQLite,
        # PostgreSQL and MySQL without their different JSON operators.
        needle = _escape_like(json.dumps(tag))
        where.append(cast(Record.tags, String).like(f"%{needle}%", escape="\\"))
    return where


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class RecordSummary:
    id: str
    name: str
    description: str


def record_summaries(session: Session, ids: Sequence[str]) -> dict[str, RecordSummary]:
    """Names and descriptions of records, by id: what search hits show (no full ORM rows)."""
    if not ids:
        return {}
    rows = session.execute(
        select(Record.id, Record.name, Record.description).where(Record.id.in_(set(ids)))
    ).all()
    return {r.id: RecordSummary(r.id, r.name, r.description) for r in rows}
