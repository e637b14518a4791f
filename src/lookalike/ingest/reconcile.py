"""Drift repair between the catalog (the source of truth), the vector engine and the blob store.

For every image of a collection the three must agree: the image has a vector (once embedded),
the vector's payload names the image's record and sha256, and the stored original hashes to that
sha256. What disagrees is reported by image id, and repaired where the catalog says how:

- a vector whose image is gone from the catalog is deleted;
- an embedded image without a vector, or whose vector's payload names other bytes (so the
  vector may be another file's embedding), goes back to pending with a new embed job, which the
  ingest pipeline runs from the stored original;
- a payload that names another record (or owner, tags) is rewritten from the catalog;
- a missing or damaged original cannot be derived from anything: it is reported only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import select, update

from lookalike.catalog import Collection, Image, Job, Record
from lookalike.core.errors import NotFound
from lookalike.ingest.payload import image_payload
from lookalike.records.service import Services
from lookalike.storage.base import BlobStore

FindingKind = Literal[
    "orphan_vector",  # a vector with no image in the catalog
    "missing_vector",  # an embedded image with no vector
    "wrong_vector",  # the vector's payload names other bytes than the image's
    "payload_mismatch",  # the vector's payload names another record, owner or tags
    "missing_original",  # the image's original is not in the blob store
    "damaged_original",  # the stored original does not hash to the image's sha256
]

# Payload fields that mirror the record; a difference in any is rewritten from the catalog.
_RECORD_FIELDS = ("record_id", "owner", "tags")
_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class Finding:
    image_id: str
    kind: FindingKind
    detail: str
    repaired: bool


@dataclass(frozen=True)
class ReconcileReport:
    collection: str
    vectors: int
    images: int
    findings: list[Finding] = field(default_factory=list)

    def count(self, kind: FindingKind) -> int:
        return sum(1 for f in self.findings if f.kind == kind)

    @property
    def orphan_vectors(self) -> int:
        return self.count("orphan_vector")

    @property
    def missing_vectors(self) -> int:
        return self.count("missing_vector")


def reconcile(rt: Services, collection: Collection, *, fix: bool = True) -> ReconcileReport:
    """Compare catalog, vectors and blobs image by image; with `fix`, repair what can be."""
    points = {p.id: p.payload for p in rt.vectors.iter_points(collection.id)}
    with rt.catalog.session() as session:
        rows = session.execute(
            select(Image, Record)
            .join(Record, Image.record_id == Record.id)
            .where(Image.collection_id == collection.id)
        ).all()
        images = {image.id: (image, record) for image, record in rows}
        expected = {
            image.id: image_payload(collection, record, image)
            for image, record in images.values()
            if image.status == "embedded"
        }
        blob_keys = {image.id: (image.blob_key, image.sha256) for image, _ in images.values()}

    findings: list[Finding] = []
    orphans = sorted(set(points) - set(images))
    findings += [
        Finding(i, "orphan_vector", "a vector with no image in the catalog", fix) for i in orphans
    ]
    reembed: list[str] = []
    rewrite: dict[str, dict[str, object]] = {}
    for image_id, want in sorted(expected.items()):
        have = points.get(image_id)
        if have is None:
            findings.append(Finding(image_id, "missing_vector", "embedded but no vector", fix))
            reembed.append(image_id)
        elif have.get("sha256") != want["sha256"]:
            findings.append(
                Finding(
                    image_id,
                    "wrong_vector",
                    f"the vector's payload names sha256 {have.get('sha256')!r}, the image is "
                    f"{want['sha256']}",
                    fix,
                )
            )
            reembed.append(image_id)
        elif any(have.get(k) != want[k] for k in _RECORD_FIELDS):
            differing = [k for k in _RECORD_FIELDS if have.get(k) != want[k]]
            findings.append(
                Finding(
                    image_id,
                    "payload_mismatch",
                    "the vector's payload differs from the catalog in " + ", ".join(differing),
                    fix,
                )
            )
            rewrite[image_id] = want
    for image_id, (key, sha) in sorted(blob_keys.items()):
        problem = _check_original(rt.blobs, key, sha)
        if problem is not None:
            kind, detail = problem
            findings.append(Finding(image_id, kind, detail, False))

    if fix:
        if orphans:
            rt.vectors.delete(collection.id, orphans)
        for image_id, payload in rewrite.items():
            rt.vectors.set_payload(collection.id, [image_id], payload)
        if reembed:
            with rt.catalog.session() as session:
                session.execute(update(Image).where(Image.id.in_(reembed)).values(status="pending"))
                session.add_all(
                    Job(kind="embed", collection_id=collection.id, image_id=image_id)
                    for image_id in reembed
                )
            rt.ingest.resume()
    return ReconcileReport(
        collection=collection.name, vectors=len(points), images=len(images), findings=findings
    )


def _check_original(
    blobs: BlobStore, key: str | None, sha256: str
) -> tuple[FindingKind, str] | None:
    if key is None or not blobs.exists(key):
        return "missing_original", "the original is not in the blob store"
    digest = hashlib.sha256()
    try:
        with blobs.open(key) as fh:
            for chunk in iter(lambda: fh.read(_READ_CHUNK), b""):
                digest.update(chunk)
    except NotFound:
        return "missing_original", "the original is not in the blob store"
    if digest.hexdigest() != sha256:
        return "damaged_original", f"the stored original hashes to {digest.hexdigest()}"
    return None
