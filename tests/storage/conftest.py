"""The blob-store backends every contract test runs against.

A new backend is one factory here and one entry in BACKENDS; the contract tests stay as they
are. A factory is a context manager so that a remote backend can clean up (drop its bucket).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from lookalike.storage import BlobStore, LocalBlobStore


@contextmanager
def _local(tmp_path: Path) -> Iterator[BlobStore]:
    yield LocalBlobStore(tmp_path / "blobs")


BACKENDS: dict[str, Callable[[Path], AbstractContextManager[BlobStore]]] = {
    "local": _local,
}


@pytest.fixture(params=list(BACKENDS))
def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    with BACKENDS[request.param](tmp_path) as store:
        yield store
