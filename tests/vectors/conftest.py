"""Vector engines: every test in tests/vectors runs against each backend in `BACKENDS`.

A new engine is one more `Backend` entry: a `module:callable` that opens an index on a
directory, plus keyword options that keep small test collections quick.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lookalike.vectors.base import VectorIndex


@dataclass(frozen=True)
class Backend:
    name: str
    # "module:callable" taking (root_dir, **options); a subprocess test imports it the same way.
    factory: str
    options: dict[str, Any] = field(default_factory=dict)

    def open(self, root: Path) -> VectorIndex:
        module, attr = self.factory.split(":")
        index: VectorIndex = getattr(importlib.import_module(module), attr)(root, **self.options)
        return index


BACKENDS = [
    # Small test collections should walk the HNSW graph once built, not fall back to a scan.
    Backend(
        "qdrant-edge", "lookalike.vectors.qdrant_edge:QdrantEdgeIndex", {"full_scan_points": 50}
    ),
]


@pytest.fixture(params=BACKENDS, ids=lambda b: b.name)
def backend(request: pytest.FixtureRequest) -> Backend:
    chosen: Backend = request.param
    return chosen


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "vectors"


@pytest.fixture
def open_index(backend: Backend, data_dir: Path) -> Iterator[Callable[[], VectorIndex]]:
    """Opens the backend on the test's data directory (again after a close); closes them all."""
    opened: list[VectorIndex] = []

    def _open() -> VectorIndex:
        index = backend.open(data_dir)
        opened.append(index)
        return index

    yield _open
    for index in opened:
        index.close()


@pytest.fixture
def index(open_index: Callable[[], VectorIndex]) -> VectorIndex:
    return open_index()
