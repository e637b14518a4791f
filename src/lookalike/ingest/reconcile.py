"""Drift repair between the catalog (the source of truth) and the vector engine.

Vectors whose image is gone from the catalog are deleted; embedded images whose vector is missing
go back to pending with a new embed job, which the ingest pipeline then runs from the original.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update

from lookalike.catalog import Collection, Image, Job
from lookalike.runtime import Lookalike


@dataclass(frozen=True)
class ReconcileReport:
    collection: str
    vectors: int
    images: int
    orphan_vectors: int
    missing_vectors: int


def reconcile(rt: Lookalike, collection: Collection, *, fix: bool = True) -> ReconcileReport:
    """Compare ids on both sides; with `fix`, delete orphans and re-queue missing vectors."""
    vector_ids = {p.id for p in rt.vectors.iter_points(collection.id)}
    with rt.catalog.session() as session:
        rows = session.execute(
            select(Image.id, Image.status).where(Image.collection_id == collection.id)
        ).all()
    catalog_ids = {image_id for image_id, _ in rows}
    embedded = {image_id for image_id, status in rows if status == "embedded"}
    orphans = sorted(vector_ids - catalog_ids)
    missing = sorted(embedded - vector_ids)
    if fix and orphans:
        rt.vectors.delete(collection.id, orphans)
    if fix and missing:
        with rt.catalog.session() as session:
            session.execute(update(Image).where(Image.id.in_(missing)).values(status="pending"))
            session.add_all(
                Job(kind="embed", collection_id=collection.id, image_id=image_id)
                for image_id in missing
            )
        rt.ingest.resume()
    return ReconcileReport(
        collection=collection.name,
        vectors=len(vector_ids),
        images=len(catalog_ids),
        orphan_vectors=len(orphans),
        missing_vectors=len(missing),
    )
