"""A model is a directory: ONNX graphs, an optional tokenizer and a `manifest.json` that says
what they are, how to feed them and what their bytes hash to.

    <models_dir>/<name>/
        manifest.json
        visual.onnx          (files.visual)
        textual.onnx         (files.textual: CLIP and late-interaction models)
        tokenizer.json       (files.tokenizer: CLIP and late-interaction models)

Kinds: `clip` (one vector per image and per text), `image` (one per image, no text tower) and
`late_interaction` (ColPali-style: the visual graph gives one vector per image patch (N, P, dim),
the textual graph one per token (N, T, dim), optionally with a `mask` output; matched by MaxSim).

Hashing ~600 MB of CLIP weights on every start would cost seconds, so a directory is hashed once
and the result recorded in `.verified.json` next to the manifest, keyed by each file's size and
mtime; a file that changes after that is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lookalike.core.errors import ModelUnavailable

MANIFEST_NAME = "manifest.json"
VERIFIED_NAME = ".verified.json"
FORMAT_VERSION = 1

ModelKind = Literal["clip", "image", "late_interaction"]
# Kinds with a text tower (textual graph and tokenizer).
TEXT_KINDS: frozenset[str] = frozenset({"clip", "late_interaction"})
ResizeMode = Literal["shortest", "squash", "pad"]
Interpolation = Literal["nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"]


class ModelFile(BaseModel):
    """One file of the model directory, relative to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int | None = Field(default=None, ge=0)

    @field_validator("path")
    @classmethod
    def _inside_directory(cls, value: str) -> str:
        # A manifest comes from the network or from a user's hands; it must not point outside.
        parts = Path(value).parts
        if not parts or Path(value).is_absolute() or ".." in parts:
            raise ValueError(f"file path {value!r} must be relative and stay inside the directory")
        return value


class ModelFiles(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    visual: ModelFile
    textual: ModelFile | None = None
    tokenizer: ModelFile | None = None

    def items(self) -> Iterable[tuple[str, ModelFile]]:
        for role in ("visual", "textual", "tokenizer"):
            file = getattr(self, role)
            if file is not None:
                yield role, file


class PreprocessConfig(BaseModel):
    """How an image becomes the visual graph's input; mirrors open_clip's `PreprocessCfg`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(ge=8, le=4096)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_mode: ResizeMode = "shortest"
    interpolation: Interpolation = "bicubic"
    fill_color: int = Field(default=0, ge=0, le=255, description="Border colour for 'pad'.")

    @field_validator("std")
    @classmethod
    def _positive_std(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(s <= 0 for s in value):
            raise ValueError("std must be positive")
        return value


class TextConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    context_length: int = Field(ge=2, le=4096)
    pad_token: str | None = Field(
        default=None, description="Token padded with; default: the tokenizer's id 0."
    )


class Manifest(BaseModel):
    """`manifest.json`. `model_id` changes whenever the weights do, which is what keeps vectors of
    two different models out of one named vector."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: int = FORMAT_VERSION
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    version: str = "1"
    model_id: str
    kind: ModelKind
    dim: int = Field(ge=1, le=65536)
    files: ModelFiles
    preprocess: PreprocessConfig
    text: TextConfig | None = None
    source: str = ""
    licence: str = ""
    notes: str = ""

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: int) -> int:
        if value != FORMAT_VERSION:
            raise ValueError(f"manifest format {value} is not {FORMAT_VERSION}; upgrade Lookalike")
        return value

    def check_consistent(self) -> None:
        """Cross-field rules pydantic cannot express per field."""
        expected = weights_model_id(self.name, self.files)
        if self.model_id != expected:
            raise ValueError(
                f"model_id {self.model_id!r} does not match the weights ({expected!r})"
            )
        if self.kind in TEXT_KINDS:
            if self.files.textual is None or self.files.tokenizer is None:
                raise ValueError(f"a {self.kind!r} model needs files.textual and files.tokenizer")
            if self.text is None:
                raise ValueError(f"a {self.kind!r} model needs a 'text' section (context_length)")


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def weights_model_id(name: str, files: ModelFiles) -> str:
    """`name@<12 hex>`: a hash over the hashes of the graphs and tokenizer, in role order."""
    digest = hashlib.sha256()
    for role, file in files.items():
        digest.update(f"{role}:{file.sha256}\n".encode())
    return f"{name}@{digest.hexdigest()[:12]}"


def describe_file(directory: Path, relative: str) -> ModelFile:
    path = directory / relative
    return ModelFile(path=relative, sha256=sha256_file(path), size=path.stat().st_size)


def write_manifest(
    directory: Path,
    *,
    name: str,
    kind: ModelKind,
    dim: int,
    files: Mapping[str, str],
    preprocess: PreprocessConfig,
    text: TextConfig | None = None,
    version: str = "1",
    source: str = "",
    licence: str = "",
    notes: str = "",
) -> Manifest:
    """Hash `files` (role -> path relative to `directory`) and write a valid `manifest.json`."""
    model_files = ModelFiles(**{role: describe_file(directory, rel) for role, rel in files.items()})
    manifest = Manifest(
        name=name,
        version=version,
        model_id=weights_model_id(name, model_files),
        kind=kind,
        dim=dim,
        files=model_files,
        preprocess=preprocess,
        text=text,
        source=source,
        licence=licence,
        notes=notes,
    )
    manifest.check_consistent()
    tmp = directory / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(manifest.model_dump_json(indent=2, exclude_none=True) + "\n", encoding="utf-8")
    os.replace(tmp, directory / MANIFEST_NAME)
    # The hashes were just computed; record them so the first load does not hash again.
    _write_verified(directory, manifest)
    return manifest


@dataclass(frozen=True)
class ModelDir:
    """A validated model directory. Construct with `ModelDir.open`."""

    path: Path
    manifest: Manifest

    @classmethod
    def open(cls, path: Path, *, verify: bool = True) -> ModelDir:
        """Read and validate the manifest, and (once per file version) the file hashes.

        Raises `ModelUnavailable` naming the directory and what is wrong with it.
        """
        manifest = read_manifest(path)
        model_dir = cls(path=path, manifest=manifest)
        if verify:
            model_dir.verify()
        return model_dir

    def file(self, role: str) -> Path:
        entry: ModelFile | None = getattr(self.manifest.files, role, None)
        if entry is None:
            raise ModelUnavailable(f"model {self.manifest.name!r} has no {role} file")
        return self.path / entry.path

    def verify(self) -> None:
        """Check every file against the manifest, hashing only files not verified before."""
        with _verify_lock:
            recorded = _read_verified(self.path)
            changed = False
            for role, entry in self.manifest.files.items():
                path = self.path / entry.path
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    raise ModelUnavailable(
                        f"model directory {self.path} is incomplete: {role} file {entry.path} is "
                        "missing; delete the directory to fetch or build it again"
                    ) from None
                if entry.size is not None and stat.st_size != entry.size:
                    raise ModelUnavailable(
                        f"model file {path} has {stat.st_size} bytes, the manifest says "
                        f"{entry.size}; it is truncated or replaced, delete the directory to fetch "
                        "or build it again"
                    )
                key = [stat.st_size, stat.st_mtime_ns, entry.sha256]
                if recorded.get(entry.path) == key:
                    continue
                actual = sha256_file(path)
                if actual != entry.sha256:
                    raise ModelUnavailable(
                        f"model file {path} is corrupt: sha256 {actual[:12]}..., the manifest says "
                        f"{entry.sha256[:12]}...; delete the directory to fetch or build it again"
                    )
                recorded[entry.path] = key
                changed = True
            if changed:
                _store_verified(self.path, recorded)


_verify_lock = threading.Lock()


def read_manifest(path: Path) -> Manifest:
    manifest_path = path / MANIFEST_NAME
    if not path.is_dir():
        raise ModelUnavailable(f"no model directory at {path}")
    try:
        raw: Any = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelUnavailable(f"model directory {path} has no {MANIFEST_NAME}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelUnavailable(f"cannot read {manifest_path}: {exc}") from exc
    try:
        manifest = Manifest.model_validate(raw)
        manifest.check_consistent()
    except (ValidationError, ValueError) as exc:
        raise ModelUnavailable(f"invalid {manifest_path}: {_short_error(exc)}") from exc
    return manifest


def _short_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
    return str(exc)


def _read_verified(directory: Path) -> dict[str, list[Any]]:
    try:
        data = json.loads((directory / VERIFIED_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _store_verified(directory: Path, recorded: dict[str, list[Any]]) -> None:
    tmp = directory / f"{VERIFIED_NAME}.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps(recorded), encoding="utf-8")
        os.replace(tmp, directory / VERIFIED_NAME)
    except OSError:
        # A read-only model directory (placed by hand, mounted) is fine: we just hash next time.
        tmp.unlink(missing_ok=True)


def _write_verified(directory: Path, manifest: Manifest) -> None:
    recorded: dict[str, list[Any]] = {}
    for _, entry in manifest.files.items():
        stat = (directory / entry.path).stat()
        recorded[entry.path] = [stat.st_size, stat.st_mtime_ns, entry.sha256]
    _store_verified(directory, recorded)
