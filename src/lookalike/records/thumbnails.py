"""Thumbnails: made by the `thumbnail` enrichment stage after an image is searchable, or on the
first request for one that is not made yet (or was lost: thumbnails are written without fsync),
and then kept."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from sqlalchemy import Table, bindparam, update

from lookalike.catalog import Catalog, Collection, Image
from lookalike.core.config import Settings
from lookalike.core.errors import NotFound
from lookalike.enrichment.queue import DONE, StageQueue
from lookalike.enrichment.runner import StageBatch
from lookalike.imaging import THUMBNAIL_MIME, decode_stored, make_thumbnail
from lookalike.records.service import Services
from lookalike.storage.base import BlobStore

STAGE = "thumbnail"


def thumbnail_of(rt: Services, image: Image) -> bytes:
    """The image's thumbnail; made now, stored and remembered when there is none yet."""
    if image.thumbnail_key is not None and rt.blobs.exists(image.thumbnail_key):
        return rt.blobs.get(image.thumbnail_key)
    if image.blob_key is None:
        raise NotFound(f"image {image.id!r} has no stored original")
    decoded = decode_stored(
        rt.blobs.get(image.blob_key), rt.settings, reduce_for=rt.settings.thumbnail_size
    )
    data = make_thumbnail(decoded.image, size=rt.settings.thumbnail_size)
    key = rt.blobs.put(data, content_type=THUMBNAIL_MIME, durable=False)
    with rt.catalog.engine.begin() as conn:
        conn.execute(update(Image).where(Image.id == image.id).values(thumbnail_key=key))
        StageQueue.mark(conn, image.id, STAGE, DONE)
    return data


class ThumbnailStage:
    """A WebP of at most `thumbnail_size` on the longer side, for every new image."""

    name = STAGE

    def __init__(self, settings: Settings, catalog: Catalog, blobs: BlobStore) -> None:
        self.settings = settings
        self.catalog = catalog
        self.blobs = blobs

    def pixels_for(self, collection: Collection) -> int | None:
        return self.settings.thumbnail_size

    def needs_vector(self, collection: Collection) -> bool:
        return False

    def run(self, batch: StageBatch) -> Mapping[str, str]:
        keys = []
        for item in batch.items:
            if item.image.thumbnail_key is not None:
                continue  # made on request meanwhile
            assert item.pixels is not None
            data = make_thumbnail(item.pixels.image, size=self.settings.thumbnail_size)
            key = self.blobs.put(data, content_type=THUMBNAIL_MIME, durable=False)
            keys.append({"b_id": item.image.id, "thumbnail_key": key})
        if keys:
            table = cast(Table, Image.__table__)
            with self.catalog.engine.begin() as conn:
                conn.execute(update(table).where(table.c.id == bindparam("b_id")), keys)
        return {}
