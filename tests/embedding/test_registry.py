"""Which model a caller gets: the cache, the offline fallback and its one warning."""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

import pytest

from lookalike.core.errors import ModelUnavailable, TextSearchUnavailable, UnknownModel
from lookalike.embedding import (
    ClipEmbedder,
    ImageEmbedder,
    Models,
    list_models,
    load_embedder,
    pull_model,
)
from support import free_port

from .conftest import settings_for


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: the download fails at once, offline."""
    return f"http://127.0.0.1:{free_port()}"


def fallback_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "falling back" in r.getMessage()
    ]


@pytest.mark.parametrize("download", [True, False])
def test_unavailable_clip_falls_back_to_offline_with_one_warning(
    tmp_path: Path, models_dir: Path, caplog: pytest.LogCaptureFixture, download: bool
) -> None:
    settings = settings_for(
        models_dir,
        tmp_path,
        model="clip-vit-b-32-laion2b",
        model_download=download,
        model_base_url=closed_port_url(),
    )
    caplog.set_level(logging.WARNING, logger="lookalike")
    models = Models(settings)
    embedder = models.default()
    assert embedder.name == "efficientnet-lite0"
    assert not embedder.supports_text
    assert models.default() is embedder
    warnings = fallback_warnings(caplog)
    assert len(warnings) == 1, warnings
    message = warnings[0]
    assert message.startswith("CLIP model clip-vit-b-32-laion2b unavailable: ")
    assert "falling back to offline image-only model efficientnet-lite0; text search disabled" in (
        message
    )
    assert "to fix: run `lookalike model pull clip-vit-b-32-laion2b`" in message
    assert ("downloads are disabled" in message) != download
    # Text search then says what to do.
    with pytest.raises(TextSearchUnavailable, match="lookalike model pull clip-vit-b-32-laion2b"):
        embedder.embed_texts(["a cat"])
    # The failed download left nothing that looks like a model behind.
    assert not (models_dir / "clip-vit-b-32-laion2b").exists()
    assert not (models_dir / ".partial" / "clip-vit-b-32-laion2b").exists()


def test_configured_model_in_cache_is_used_without_warning(
    tmp_path: Path, models_dir: Path, tiny_clip_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "models"
    shutil.copytree(tiny_clip_dir, cache / "tiny-clip")
    settings = settings_for(cache, tmp_path, model="tiny-clip")
    caplog.set_level(logging.WARNING, logger="lookalike")
    embedder = Models(settings).default()
    assert isinstance(embedder, ClipEmbedder)
    assert embedder.embed_texts(["a cat"]).shape == (1, 64)
    assert not fallback_warnings(caplog)


def test_offline_model_as_the_configured_model(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "models", tmp_path, model="efficientnet-lite0")
    embedder = Models(settings).default()
    assert isinstance(embedder, ImageEmbedder)
    assert (tmp_path / "models" / "efficientnet-lite0" / "manifest.json").is_file()


def test_models_load_each_model_once_and_thread_safe(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "models", tmp_path)
    models = Models(settings)
    found: list[object] = []
    barrier = threading.Barrier(6)

    def work() -> None:
        barrier.wait()
        found.append(models.get("efficientnet-lite0"))

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(found) == 6
    assert all(e is found[0] for e in found)
    assert models.get() is found[0]
    assert models.default() is found[0]
    # Another process's (or test's) models are its own.
    assert Models(settings).get() is not found[0]


def test_unknown_model(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "models", tmp_path)
    with pytest.raises(UnknownModel, match="unknown model 'no-such-model'"):
        load_embedder(settings, "no-such-model")
    with pytest.raises(UnknownModel, match="not a valid model name"):
        load_embedder(settings, "../etc")


def test_failure_is_not_cached(tmp_path: Path, tiny_clip_dir: Path) -> None:
    cache = tmp_path / "models"
    settings = settings_for(cache, tmp_path)
    models = Models(settings)
    with pytest.raises(UnknownModel):
        models.get("tiny-clip")
    # Placed by hand afterwards: the next call finds it.
    shutil.copytree(tiny_clip_dir, cache / "tiny-clip")
    assert models.get("tiny-clip").name == "tiny-clip"


def test_broken_cached_model_is_reported_not_replaced(tmp_path: Path, tiny_clip_dir: Path) -> None:
    cache = tmp_path / "models"
    shutil.copytree(tiny_clip_dir, cache / "tiny-clip")
    (cache / "tiny-clip" / "textual.onnx").unlink()
    settings = settings_for(cache, tmp_path)
    with pytest.raises(ModelUnavailable, match=r"textual file textual\.onnx is missing"):
        load_embedder(settings, "tiny-clip")


def test_list_models(tmp_path: Path, tiny_clip_dir: Path) -> None:
    cache = tmp_path / "models"
    shutil.copytree(tiny_clip_dir, cache / "tiny-clip")
    settings = settings_for(cache, tmp_path)
    pull_model(settings, "efficientnet-lite0")
    models = {m.name: m for m in list_models(settings)}
    assert set(models) == {"clip-vit-b-32-laion2b", "efficientnet-lite0", "tiny-clip"}
    clip = models["clip-vit-b-32-laion2b"]
    assert (clip.kind, clip.dim, clip.supports_text, clip.cached) == ("clip", 512, True, False)
    offline = models["efficientnet-lite0"]
    assert offline.cached
    assert offline.model_id is not None
    assert offline.model_id.startswith("efficientnet-lite0@")
    assert not offline.supports_text
    assert models["tiny-clip"].cached
    assert models["tiny-clip"].dim == 64
