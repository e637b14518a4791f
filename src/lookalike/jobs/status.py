"""Reading jobs back: one by id within a tenant, or a collection's latest, for the API and CLI."""

from __future__ import annotations

from sqlalchemy import select

from lookalike.catalog import Catalog, Collection, Job
from lookalike.core.errors import NotFound


def get_job(catalog: Catalog, tenant: str, job_id: str) -> Job:
    """The job, if it belongs to one of `tenant`'s collections (else `NotFound`, as if absent)."""
    with catalog.session() as session:
        job = session.scalars(
            select(Job)
            .join(Collection, Job.collection_id == Collection.id)
            .where(Job.id == job_id, Collection.tenant == tenant)
        ).first()
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    return job


def list_jobs(
    catalog: Catalog, collection_id: str, *, status: str | None = None, limit: int = 100
) -> list[Job]:
    """The collection's jobs, newest first."""
    with catalog.session() as session:
        query = select(Job).where(Job.collection_id == collection_id)
        if status:
            query = query.where(Job.status == status)
        return list(session.scalars(query.order_by(Job.created_at.desc()).limit(limit)).all())
