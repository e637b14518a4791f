"""The `BlobStore` interface: originals and thumbnails, addressed by the sha256 of their bytes.

A store may also take uploads from clients directly (`UploadStaging`): an S3 bucket hands out
presigned URLs, so a browser's bytes go to the bucket and never through the API's disk.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO

# Given candidate keys, the ones the catalog still names (asked again right before deleting).
Referenced = Callable[[set[str]], set[str]]


@dataclass(frozen=True)
class StoredObject:
    """A stored object's name (a blob's key, or a staged upload's name), its size in bytes and
    when it was last written (seconds since the epoch): what sweeps by age need."""

    name: str
    size: int
    modified: float


class UploadStaging(ABC):
    """Objects that clients upload straight into the store, held apart from the blobs until the
    API ingests them (and then deletes them).

    Names are plain (letters, digits, `.`, `_`, `-`; no slashes): the backend decides where
    they live, so that a staged object can never be taken for a blob or reach outside.
    """

    @abstractmethod
    def staging_put_url(
        self, name: str, *, expires_in: int, content_length: int | None = None
    ) -> tuple[str, dict[str, str]]:
        """A URL to PUT the object `name` to without credentials, valid for `expires_in`
        seconds, and the headers the client must send with it. With `content_length` the URL is
        signed for exactly that many bytes: the store refuses any other body."""

    @abstractmethod
    def staging_write(self, name: str, data: bytes) -> None:
        """Store a small object the API itself writes (the upload's signed ticket)."""

    @abstractmethod
    def staging_open(self, name: str) -> tuple[int, BinaryIO]:
        """The object's size and a stream of its bytes (the caller closes it); raises
        `lookalike.core.errors.NotFound` when absent. The size comes first so that a caller can
        refuse an object over its limit without reading it."""

    @abstractmethod
    def staging_delete(self, names: Iterable[str]) -> None:
        """Delete these staged objects; absent ones are not an error."""

    @abstractmethod
    def staging_list(self) -> list[StoredObject]:
        """Every staged object, for the sweep of abandoned uploads."""


class BlobStore(ABC):
    """Content-addressed byte storage. Writing the same bytes twice stores them once."""

    def key_for(self, sha256: str) -> str:
        """The key `put` will return for bytes with this sha256 hex digest.

        Content addressing makes the key known before the bytes are written, so the catalog
        can record it in the same transaction that creates the row.
        """
        return sha256

    @abstractmethod
    def put(self, data: bytes, *, content_type: str, durable: bool = True) -> str:
        """Store `data` atomically and return its key (derived from its sha256).

        `durable=False` may skip flushing to stable storage: for derived data (thumbnails) that
        can be made again from an original, a crash may lose it, never corrupt it.
        """

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The bytes under `key`; raises `lookalike.core.errors.NotFound` when absent."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether `key` is stored; False for a malformed key."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; removing an absent key is not an error."""

    @abstractmethod
    def delete_unreferenced(self, keys: Iterable[str], referenced: Referenced) -> list[str]:
        """Delete those of `keys` that `referenced` does not name; return the deleted keys.

        Blobs are shared by content, so a writer may be storing the same bytes for a new image
        at this moment: its catalog row is committed first, its `put` follows. A blob that such
        a writer stores or finds in place must survive, whatever the interleaving: a check
        followed by a delete is not enough (the writer's `put` can find the file between the two
        and return, and the delete then takes its original).
        """

    @abstractmethod
    def iter_keys(self) -> list[str]:
        """Every stored key (for the reconciler and tests)."""

    @abstractmethod
    def list_blobs(self) -> list[StoredObject]:
        """Every stored blob with its size and time of last write, sorted by key: the
        reconciler deletes unreferenced blobs only once they are older than a grace period,
        since a writer stores a thumbnail before the catalog row that names it."""

    @abstractmethod
    def clean_leftovers(
        self, referenced: Referenced, *, older_than: float, fix: bool = True
    ) -> list[str]:
        """Finish what interrupted operations left behind, if it was left before `older_than`
        (seconds since the epoch): a blob that `delete_unreferenced` set aside is put back when
        `referenced` names it and dropped otherwise; a backend's own debris (an upload in parts
        never completed) is removed. Returns a name for each thing found; `fix=False` only
        reports. Younger leftovers may belong to a collector running right now: left alone."""

    def download_url(
        self, key: str, *, content_type: str, filename: str | None, expires_in: int
    ) -> str | None:
        """A short-lived URL a client can GET blob `key` from without credentials, served with
        `content_type` (and `filename` as the download name), or None when this store has no
        such URLs and the API must serve the bytes itself."""
        return None

    def upload_staging(self) -> UploadStaging | None:
        """Where clients upload to directly, or None when uploads go through the API."""
        return None

    def open(self, key: str) -> BinaryIO:
        """A binary file object over the bytes under `key`, for streaming responses.

        Raises `lookalike.core.errors.NotFound` when absent. The caller closes it. Backends that
        can stream without reading everything into memory override this.
        """
        return io.BytesIO(self.get(key))
