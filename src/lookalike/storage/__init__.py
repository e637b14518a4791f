"""Blob stores for originals and thumbnails: one interface, one module per backend."""

from __future__ import annotations

from lookalike.core.config import Settings
from lookalike.core.errors import Misconfigured
from lookalike.storage.base import BlobStore
from lookalike.storage.local import LocalBlobStore

__all__ = ["BlobStore", "LocalBlobStore", "open_blob_store"]


def open_blob_store(settings: Settings) -> BlobStore:
    """The blob store `settings.blobs` names: an S3 bucket for `s3://BUCKET/PREFIX`, else a
    local directory (default: the data directory's `blobs/`)."""
    location = settings.blobs_s3
    if location is None:
        return LocalBlobStore(settings.blobs_dir)
    try:
        # boto3 is an optional extra: only S3 users need it.
        from lookalike.storage.s3 import S3BlobStore
    except ImportError as exc:
        raise Misconfigured(
            f"LOOKALIKE_BLOBS={settings.blobs} needs boto3: pip install 'lookalike[s3]' ({exc})"
        ) from exc
    bucket, prefix = location
    return S3BlobStore(bucket, prefix, endpoint_url=settings.s3_endpoint)
