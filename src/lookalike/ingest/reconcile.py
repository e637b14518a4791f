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

`sweep_storage` looks after the blob store as a whole, since blobs are shared by content across
collections and tenants: it deletes blobs that no image names (once older than a grace period,
as a writer stores a thumbnail before the row that names it), staged uploads older than an
upload URL's lifetime, and what interrupted deletes and uploads left behind.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import select, update

from lookalike.catalog import Collection, Image, Job, Record
from lookalike.core.errors import NotFound
from lookalike.ingest.payload import image_payload
from lookalike.ingest.uploads import UPLOAD_TTL_S, sweep_staged_uploads
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
# An unreferenced blob younger than this may be a thumbnail or an original whose catalog row is
# about to be written; an hour is far beyond any ingest, and orphans cost only storage meanwhile.
BLOB_GRACE_S = 3600.0
# Keys per IN (...) query: far below every catalog's limit on bound parameters.
_IN_BATCH = 500


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


@dataclass(frozen=True)
class StorageSweep:
    """What `sweep_storage` found (and with `fixed`, deleted): blob keys no image names,
    staged upload keys, and leftovers of interrupted operations."""

    orphan_blobs: list[str]
    stale_uploads: list[str]
    leftovers: list[str]
    fixed: bool


def sweep_storage(
    rt: Services,
    *,
    fix: bool = True,
    grace_s: float = BLOB_GRACE_S,
    upload_ttl_s: float = UPLOAD_TTL_S,
    now: float | None = None,
) -> StorageSweep:
    """Find, and with `fix` delete, what the blob store holds that nothing will use again.

    Blobs no image of any collection names are deleted once older than `grace_s` seconds,
    through `BlobStore.delete_unreferenced`, which asks the catalog again and keeps any blob a
    concurrent ingest has just claimed. Uploads staged for longer than `upload_ttl_s` after
    their last write are deleted. Blobs an interrupted delete set aside (more than `grace_s`
    ago) are put back if referenced, dropped if not.
    """
    now = time.time() if now is None else now
    cutoff = now - grace_s
    leftovers = rt.blobs.clean_leftovers(
        lambda keys: _referenced(rt, keys), older_than=cutoff, fix=fix
    )
    old = {blob.name for blob in rt.blobs.list_blobs() if blob.modified < cutoff}
    orphans = sorted(old - _referenced(rt, old))
    if fix and orphans:
        orphans = rt.blobs.delete_unreferenced(orphans, lambda keys: _referenced(rt, keys))
    stale = sweep_staged_uploads(rt.settings, rt.blobs, older_than=now - upload_ttl_s, fix=fix)
    return StorageSweep(orphan_blobs=orphans, stale_uploads=stale, leftovers=leftovers, fixed=fix)


def _referenced(rt: Services, keys: Iterable[str]) -> set[str]:
    """Those of `keys` that an image names as its original or thumbnail, in any collection."""
    wanted = sorted(set(keys))
    found: set[str] = set()
    with rt.catalog.session() as session:
        for start in range(0, len(wanted), _IN_BATCH):
            batch = wanted[start : start + _IN_BATCH]
            members = set(batch)
            for original, thumbnail in session.execute(
                select(Image.blob_key, Image.thumbnail_key).where(
                    Image.blob_key.in_(batch) | Image.thumbnail_key.in_(batch)
                )
            ):
                found.update(k for k in (original, thumbnail) if k in members)
    return found
