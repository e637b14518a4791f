"""Blob stores for originals and thumbnails: one interface, one module per backend."""

from lookalike.storage.base import BlobStore
from lookalike.storage.local import LocalBlobStore

__all__ = ["BlobStore", "LocalBlobStore"]
