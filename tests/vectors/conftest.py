"""Vector engines: every test in tests/vectors runs against each backend in `BACKENDS`.

The embedded engine is listed here; each server engine's `Backend` is the `VECTOR_BACKEND` of
its module in tests/backends/, next to the fixture that starts its server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backends import Backend, server_backends
from lookalike.vectors.base import VectorIndex

BACKENDS = [
    # Small test collections should walk the HNSW graph once built, not fall back to a scan.
    Backend(
        "qdrant-edge",
        "lookalike.vectors.qdrant_edge:QdrantEdgeIndex",
        {"full_scan_points": 50},
        locks_data_dir=True,
    ),
    *server_backends(),
]


@pytest.fixture(
    params=[
        pytest.param(b, id=b.name, marks=[getattr(pytest.mark, b.mark)] if b.mark else [])
        for b in BACKENDS
    ]
)
def backend(request: pytest.FixtureRequest) -> Backend:
    chosen: Backend = request.param
    return chosen


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "vectors"


@pytest.fixture(autouse=True)
def _skip_what_does_not_apply(request: pytest.FixtureRequest) -> None:
    if "backend" not in request.fixturenames:
        return
    backend: Backend = request.getfixturevalue("backend")
    reason = backend.skips.get(request.node.originalname)
    if reason is not None:
        pytest.skip(f"{backend.name}: {reason}")


@pytest.fixture
def server_url(backend: Backend, request: pytest.FixtureRequest) -> str | None:
    if backend.server is None:
        return None
    url: str = request.getfixturevalue(backend.server)
    return url


@pytest.fixture
def open_index(
    backend: Backend, data_dir: Path, server_url: str | None
) -> Iterator[Callable[[], VectorIndex]]:
    """Opens the backend on the test's data directory or namespace (again after a close);
    closes them all and, on a server, drops what the test left there."""
    opened: list[VectorIndex] = []

    def _open() -> VectorIndex:
        index = backend.open(data_dir, server_url)
        opened.append(index)
        return index

    yield _open
    if backend.server is not None and opened:
        cleaner = backend.open(data_dir, server_url)
        for name in ("photos", "others"):
            cleaner.drop_collection(name)
        cleaner.close()
    for index in opened:
        index.close()


@pytest.fixture
def index(open_index: Callable[[], VectorIndex]) -> VectorIndex:
    return open_index()
