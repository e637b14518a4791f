"""Downloading a model, against a local stand-in for the model hub on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from lookalike.cli.common import RichDownloadProgress
from lookalike.core.config import Settings
from lookalike.core.errors import ModelUnavailable
from lookalike.embedding import (
    KNOWN_MODELS,
    ClipEmbedder,
    ModelDir,
    Models,
    ModelSpec,
    hub_clip_files,
    list_models,
    load_embedder,
    pull_model,
)

from .conftest import HUB_REPO, HubServer, settings_for

NAME = "tiny-clip-remote"


@dataclass
class RecordingProgress:
    events: list[tuple[str, str, int | None]] = field(default_factory=list)

    def start(self, filename: str, total: int | None) -> None:
        self.events.append(("start", filename, total))

    def advance(self, filename: str, nbytes: int) -> None:
        self.events.append(("advance", filename, nbytes))

    def finish(self, filename: str) -> None:
        self.events.append(("finish", filename, None))

    def bytes_for(self, filename: str) -> int:
        return sum(n or 0 for kind, f, n in self.events if kind == "advance" and f == filename)


def register(monkeypatch: pytest.MonkeyPatch, hub: HubServer, *, pin: bool = False) -> None:
    """Make `tiny-clip-remote` a known model served by `hub` (optionally with pinned hashes)."""
    pins: dict[str, str | None] = {}
    if pin:
        for role, remote in hub_clip_files().items():
            pins[role] = hashlib.sha256((hub.root / remote.path).read_bytes()).hexdigest()
    spec = ModelSpec(
        name=NAME,
        kind="clip",
        dim=64,
        description="test",
        repo=HUB_REPO,
        files=hub_clip_files(**pins),
    )
    monkeypatch.setitem(KNOWN_MODELS, NAME, spec)


def hub_settings(tmp_path: Path, hub: HubServer, **overrides: object) -> Settings:
    values: dict[str, object] = {"model_download": True, "model_base_url": hub.url}
    values.update(overrides)
    return settings_for(tmp_path / "models", tmp_path, **values)


def test_download_with_progress_then_cache_hit(
    tmp_path: Path, hub: HubServer, tiny_clip_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(monkeypatch, hub)
    settings = hub_settings(tmp_path, hub)
    progress = RecordingProgress()
    path = pull_model(settings, NAME, progress=progress)

    assert path == settings.models_dir / NAME
    model = ModelDir.open(path)
    assert model.manifest.kind == "clip"
    assert model.manifest.dim == 64
    assert model.manifest.text is not None
    assert model.manifest.text.context_length == 16
    assert model.manifest.text.pad_token == "<|pad|>"
    # The same bytes as the model that was published, so the same vectors.
    original = ClipEmbedder(ModelDir.open(tiny_clip_dir))
    downloaded = ClipEmbedder(model)
    np.testing.assert_allclose(
        downloaded.embed_texts(["a cat", "a rocket"]), original.embed_texts(["a cat", "a rocket"])
    )
    assert downloaded.model_id != original.model_id  # named after the model, same weights
    assert downloaded.model_id.split("@")[1] == original.model_id.split("@")[1]

    # Progress: every file started with its size, advanced to that size, finished.
    started = {f: total for kind, f, total in progress.events if kind == "start"}
    assert set(started) == {remote.path for remote in hub_clip_files().values()}
    for name, total in started.items():
        assert total == (hub.root / name).stat().st_size
        assert progress.bytes_for(name) == total
    finished = [f for kind, f, _ in progress.events if kind == "finish"]
    assert sorted(finished) == sorted(started)

    # No partial or temporary files left in the cache.
    assert not list(settings.models_dir.rglob("*.part"))
    assert not (settings.models_dir / ".partial" / NAME).exists()

    # Cached: neither a second pull nor loading the embedder asks the server for anything.
    served = len(hub.requests)
    assert len(hub.file_requests()) == len(hub_clip_files())
    pull_model(settings, NAME, progress=RecordingProgress())
    embedder = load_embedder(settings, NAME)
    assert embedder.embed_texts(["a cat"]).shape == (1, 64)
    assert len(hub.requests) == served
    assert {m.name: m.cached for m in list_models(settings)}[NAME]


def test_default_model_downloads_on_first_use(
    tmp_path: Path,
    hub: HubServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    register(monkeypatch, hub)
    settings = hub_settings(tmp_path, hub, model=NAME)
    embedder = Models(settings).default()
    assert embedder.name == NAME
    assert embedder.supports_text


def test_rich_progress_bar(tmp_path: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    register(monkeypatch, hub)
    out = io.StringIO()
    bar = RichDownloadProgress(Console(file=out, force_terminal=False, width=120))
    pull_model(hub_settings(tmp_path, hub), NAME, progress=bar)
    bar.close()
    text = out.getvalue()
    assert "visual/model.onnx" in text
    assert "textual/tokenizer.json" in text


@pytest.mark.parametrize("pin", [True, False])
def test_corrupt_download_is_rejected(
    tmp_path: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch, pin: bool
) -> None:
    # pinned: our registry knows the hash; not pinned: the server announces it (as the hub does).
    register(monkeypatch, hub, pin=pin)
    hub.corrupt.add("textual/model.onnx")
    settings = hub_settings(tmp_path, hub)
    with pytest.raises(ModelUnavailable, match=r"model\.onnx is corrupt: sha256"):
        pull_model(settings, NAME, progress=RecordingProgress())
    assert not (settings.models_dir / NAME).exists()
    assert not list(settings.models_dir.rglob("*.part"))
    # Fixed upstream: the next pull fetches only what is missing.
    hub.corrupt.clear()
    before = len(hub.requests)
    pull_model(settings, NAME, progress=RecordingProgress())
    fetched = [p for p, _ in hub.requests[before:]]
    assert all("visual/model.onnx" not in p for p in fetched), fetched
    assert any("textual/model.onnx" in p for p in fetched)


def test_interrupted_download_resumes(
    tmp_path: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(monkeypatch, hub)
    hub.cut_after["visual/model.onnx"] = 1000
    settings = hub_settings(tmp_path, hub)
    with pytest.raises(ModelUnavailable, match="downloading tiny-clip-remote failed"):
        pull_model(settings, NAME, progress=RecordingProgress())
    part = settings.models_dir / ".partial" / NAME / "visual" / "model.onnx.part"
    assert part.stat().st_size == 1000
    pull_model(settings, NAME, progress=RecordingProgress())
    ranges = [r for p, r in hub.requests if p.endswith("visual/model.onnx")]
    assert ranges == [None, "bytes=1000-"]
    assert ModelDir.open(settings.models_dir / NAME).manifest.dim == 64


def test_downloads_disabled(
    tmp_path: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(monkeypatch, hub)
    settings = hub_settings(tmp_path, hub, model_download=False)
    with pytest.raises(ModelUnavailable, match="downloads are disabled"):
        pull_model(settings, NAME)
    assert not hub.requests


def test_missing_upstream_file(
    tmp_path: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(monkeypatch, hub)
    (hub.root / "textual" / "tokenizer.json").unlink()
    with pytest.raises(ModelUnavailable, match="HTTP 404"):
        pull_model(hub_settings(tmp_path, hub), NAME, progress=RecordingProgress())


def test_hub_copy_placed_by_hand_is_adopted(
    tmp_path: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A machine without internet: someone copies the hub repository into the cache."""
    register(monkeypatch, hub)
    settings = hub_settings(tmp_path, hub, model_download=False)
    shutil.copytree(hub.root, settings.models_dir / NAME)
    embedder = load_embedder(settings, NAME)
    assert embedder.embed_texts(["a cat"]).shape == (1, 64)
    assert (settings.models_dir / NAME / "manifest.json").is_file()
    assert not hub.requests


def test_force_replaces_only_after_success(
    tmp_path: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(monkeypatch, hub)
    settings = hub_settings(tmp_path, hub)
    pull_model(settings, NAME, progress=RecordingProgress())
    hub.corrupt.add("visual/model.onnx")
    with pytest.raises(ModelUnavailable, match="corrupt"):
        pull_model(settings, NAME, progress=RecordingProgress(), force=True)
    assert ModelDir.open(settings.models_dir / NAME).manifest.dim == 64
    hub.corrupt.clear()
    pull_model(settings, NAME, progress=RecordingProgress(), force=True)
    assert ModelDir.open(settings.models_dir / NAME).manifest.dim == 64
