"""A tiny CLIP-like model for tests and benchmarks: random weights, but real ONNX graphs and a real
BPE tokenizer, so the whole text and image path runs exactly as it does for the product model.

    visual:  image (N,3,S,S) -> patchify Conv -> ReLU -> mean over patches -> linear -> (N, dim)
    textual: text (N,L) int64 -> token embedding Gather -> mean over non-pad tokens -> linear

`build_tiny_late_interaction_model` makes its late-interaction (ColPali-style) counterpart, with
the same tokenizer: the same patches and tokens, each projected to a vector of its own.

Not a model of anything: similar inputs do not get similar vectors beyond what random
projections preserve. Deterministic for a given seed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from lookalike.embedding.model_dir import PreprocessConfig, TextConfig, write_manifest

PAD, BOS, EOS = "<|pad|>", "<|startoftext|>", "<|endoftext|>"

# Same mean/std as OpenAI CLIP, so preprocessing is exercised with the real constants.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_CORPUS_TEXT = (
    "a photo of the cat dog coffee cup espresso rocket launch astronaut space suit motorcycle "
    "red blue green black white small large close up picture image of an old new tabby sitting "
    "on table in front with sky clouds street night day bright dark person woman man portrait"
)


def _corpus(rng: np.random.Generator, n: int = 400) -> list[str]:
    words = _CORPUS_TEXT.split()
    lines = []
    for _ in range(n):
        length = int(rng.integers(3, 12))
        lines.append(" ".join(rng.choice(words, size=length)))
    return lines


def build_tokenizer(vocab_size: int = 400, seed: int = 0) -> Tokenizer:
    """A byte-level BPE tokenizer with CLIP's specials, lower-casing like CLIP's."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(" +", " "), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],
        # Every byte is in the vocabulary, so no text ever loses characters to an unknown token.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(np.random.default_rng(seed)), trainer=trainer)
    bos, eos = tokenizer.token_to_id(BOS), tokenizer.token_to_id(EOS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, bos), (EOS, eos)]
    )
    return tokenizer


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _init(name: str, array: NDArray[Any]) -> TensorProto:
    return numpy_helper.from_array(array, name)


def build_visual_graph(
    rng: np.random.Generator, *, dim: int, image_size: int, patch: int, width: int
) -> onnx.ModelProto:
    scale = 1.0 / np.sqrt(3 * patch * patch)
    conv_w = (rng.standard_normal((width, 3, patch, patch)) * scale).astype(np.float32)
    conv_b = (rng.standard_normal(width) * 0.1).astype(np.float32)
    proj = (rng.standard_normal((width, dim)) / np.sqrt(width)).astype(np.float32)
    nodes = [
        helper.make_node(
            "Conv",
            ["image", "patch.w", "patch.b"],
            ["patches"],
            kernel_shape=[patch, patch],
            strides=[patch, patch],
        ),
        helper.make_node("Relu", ["patches"], ["act"]),
        helper.make_node("GlobalAveragePool", ["act"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "proj"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_clip_visual",
        [
            helper.make_tensor_value_info(
                "image", TensorProto.FLOAT, ["batch", 3, image_size, image_size]
            )
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        initializer=[_init("patch.w", conv_w), _init("patch.b", conv_b), _init("proj", proj)],
    )
    return _model(graph)


def build_textual_graph(
    rng: np.random.Generator,
    *,
    dim: int,
    vocab_size: int,
    context_length: int,
    width: int,
    pad_id: int,
) -> onnx.ModelProto:
    table = rng.standard_normal((vocab_size, width)).astype(np.float32)
    proj = (rng.standard_normal((width, dim)) / np.sqrt(width)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["token_embedding", "text"], ["tokens"], axis=0),  # (N,L,W)
        helper.make_node("Equal", ["text", "pad_id"], ["is_pad"]),
        helper.make_node("Not", ["is_pad"], ["keep"]),
        helper.make_node("Cast", ["keep"], ["mask"], to=TensorProto.FLOAT),  # (N,L)
        helper.make_node("Unsqueeze", ["mask", "axis_last"], ["mask3"]),  # (N,L,1)
        helper.make_node("Mul", ["tokens", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis_seq"], ["summed"], keepdims=0),  # (N,W)
        helper.make_node("ReduceSum", ["mask", "axis_seq"], ["count"], keepdims=1),  # (N,1)
        helper.make_node("Max", ["count", "one"], ["count_safe"]),
        helper.make_node("Div", ["summed", "count_safe"], ["mean"]),
        helper.make_node("MatMul", ["mean", "proj"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_clip_textual",
        [helper.make_tensor_value_info("text", TensorProto.INT64, ["batch", context_length])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        initializer=[
            _init("token_embedding", table),
            _init("proj", proj),
            _init("pad_id", np.array(pad_id, dtype=np.int64)),
            _init("axis_last", np.array([2], dtype=np.int64)),
            _init("axis_seq", np.array([1], dtype=np.int64)),
            _init("one", np.array(1.0, dtype=np.float32)),
        ],
    )
    return _model(graph)


def build_tiny_clip(
    out_dir: Path,
    *,
    dim: int = 64,
    name: str = "tiny-clip",
    image_size: int = 32,
    context_length: int = 16,
    seed: int = 0,
) -> Path:
    """Write a complete, valid CLIP model directory to `out_dir` (created) and return it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tokenizer = build_tokenizer(seed=seed)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    pad_id = tokenizer.token_to_id(PAD)
    assert pad_id is not None
    visual = build_visual_graph(rng, dim=dim, image_size=image_size, patch=8, width=48)
    textual = build_textual_graph(
        rng,
        dim=dim,
        vocab_size=tokenizer.get_vocab_size(),
        context_length=context_length,
        width=32,
        pad_id=pad_id,
    )
    onnx.save(visual, str(out_dir / "visual.onnx"))
    onnx.save(textual, str(out_dir / "textual.onnx"))
    write_manifest(
        out_dir,
        name=name,
        kind="clip",
        dim=dim,
        files={"visual": "visual.onnx", "textual": "textual.onnx", "tokenizer": "tokenizer.json"},
        preprocess=PreprocessConfig(
            size=image_size, mean=CLIP_MEAN, std=CLIP_STD, resize_mode="shortest"
        ),
        text=TextConfig(context_length=context_length, pad_token=PAD),
        source=f"lookalike.embedding.testing.build_tiny_clip(seed={seed}): random weights",
        licence="Apache-2.0",
        notes="Test model: real graphs and tokenizer, meaningless weights.",
    )
    return out_dir


def build_late_interaction_visual_graph(
    rng: np.random.Generator, *, dim: int, image_size: int, patch: int, width: int
) -> onnx.ModelProto:
    """image (N,3,S,S) -> patchify Conv -> ReLU -> (N,P,W) + position embedding -> linear:
    one `dim`-vector per patch, (N, P, dim), not normalised (the embedder does that)."""
    patches = (image_size // patch) ** 2
    scale = 1.0 / np.sqrt(3 * patch * patch)
    conv_w = (rng.standard_normal((width, 3, patch, patch)) * scale).astype(np.float32)
    conv_b = (rng.standard_normal(width) * 0.1).astype(np.float32)
    position = (rng.standard_normal((patches, width)) * 0.1).astype(np.float32)
    proj = (rng.standard_normal((width, dim)) / np.sqrt(width)).astype(np.float32)
    nodes = [
        helper.make_node(
            "Conv",
            ["image", "patch.w", "patch.b"],
            ["grid"],
            kernel_shape=[patch, patch],
            strides=[patch, patch],
        ),
        helper.make_node("Relu", ["grid"], ["act"]),  # (N,W,h,w)
        helper.make_node("Reshape", ["act", "flat_shape"], ["flat"]),  # (N,W,P)
        helper.make_node("Transpose", ["flat"], ["rows"], perm=[0, 2, 1]),  # (N,P,W)
        helper.make_node("Add", ["rows", "position"], ["placed"]),
        helper.make_node("MatMul", ["placed", "proj"], ["embedding"]),  # (N,P,dim)
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_late_interaction_visual",
        [
            helper.make_tensor_value_info(
                "image", TensorProto.FLOAT, ["batch", 3, image_size, image_size]
            )
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", patches, dim])],
        initializer=[
            _init("patch.w", conv_w),
            _init("patch.b", conv_b),
            _init("flat_shape", np.array([0, width, -1], dtype=np.int64)),
            _init("position", position),
            _init("proj", proj),
        ],
    )
    return _model(graph)


def build_late_interaction_textual_graph(
    rng: np.random.Generator,
    *,
    dim: int,
    vocab_size: int,
    context_length: int | None,
    width: int,
    pad_id: int,
    mask_output: bool,
) -> onnx.ModelProto:
    """text (N,T) int64 -> token embedding Gather -> linear: one `dim`-vector per position,
    (N, T, dim), padding included; with `mask_output` also `mask` (N,T), 0 at padding.
    `context_length` None leaves the sequence length free."""
    table = rng.standard_normal((vocab_size, width)).astype(np.float32)
    proj = (rng.standard_normal((width, dim)) / np.sqrt(width)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["token_embedding", "text"], ["tokens"], axis=0),  # (N,T,W)
        helper.make_node("MatMul", ["tokens", "proj"], ["embedding"]),  # (N,T,dim)
    ]
    initializers = [_init("token_embedding", table), _init("proj", proj)]
    seq: str | int = context_length if context_length is not None else "seq"
    outputs = [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", seq, dim])]
    if mask_output:
        nodes += [
            helper.make_node("Equal", ["text", "pad_id"], ["is_pad"]),
            helper.make_node("Not", ["is_pad"], ["keep"]),
            helper.make_node("Cast", ["keep"], ["mask"], to=TensorProto.FLOAT),
        ]
        initializers.append(_init("pad_id", np.array(pad_id, dtype=np.int64)))
        outputs.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", seq]))
    graph = helper.make_graph(
        nodes,
        "tiny_late_interaction_textual",
        [helper.make_tensor_value_info("text", TensorProto.INT64, ["batch", seq])],
        outputs,
        initializer=initializers,
    )
    return _model(graph)


def build_tiny_late_interaction_model(
    out_dir: Path,
    *,
    dim: int = 32,
    name: str = "tiny-late-interaction",
    image_size: int = 32,
    patch: int = 8,
    context_length: int = 16,
    fixed_length: bool = True,
    mask_output: bool = True,
    seed: int = 0,
) -> Path:
    """Write a complete, valid late-interaction (ColPali-style) model directory to `out_dir`
    (created) and return it: (image_size / patch)^2 patch vectors per image, one vector per
    token, the tiny CLIP's tokenizer. `fixed_length` False exports the textual graph with a free
    sequence length; `mask_output` False leaves its `mask` output out. Random weights."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tokenizer = build_tokenizer(seed=seed)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    pad_id = tokenizer.token_to_id(PAD)
    assert pad_id is not None
    visual = build_late_interaction_visual_graph(
        rng, dim=dim, image_size=image_size, patch=patch, width=48
    )
    textual = build_late_interaction_textual_graph(
        rng,
        dim=dim,
        vocab_size=tokenizer.get_vocab_size(),
        context_length=context_length if fixed_length else None,
        width=32,
        pad_id=pad_id,
        mask_output=mask_output,
    )
    onnx.save(visual, str(out_dir / "visual.onnx"))
    onnx.save(textual, str(out_dir / "textual.onnx"))
    write_manifest(
        out_dir,
        name=name,
        kind="late_interaction",
        dim=dim,
        files={"visual": "visual.onnx", "textual": "textual.onnx", "tokenizer": "tokenizer.json"},
        preprocess=PreprocessConfig(
            size=image_size, mean=CLIP_MEAN, std=CLIP_STD, resize_mode="shortest"
        ),
        text=TextConfig(context_length=context_length, pad_token=PAD),
        source=(
            f"lookalike.embedding.testing.build_tiny_late_interaction_model(seed={seed}): "
            "random weights"
        ),
        licence="Apache-2.0",
        notes="Test model: real graphs and tokenizer, meaningless weights.",
    )
    return out_dir


def write_hub_layout(model_dir: Path, out_dir: Path) -> Path:
    """Lay a CLIP model directory out the way the published ONNX exports are on the model hub
    (what `registry` downloads): `visual/model.onnx`, `visual/preprocess_cfg.json`,
    `textual/model.onnx`, `textual/tokenizer.json`, `textual/tokenizer_config.json`,
    `config.json`. For serving a tiny model from a local HTTP server in tests."""
    manifest = json.loads((model_dir / "manifest.json").read_text(encoding="utf-8"))
    (out_dir / "visual").mkdir(parents=True, exist_ok=True)
    (out_dir / "textual").mkdir(parents=True, exist_ok=True)
    files = manifest["files"]
    (out_dir / "visual" / "model.onnx").write_bytes(
        (model_dir / files["visual"]["path"]).read_bytes()
    )
    (out_dir / "textual" / "model.onnx").write_bytes(
        (model_dir / files["textual"]["path"]).read_bytes()
    )
    (out_dir / "textual" / "tokenizer.json").write_bytes(
        (model_dir / files["tokenizer"]["path"]).read_bytes()
    )
    pre = manifest["preprocess"]
    (out_dir / "visual" / "preprocess_cfg.json").write_text(
        json.dumps(
            {
                "size": [pre["size"], pre["size"]],
                "mode": "RGB",
                "mean": pre["mean"],
                "std": pre["std"],
                "interpolation": pre.get("interpolation", "bicubic"),
                "resize_mode": {"pad": "longest"}.get(
                    pre.get("resize_mode"), pre.get("resize_mode")
                ),
                "fill_color": 0,
            }
        )
    )
    text = manifest["text"]
    (out_dir / "textual" / "tokenizer_config.json").write_text(
        json.dumps(
            {"pad_token": text.get("pad_token", PAD), "model_max_length": text["context_length"]}
        )
    )
    (out_dir / "config.json").write_text(
        json.dumps(
            {
                "embed_dim": manifest["dim"],
                "vision_cfg": {"image_size": pre["size"]},
                "text_cfg": {"context_length": text["context_length"]},
            }
        )
    )
    return out_dir
