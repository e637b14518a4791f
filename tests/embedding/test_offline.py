"""The offline model: reading the torch weights without torch, the ONNX conversion, the cache,
and a check that the converted network still is an ImageNet classifier."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from lookalike.core.errors import ModelUnavailable, TextSearchUnavailable
from lookalike.embedding import ImageEmbedder, ImagePreprocessor, ModelDir, ensure_offline_model
from lookalike.embedding.offline import (
    CONVERSION_VERSION,
    EMBEDDING_DIM,
    PREPROCESS,
    build_graph,
    imagenet_top_k,
    read_legacy_state_dict,
    weights_path,
)
from lookalike.embedding.sessions import ort_session

from .conftest import sample

# ImageNet-1k classes a correct classifier must rank in its top 5 for each sample photo.
EXPECTED_CLASSES = {
    "chelsea": {281, 282, 285},  # tabby, tiger cat, Egyptian cat
    "coffee": {967, 968},  # espresso, cup
    "motorcycle": {665, 670},  # moped, motor scooter
    "rocket": {657, 744, 812},  # missile, projectile, space shuttle
}


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    return read_legacy_state_dict(weights_path())


def test_reads_legacy_torch_file_without_torch(state: dict[str, np.ndarray]) -> None:
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_conv_stem.weight"].dtype == np.float32
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_bn1.num_batches_tracked"].dtype == np.int64
    assert np.isfinite(state["_conv_head.weight"]).all()
    assert not any("_se_" in key for key in state), "Lite models have no squeeze-excite"


def _legacy_file(path: Path, payload: object) -> Path:
    with path.open("wb") as f:
        pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True}, f, protocol=2)
        pickle.dump(payload, f, protocol=2)
        pickle.dump([], f, protocol=2)
    return path


class _Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo should-never-run",))


def test_restricted_unpickler_refuses_code(tmp_path: Path) -> None:
    path = _legacy_file(tmp_path / "evil.pth", {"weight": _Exploit()})
    with pytest.raises(ModelUnavailable, match=r"global (posix|os|nt)\.system is not allowed"):
        read_legacy_state_dict(path)


def test_rejects_files_that_are_not_legacy_torch(tmp_path: Path) -> None:
    (tmp_path / "zip.pth").write_bytes(b"PK\x03\x04 not a pickle")
    with pytest.raises(ModelUnavailable, match="cannot read torch weights"):
        read_legacy_state_dict(tmp_path / "zip.pth")
    path = _legacy_file(tmp_path / "list.pth", [1, 2, 3])
    with pytest.raises(ModelUnavailable, match="expected a state dict"):
        read_legacy_state_dict(path)


def test_conversion_is_cached_and_reused(tmp_path: Path) -> None:
    first = ensure_offline_model(tmp_path)
    graph = first.file("visual")
    mtime = graph.stat().st_mtime_ns
    second = ensure_offline_model(tmp_path)
    assert second.manifest == first.manifest
    assert graph.stat().st_mtime_ns == mtime, "the cached directory was rebuilt"
    assert first.manifest.version == CONVERSION_VERSION
    assert first.manifest.kind == "image"
    assert first.manifest.dim == EMBEDDING_DIM
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".efficientnet")]


def test_broken_cache_is_rebuilt(tmp_path: Path) -> None:
    model = ensure_offline_model(tmp_path)
    model.file("visual").write_bytes(b"truncated")
    rebuilt = ensure_offline_model(tmp_path)
    assert rebuilt.manifest.model_id == model.manifest.model_id
    assert ModelDir.open(rebuilt.path).file("visual").stat().st_size > 1_000_000


def test_conversion_is_deterministic(tmp_path: Path, offline_model: ModelDir) -> None:
    again = ensure_offline_model(tmp_path)
    assert again.manifest.model_id == offline_model.manifest.model_id


def test_classifier_top5_on_sample_photos(offline_model: ModelDir) -> None:
    session = ort_session(offline_model.file("visual"), threads=2)
    pre = ImagePreprocessor(offline_model.manifest.preprocess)
    names = list(EXPECTED_CLASSES)
    batch = np.stack([pre(sample(name)) for name in names])
    (logits,) = session.run({"image": batch}, ["logits"])
    for name, top5 in zip(names, imagenet_top_k(logits, 5), strict=True):
        assert EXPECTED_CLASSES[name] & set(top5), f"{name}: top-5 {top5}"
    # And confidently right where the photo is unambiguous.
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    for name, row in zip(names, probs, strict=True):
        if name in ("chelsea", "coffee", "motorcycle"):
            assert row[list(EXPECTED_CLASSES[name])].sum() > 0.6, name


@pytest.mark.slow
def test_chosen_padding_and_normalisation_fit_the_weights_best(
    state: dict[str, np.ndarray],
) -> None:
    """Rerun the experiment that picked TF SAME padding and [-1, 1] inputs (see offline.py)."""
    rng = np.random.default_rng(0)
    crops: list[tuple[Image.Image, set[int]]] = []
    for name, classes in EXPECTED_CLASSES.items():
        image = sample(name)
        width, height = image.size
        for _ in range(12):
            scale = rng.uniform(0.6, 1.0)
            w, h = int(width * scale), int(height * scale)
            x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            crop = image.crop((x, y, x + w, y + h))
            if rng.random() < 0.5:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            crops.append((crop, classes))
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    half = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    nll: dict[tuple[str, str], float] = {}
    for padding in ("same", "symmetric"):
        graph = build_graph(state, padding=padding)
        session = ort.InferenceSession(
            graph.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        for label, (mean, std) in {"half": half, "imagenet": imagenet}.items():
            pre = ImagePreprocessor(PREPROCESS.model_copy(update={"mean": mean, "std": std}))
            logits = session.run(["logits"], {"image": np.stack([pre(c) for c, _ in crops])})[0]
            logp = logits - logits.max(axis=1, keepdims=True)
            logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
            nll[(padding, label)] = float(
                np.mean(
                    [
                        -np.log(np.exp(row[list(c)]).sum())
                        for row, (_, c) in zip(logp, crops, strict=True)
                    ]
                )
            )
    assert min(nll, key=nll.__getitem__) == ("same", "half"), nll
    assert PREPROCESS.mean == half[0]


def test_embeddings(offline_model: ModelDir) -> None:
    embedder = ImageEmbedder(offline_model, batch_size=3, threads=2)
    assert embedder.dim == 1280
    assert not embedder.supports_text
    assert embedder.vector_name.startswith("efficientnet_lite0_")
    cat, coffee = sample("chelsea"), sample("coffee")
    flipped = cat.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    smaller = cat.resize((cat.width // 2, cat.height // 2))
    vectors = embedder.embed_images([cat, coffee, flipped, smaller, cat])
    assert vectors.shape == (5, 1280)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    sims = vectors @ vectors[0]
    assert sims[2] > sims[1] + 0.2, "a mirrored cat must be nearer the cat than coffee is"
    assert sims[3] > 0.9, "the same photo at half size must stay very close"
    np.testing.assert_allclose(vectors[4], vectors[0], atol=1e-5)
    # Batching does not change results: batch of 5 with batch_size 3 == one at a time.
    one_by_one = np.concatenate([embedder.embed_images([im]) for im in [cat, coffee, flipped]])
    np.testing.assert_allclose(one_by_one, vectors[:3], atol=1e-5)


def test_image_only_model_refuses_text_with_a_fix(offline_model: ModelDir) -> None:
    embedder = ImageEmbedder(offline_model)
    with pytest.raises(TextSearchUnavailable) as info:
        embedder.embed_texts(["a cat"])
    message = str(info.value)
    assert "image-only" in message
    assert "lookalike model pull clip-vit-b-32-laion2b" in message
    assert "lookalike[export]" in message
    assert info.value.status == 422


def test_wrong_batch_shape_is_invalid_input(offline_model: ModelDir) -> None:
    from lookalike.core.errors import InvalidInput

    embedder = ImageEmbedder(offline_model)
    with pytest.raises(InvalidInput, match=r"\(N, 3, 224, 224\)"):
        embedder.embed_preprocessed(np.zeros((2, 3, 100, 100), dtype=np.float32))
    assert embedder.embed_preprocessed(np.zeros((0, 3, 224, 224), dtype=np.float32)).shape == (
        0,
        1280,
    )
