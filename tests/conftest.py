"""Shared fixtures: settings on a temporary data dir, an open runtime, the sample photos.

Models are built once per session (or once per machine when LOOKALIKE_MODEL_CACHE_DIR points at
a lasting cache, as `make test` does), never downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import plugin_modules
from lookalike.composition import Lookalike
from lookalike.core.config import Settings
from lookalike.demo.samples import sample_photos
from support import make_settings

# Each store server the tests can start (tests/backends/) brings its session fixture.
pytest_plugins = plugin_modules()

# A developer's own LOOKALIKE_* variables must not change what the tests see.
_CACHE = os.environ.get("LOOKALIKE_MODEL_CACHE_DIR")
for _key in [k for k in os.environ if k.startswith("LOOKALIKE_")]:
    del os.environ[_key]

TINY_CLIP = "tiny-clip"


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = Path(_CACHE) if _CACHE else tmp_path_factory.mktemp("models")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def tiny_clip(models_dir: Path) -> str:
    """A small CLIP-like model (real ONNX graphs and tokenizer, random weights) in the cache."""
    from lookalike.embedding.testing import build_tiny_clip

    target = models_dir / TINY_CLIP
    if not (target / "manifest.json").exists():
        build_tiny_clip(target)
    return TINY_CLIP


@pytest.fixture
def settings(tmp_path: Path, models_dir: Path) -> Settings:
    return make_settings(tmp_path / "data", models_dir)


@pytest.fixture
def rt(settings: Settings) -> Iterator[Lookalike]:
    with Lookalike(settings) as runtime:
        yield runtime


@pytest.fixture(scope="session")
def photos() -> dict[str, bytes]:
    return sample_photos()
