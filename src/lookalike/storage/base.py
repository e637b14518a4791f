"""The `BlobStore` interface: originals and thumbnails, addressed by the sha256 of their bytes."""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import BinaryIO

# Given candidate keys, the ones the catalog still names (asked again right before deleting).
Referenced = Callable[[set[str]], set[str]]


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

    def open(self, key: str) -> BinaryIO:
        """A binary file object over the bytes under `key`, for streaming responses.

        Raises `lookalike.core.errors.NotFound` when absent. The caller closes it. Backends that
        can stream without reading everything into memory override this.
        """
        return io.BytesIO(self.get(key))
