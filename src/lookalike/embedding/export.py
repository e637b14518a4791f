"""`lookalike model export`: an open_clip model or checkpoint to a model directory.

Needs the optional extra `export` (torch + open_clip, ~5 GB installed), which the service itself
never imports: everything torch-related is imported inside `export_open_clip`.

The result is checked before it is called done: the tokenizer.json written here must give the
same token ids as open_clip's own tokenizer, and the ONNX graphs run by ONNX Runtime must agree
with the torch model, so a model that exports but computes something else is caught here rather
than as bad search results.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
)

from lookalike.core.errors import ModelUnavailable
from lookalike.embedding.model_dir import ModelDir, PreprocessConfig, TextConfig, write_manifest

log = logging.getLogger(__name__)

EXPORT_EXTRA_HINT = (
    "exporting a model needs torch and open_clip, which the service does not install: "
    "pip install 'lookalike[export]'"
)

# Texts the exported tokenizer is compared on; they cover case, punctuation, digits,
# contractions, non-ASCII and HTML entities.
_CHECK_TEXTS = (
    "a photo of a cat",
    "A Photo Of A CAT!!",
    "two dogs, 3 cats & a bird's nest; it's 12:30",
    "café crème brûlée 東京 🚀",
    "   lots   of\twhitespace\n here ",
    "<end_of_text> inside text",
    "word " * 100,
)
# fp32 through different kernels; CLIP's embeddings are compared by cosine, so 1e-3 is plenty.
_MAX_ABS_DIFF = 1e-3


def _import_export_deps() -> tuple[Any, Any]:
    try:
        import open_clip
        import torch
    except ImportError as exc:
        raise ModelUnavailable(f"{EXPORT_EXTRA_HINT} ({exc})") from exc
    return torch, open_clip


def export_open_clip(
    model_name: str,
    pretrained_or_checkpoint: str | Path | None,
    out_dir: Path,
    *,
    name: str | None = None,
    opset: int = 18,
    image_batch_check: int = 2,
) -> Path:
    """Export open_clip model `model_name` (e.g. "ViT-B-32") with weights `pretrained_or_checkpoint`
    (an open_clip pretrained tag such as "laion2b_s34b_b79k", a checkpoint file, or None for random
    weights) into a new model directory `out_dir`, validate it and return its path.

    `name` is the model's name in the manifest (default: derived from `out_dir`'s name); to use
    the model, put the directory in the model cache under that name. The directory is written
    to a temporary sibling and renamed into place when complete.
    """
    torch, open_clip = _import_export_deps()
    if out_dir.exists():
        raise ModelUnavailable(f"{out_dir} already exists; remove it or choose another directory")
    pretrained = str(pretrained_or_checkpoint) if pretrained_or_checkpoint is not None else None
    # Checked before the minutes of exporting, not after.
    name = name or re.sub(r"[^a-z0-9._-]+", "-", out_dir.name.lower()).strip("-._")
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,63}", name):
        raise ModelUnavailable(
            f"{name!r} is not a valid model name (lower-case letters, digits, '.', '_', '-')"
        )

    started = time.perf_counter()
    model, _, _ = open_clip.create_model_and_transforms(model_name, pretrained=pretrained)
    model.eval()
    tokenizer = open_clip.get_tokenizer(model_name)
    context_length = int(getattr(tokenizer, "context_length", None) or model.context_length)
    pre_cfg = open_clip.get_model_preprocess_cfg(model)
    size = pre_cfg.get("size", 224)
    size = int(size[0] if isinstance(size, list | tuple) else size)
    preprocess = PreprocessConfig(
        size=size,
        mean=tuple(float(v) for v in pre_cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))),
        std=tuple(float(v) for v in pre_cfg.get("std", (0.26862954, 0.26130258, 0.27577711))),
        resize_mode={"longest": "pad"}.get(pre_cfg.get("resize_mode", "shortest"), "shortest"),
        interpolation=pre_cfg.get("interpolation", "bicubic"),
        fill_color=int(pre_cfg.get("fill_color", 0) or 0),
    )

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        tokenizer_json = _tokenizer_json(tokenizer)
        (staging / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
        _check_tokenizer(tokenizer, staging / "tokenizer.json", context_length)

        image = torch.randn(image_batch_check, 3, size, size)
        texts = tokenizer(list(_CHECK_TEXTS[:3]))
        with torch.no_grad():
            want_image = model.encode_image(image).numpy()
            want_text = model.encode_text(texts).numpy()
        dim = int(want_image.shape[1])

        visual, textual = _wrap(torch, model, "encode_image"), _wrap(torch, model, "encode_text")
        _export_graph(torch, visual, image, staging / "visual.onnx", "image", opset)
        _export_graph(torch, textual, texts, staging / "textual.onnx", "text", opset)
        _check_graph(staging / "visual.onnx", image.numpy(), want_image, "visual")
        _check_graph(staging / "textual.onnx", texts.numpy(), want_text, "textual")

        write_manifest(
            staging,
            name=name,
            kind="clip",
            dim=dim,
            files={
                "visual": "visual.onnx",
                "textual": "textual.onnx",
                "tokenizer": "tokenizer.json",
            },
            preprocess=preprocess,
            text=TextConfig(context_length=context_length),
            source=(
                f"open_clip {open_clip.__version__} {model_name}, weights "
                f"{pretrained or 'random (untrained)'}; exported with torch {torch.__version__}"
            ),
            licence="see the open_clip model card of these weights",
        )
        os.chmod(staging, 0o755)  # noqa: S103 - mkdtemp's 0700 would hide a shared model cache
        os.rename(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log.info(
        "exported %s (%s) to %s in %.1fs",
        model_name,
        pretrained,
        out_dir,
        time.perf_counter() - started,
    )
    ModelDir.open(out_dir)
    return out_dir


def _wrap(torch: Any, model: Any, method: str) -> Any:
    """A module whose forward is one of the model's encode_* methods (unnormalised output:
    the runtime normalises, so the graph stays usable for anything that wants raw features)."""

    class _Encoder(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: Any) -> Any:
            return getattr(self.model, method)(x)

    return _Encoder().eval()


def _export_graph(
    torch: Any, module: Any, example: Any, path: Path, input_name: str, opset: int
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            batch = torch.export.Dim("batch", min=1, max=4096)
            torch.onnx.export(
                module,
                (example,),
                str(path),
                input_names=[input_name],
                dynamic_shapes={"x": {0: batch}},
                opset_version=opset,
                external_data=False,
                dynamo=True,
            )
        except Exception as exc:
            # The torch.export-based exporter is the default and the future, but still fails on
            # some models; the TorchScript exporter handles every open_clip architecture.
            log.warning(
                "dynamo export of %s failed (%s); retrying with TorchScript", path.name, exc
            )
            torch.onnx.export(
                module,
                (example,),
                str(path),
                input_names=[input_name],
                output_names=["output"],
                dynamic_axes={input_name: {0: "batch"}, "output": {0: "batch"}},
                opset_version=min(opset, 17),
                dynamo=False,
            )
    for warning in caught:
        log.info("exporter warning (%s): %s", path.name, warning.message)
    if not path.is_file() or any(path.parent.glob(f"{path.name}.data")):
        raise ModelUnavailable(
            f"{path.name}: the exporter wrote external weight data (model over 2 GB), which "
            "the model directory format does not support yet"
        )
    _name_output(path, "embedding")


def _name_output(path: Path, wanted: str) -> None:
    """Call the graph's output `wanted`. Asking the exporter for that name is not enough: the
    dynamo exporter names intermediate values after modules, and the text tower has one called
    `embedding` already, which makes a duplicate definition ONNX Runtime refuses to load."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    current = graph.output[0].name
    if current == wanted:
        return

    def rename(old: str, new: str) -> None:
        for node in graph.node:
            node.input[:] = [new if v == old else v for v in node.input]
            node.output[:] = [new if v == old else v for v in node.output]
        for collection in (graph.input, graph.output, graph.value_info):
            for value in collection:
                if value.name == old:
                    value.name = new
        for init in graph.initializer:
            if init.name == old:
                init.name = new

    rename(wanted, f"{wanted}.inner")
    rename(current, wanted)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _check_graph(path: Path, feed: Any, want: Any, label: str) -> None:
    from lookalike.embedding.sessions import ort_session

    session = ort_session(path)
    got = session.run_one(feed)
    diff = float(np.max(np.abs(got - want)))
    if got.shape != want.shape or diff > _MAX_ABS_DIFF * max(1.0, float(np.max(np.abs(want)))):
        raise ModelUnavailable(
            f"the exported {label} graph disagrees with torch (max abs diff {diff:.2e}, shapes "
            f"{got.shape} vs {want.shape}); not writing the model directory"
        )
    log.info("%s graph matches torch (max abs diff %.2e)", label, diff)


def _tokenizer_json(tokenizer: Any) -> str:
    """open_clip's tokenizer as a Hugging Face `tokenizers` file (what the runtime loads)."""
    backend = getattr(getattr(tokenizer, "tokenizer", None), "backend_tokenizer", None)
    if backend is not None:
        # An HFTokenizer-backed model (hf-hub: and SigLIP-style models): it already is one.
        text: str = backend.to_str()
        return text
    if not hasattr(tokenizer, "bpe_ranks"):
        raise ModelUnavailable(f"cannot convert tokenizer {type(tokenizer).__name__}")
    return _simple_tokenizer_json(tokenizer)


def _simple_tokenizer_json(tokenizer: Any) -> str:
    """open_clip's `SimpleTokenizer` (OpenAI CLIP's byte-level BPE) rebuilt with `tokenizers`:
    same vocabulary and merges, same split pattern, same lower-casing and whitespace clean-up."""
    encoder: dict[str, int] = dict(tokenizer.encoder)
    merges = sorted(tokenizer.bpe_ranks, key=tokenizer.bpe_ranks.__getitem__)
    sot = tokenizer.decoder[tokenizer.sot_token_id]
    eot = tokenizer.decoder[tokenizer.eot_token_id]
    specials = [tokenizer.decoder[i] for i in tokenizer.all_special_ids]
    bpe = models.BPE(
        vocab=encoder,
        merges=[tuple(m) for m in merges],
        continuing_subword_prefix="",
        end_of_word_suffix="</w>",
        fuse_unk=False,
    )
    hf = Tokenizer(bpe)
    hf.normalizer = normalizers.Sequence(
        [
            normalizers.NFC(),
            normalizers.Replace(Regex(r"\s+"), " "),
            normalizers.Strip(),
            normalizers.Lowercase(),
        ]
    )
    special_pattern = "|".join(_regex_escape(s) for s in specials)
    hf.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(
                    special_pattern + r"|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"
                ),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    hf.post_processor = processors.TemplateProcessing(
        single=f"{sot} $A {eot}",
        special_tokens=[(sot, tokenizer.sot_token_id), (eot, tokenizer.eot_token_id)],
    )
    text: str = hf.to_str()
    return text


def _regex_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in r".^$*+?{}[]\|()" else c for c in text)


def _check_tokenizer(tokenizer: Any, path: Path, context_length: int) -> None:
    hf = Tokenizer.from_file(str(path))
    hf.enable_truncation(max_length=context_length)
    hf.enable_padding(length=context_length, pad_id=0, pad_token=hf.id_to_token(0) or "")
    texts: Sequence[str] = list(_CHECK_TEXTS)
    want = tokenizer(texts).numpy()
    got = np.asarray([e.ids for e in hf.encode_batch(texts)])
    mismatched = [t for t, w, g in zip(texts, want, got, strict=True) if not np.array_equal(w, g)]
    if mismatched:
        raise ModelUnavailable(
            f"the exported tokenizer disagrees with open_clip's on {mismatched[:2]!r}; "
            "not writing the model directory"
        )
