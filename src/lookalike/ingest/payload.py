"""What each vector point carries: the fields filters need, mirrored from the catalog."""

from __future__ import annotations

from typing import Any

from lookalike.catalog.models import Collection, Image, Record
from lookalike.imaging.hashes import phash_chunks
from lookalike.vectors.base import PayloadType

# Fields with a payload index in every collection, and their types.
PAYLOAD_INDEXES: dict[str, PayloadType] = {
    "collection_id": "keyword",
    "record_id": "keyword",
    "owner": "keyword",
    "tags": "keyword",
    "created_at": "datetime",
    "quality": "float",
    "nsfw": "float",
    "phash": "keyword",
    "phash_q0": "keyword",
    "phash_q1": "keyword",
    "phash_q2": "keyword",
    "phash_q3": "keyword",
    "sha256": "keyword",
    "source": "keyword",
}


def image_payload(collection: Collection, record: Record, image: Image) -> dict[str, Any]:
    """The payload of `image`'s point; a document's page also carries `page` (1-based) and
    `page_count`, the latter from the record (`extra["page_count"]`)."""
    created = image.created_at
    chunks = phash_chunks(image.phash) if image.phash else {}
    pages = (
        {"page": image.page, "page_count": (record.extra or {}).get("page_count")}
        if image.page is not None
        else {}
    )
    return {
        **pages,
        **chunks,
        "collection_id": collection.id,
        "record_id": record.id,
        "owner": record.owner,
        "tags": list(record.tags),
        "created_at": created.isoformat().replace("+00:00", "Z") if created else None,
        "quality": image.quality_score,
        "nsfw": image.nsfw_score,
        "phash": image.phash,
        "sha256": image.sha256,
        "source": image.source,
        "width": image.width,
        "height": image.height,
        "mime": image.mime,
        "model": collection.model_id,
    }
