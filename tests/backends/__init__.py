"""Real servers for the store backends, started by session fixtures on free 127.0.0.1 ports.

A new server is one module here. tests/conftest.py loads every module of this package as a
pytest plugin, so its session fixture (`milvus_server`, say) is there for any test that asks
for it by name, and a module that defines `VECTOR_BACKEND` joins the vector-engine contract
suite (tests/vectors).
"""

from __future__ import annotations

import hashlib
import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lookalike.vectors.base import VectorIndex


def plugin_modules() -> list[str]:
    return [f"{__name__}.{m.name}" for m in pkgutil.iter_modules(__path__) if not m.ispkg]


@dataclass(frozen=True)
class Backend:
    """A vector engine under test. `factory` is a "module:callable": an embedded engine's takes
    the test's data directory; a server engine's takes the URL of the server that the session
    fixture named by `server` started, and a namespace of its own for each test, so that tests
    share one server without seeing each other's collections."""

    name: str
    factory: str
    # Keyword options that keep small test collections quick.
    options: dict[str, Any] = field(default_factory=dict)
    server: str | None = None
    # Holds an exclusive lock on its data directory (a second process is refused).
    locks_data_dir: bool = False
    # Contract tests that do not apply to this engine, with the reason (shown as the skip).
    skips: Mapping[str, str] = field(default_factory=dict)
    # A pytest marker its tests carry (`milvus`: `make unit` runs them beside the rest).
    mark: str | None = None

    def open(self, root: Path, server_url: str | None = None) -> VectorIndex:
        module, attr = self.factory.split(":")
        opener = getattr(importlib.import_module(module), attr)
        if self.server is None:
            index: VectorIndex = opener(root, **self.options)
        else:
            index = opener(server_url, namespace=namespace_for(root), **self.options)
        return index


def namespace_for(root: Path) -> str:
    """A namespace per data directory: a reopen in the same test sees the same collections."""
    return "t" + hashlib.sha1(str(root).encode()).hexdigest()[:12]


def server_backends() -> list[Backend]:
    """The `VECTOR_BACKEND` of every module here that has one."""
    found = []
    for name in plugin_modules():
        backend = getattr(importlib.import_module(name), "VECTOR_BACKEND", None)
        if backend is not None:
            found.append(backend)
    return found
