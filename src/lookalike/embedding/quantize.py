"""int8 variants of a model: weights quantized, activations computed in int8 at run time.

ONNX Runtime's dynamic quantization needs no calibration data. On the 2-core machine it ran the
ViT-B/32 text tower 2.3x faster (122 against 52 texts/s at batch 8). The variant is a new model
directory with its own name and model_id, so a collection built with one is never searched with
the other.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from lookalike.core.config import Settings
from lookalike.core.errors import Conflict, ModelUnavailable
from lookalike.embedding.known import model_path
from lookalike.embedding.model_cache import ensure_model_dir
from lookalike.embedding.model_dir import ModelDir, write_manifest


def quantize_model(settings: Settings, name: str, *, out_name: str | None = None) -> Path:
    """Write `<name>-int8` (or `out_name`) next to `name` in the model cache and return its path."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source: ModelDir = ensure_model_dir(settings, name)
    manifest = source.manifest
    target_name = out_name or f"{name}-int8"
    target = model_path(settings, target_name)
    if target.exists():
        raise Conflict(f"{target} exists already; remove it to quantize again")
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target_name}.", dir=settings.models_dir))
    try:
        files: dict[str, str] = {}
        for role in ("visual", "textual"):
            if getattr(manifest.files, role, None) is None:
                continue
            out = staging / f"{role}.onnx"
            try:
                quantize_dynamic(source.file(role), out, weight_type=QuantType.QInt8)
            except Exception as exc:  # the quantizer raises plain exceptions on odd graphs
                raise ModelUnavailable(
                    f"could not quantize the {role} graph of {name}: {exc}"
                ) from exc
            files[role] = out.name
        if manifest.files.tokenizer is not None:
            shutil.copyfile(source.file("tokenizer"), staging / "tokenizer.json")
            files["tokenizer"] = "tokenizer.json"
        write_manifest(
            staging,
            name=target_name,
            kind=manifest.kind,
            dim=manifest.dim,
            files=files,
            preprocess=manifest.preprocess,
            text=manifest.text,
            source=f"{manifest.model_id}, int8 dynamic quantization",
            licence=manifest.licence,
            notes="weights int8 (ONNX Runtime dynamic quantization); vectors differ slightly "
            "from the float model's",
        )
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
