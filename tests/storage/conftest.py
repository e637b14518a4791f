"""The blob-store backends every contract test runs against.

A new backend is one factory here and one entry in BACKENDS; the contract tests stay as they
are. A factory is a context manager so that a remote backend can clean up (drop its objects).
The S3 backend's server (a real SeaweedFS) is the `s3_env` fixture of tests/backends/s3.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from backends.s3 import SeaweedS3, delete_under
from lookalike.storage import BlobStore, LocalBlobStore


@contextmanager
def _local(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    yield LocalBlobStore(tmp_path / "blobs")


@contextmanager
def _s3(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    from lookalike.storage.s3 import S3BlobStore

    server: SeaweedS3 = request.getfixturevalue("s3_env")
    bucket: str = request.getfixturevalue("s3_bucket")
    # Each test its own prefix, as deployments share buckets: the store must keep inside it.
    prefix = f"test-{uuid.uuid4().hex[:12]}/blobs"
    try:
        yield S3BlobStore(bucket, prefix, endpoint_url=server.endpoint)
    finally:
        delete_under(server.client(), bucket, prefix)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], AbstractContextManager[BlobStore]]] = {
    "local": _local,
    "s3": _s3,
}


@pytest.fixture(params=list(BACKENDS))
def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    with BACKENDS[request.param](request, tmp_path) as store:
        yield store
