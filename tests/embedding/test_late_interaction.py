"""Late-interaction (ColPali-style) models: the tiny model's graphs, the embedder's patch and token
multivectors (unit rows, no padding), the pooled vectors, and the MaxSim score."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image
from tokenizers import Tokenizer

from lookalike.core.errors import InvalidInput, ModelUnavailable
from lookalike.embedding import ModelDir, list_models, open_embedder
from lookalike.embedding.late_interaction import (
    LateInteractionEmbedder,
    maxsim,
    patches_vector_for,
    pool,
)
from lookalike.embedding.testing import PAD, build_tiny_clip, build_tiny_late_interaction_model

from .conftest import sample, settings_for

DIM = 24
SIZE = 32
PATCH = 8
PATCHES = (SIZE // PATCH) ** 2
CONTEXT = 16


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_late_interaction_model(
        tmp_path_factory.mktemp("li") / "tiny-li", dim=DIM, image_size=SIZE, patch=PATCH
    )


@pytest.fixture(scope="module")
def embedder(model_dir: Path) -> LateInteractionEmbedder:
    return LateInteractionEmbedder(ModelDir.open(model_dir), batch_size=3, threads=1)


def _pixels(embedder: LateInteractionEmbedder, *names: str) -> np.ndarray:
    return np.stack([embedder.preprocess(sample(name)) for name in names])


def test_graphs_give_a_vector_per_patch_and_per_token(model_dir: Path) -> None:
    visual = ort.InferenceSession(str(model_dir / "visual.onnx"))
    out = visual.run(None, {"image": np.zeros((1, 3, SIZE, SIZE), np.float32)})
    assert out[0].shape == (1, PATCHES, DIM)
    textual = ort.InferenceSession(str(model_dir / "textual.onnx"))
    assert [o.name for o in textual.get_outputs()] == ["embedding", "mask"]
    ids = np.zeros((2, CONTEXT), np.int64)
    embedding, mask = textual.run(None, {"text": ids})
    assert embedding.shape == (2, CONTEXT, DIM)
    assert mask.shape == (2, CONTEXT)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["kind"] == "late_interaction"
    assert manifest["dim"] == DIM


def test_patch_vectors_are_unit_rows_and_pool_to_the_global_vector(
    embedder: LateInteractionEmbedder, model_dir: Path
) -> None:
    batch = _pixels(embedder, "astronaut", "coffee", "chelsea", "rocket")
    pooled, patches = embedder.embed_patches(batch)  # batch_size 3: two graph runs
    assert patches.shape == (4, PATCHES, DIM)
    assert patches.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(patches, axis=2), 1.0, atol=1e-5)
    # The graph's own rows, normalised: nothing reordered or mixed between images.
    raw = ort.InferenceSession(str(model_dir / "visual.onnx")).run(None, {"image": batch})[0]
    expected = raw / np.linalg.norm(raw, axis=2, keepdims=True)
    np.testing.assert_allclose(patches, expected, atol=1e-5)
    mean = expected.mean(axis=1)
    np.testing.assert_allclose(
        pooled, mean / np.linalg.norm(mean, axis=1, keepdims=True), atol=1e-5
    )
    np.testing.assert_allclose(embedder.embed_preprocessed(batch), pooled, atol=1e-6)
    np.testing.assert_allclose(embedder.embed_images([sample("coffee")]), pooled[1:2], atol=1e-6)
    assert not np.allclose(patches[0], patches[1])


def test_text_tokens_leave_padding_out(embedder: LateInteractionEmbedder, model_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    short, long = "cat", "a photo of an old tabby cat sitting on the table"
    unpadded = tokenizer.encode(short).ids
    alone = embedder.embed_text_tokens([short])[0]
    assert alone.shape == (len(unpadded), DIM)  # start, the word's tokens, end: no pad rows
    np.testing.assert_allclose(np.linalg.norm(alone, axis=1), 1.0, atol=1e-5)
    # Batched with a longer text (so padded further), the short text's vectors do not change.
    together = embedder.embed_text_tokens([long, short])
    np.testing.assert_allclose(together[1], alone, atol=1e-6)
    assert len(together[0]) == min(len(tokenizer.encode(long).ids), CONTEXT)
    # Exactly the graph's rows at the token positions.
    ids = np.full((1, CONTEXT), tokenizer.token_to_id(PAD), np.int64)
    ids[0, : len(unpadded)] = unpadded
    session = ort.InferenceSession(str(model_dir / "textual.onnx"))
    raw = session.run(["embedding"], {"text": ids})[0][0]
    rows = raw[: len(unpadded)] / np.linalg.norm(raw[: len(unpadded)], axis=1, keepdims=True)
    np.testing.assert_allclose(alone, rows, atol=1e-5)
    # The pad rows are real vectors: scoring with them would give another score.
    pads = raw[len(unpadded) :] / np.linalg.norm(raw[len(unpadded) :], axis=1, keepdims=True)
    _, patches = embedder.embed_patches(_pixels(embedder, "astronaut"))
    with_pads = np.concatenate([rows, pads])
    assert abs(maxsim(with_pads, patches[0]) - maxsim(alone, patches[0])) > 1e-3


def test_pooled_text_vector_is_the_normalised_token_mean(
    embedder: LateInteractionEmbedder,
) -> None:
    texts = ["a red rocket", "a small dog on the street"]
    pooled = embedder.embed_texts(texts)
    assert pooled.shape == (2, DIM)
    for vector, tokens in zip(pooled, embedder.embed_text_tokens(texts), strict=True):
        mean = tokens.mean(axis=0)
        np.testing.assert_allclose(vector, mean / np.linalg.norm(mean), atol=1e-5)
    assert embedder.embed_texts([]).shape == (0, DIM)
    with pytest.raises(InvalidInput, match="not a string"):
        embedder.embed_text_tokens("cat")


@pytest.mark.parametrize(
    ("fixed_length", "mask_output"), [(False, True), (True, False), (False, False)]
)
def test_free_length_and_maskless_graphs_give_the_same_tokens(
    tmp_path: Path, embedder: LateInteractionEmbedder, fixed_length: bool, mask_output: bool
) -> None:
    variant = build_tiny_late_interaction_model(
        tmp_path / "variant",
        dim=DIM,
        image_size=SIZE,
        patch=PATCH,
        fixed_length=fixed_length,
        mask_output=mask_output,
    )
    other = LateInteractionEmbedder(ModelDir.open(variant), batch_size=3, threads=1)
    texts = ["cat", "a photo of an old tabby cat sitting on the table", "red sky at night"]
    for got, want in zip(
        other.embed_text_tokens(texts), embedder.embed_text_tokens(texts), strict=True
    ):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_maxsim_is_the_mean_best_similarity(embedder: LateInteractionEmbedder) -> None:
    query = embedder.embed_text_tokens(["an astronaut in a space suit"])[0]
    _, patches = embedder.embed_patches(_pixels(embedder, "astronaut", "coffee"))
    for document in patches:
        reference = np.mean(
            [max(float(np.dot(q, d)) for d in document) for q in query.astype(np.float64)]
        )
        assert maxsim(query, document) == pytest.approx(reference, abs=1e-6)
    # An image's own patches match it perfectly.
    assert maxsim(patches[0], patches[0]) == pytest.approx(1.0, abs=1e-5)
    assert maxsim(patches[1], patches[0]) < 0.999


def test_open_embedder_and_model_list_know_the_kind(
    model_dir: Path, tmp_path: Path, embedder: LateInteractionEmbedder
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny-li").symlink_to(model_dir, target_is_directory=True)
    settings = settings_for(models, tmp_path / "data", model="tiny-li")
    opened = open_embedder(ModelDir.open(models / "tiny-li"), settings)
    assert isinstance(opened, LateInteractionEmbedder)
    assert opened.multivector and opened.supports_text
    assert opened.dim == DIM and opened.model_id == embedder.model_id
    (info,) = [m for m in list_models(settings) if m.name == "tiny-li"]
    assert (info.kind, info.dim, info.supports_text, info.cached) == (
        "late_interaction",
        DIM,
        True,
        True,
    )


def test_one_vector_models_refuse_multivector_calls(tmp_path: Path) -> None:
    clip = open_embedder(
        ModelDir.open(build_tiny_clip(tmp_path / "clip", dim=16)),
        settings_for(tmp_path, tmp_path / "data"),
    )
    assert not clip.multivector
    with pytest.raises(ModelUnavailable, match="not one per patch"):
        clip.embed_patches(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(ModelUnavailable, match="not one per token"):
        clip.embed_text_tokens(["cat"])


def test_a_late_interaction_manifest_needs_the_text_tower(model_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    manifest = json.loads((model_dir / "manifest.json").read_text())
    del manifest["text"]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelUnavailable, match="'late_interaction' model needs a 'text' section"):
        ModelDir.open(broken, verify=False)


def test_graph_of_the_wrong_width_is_refused(model_dir: Path, tmp_path: Path) -> None:
    manifest = json.loads((model_dir / "manifest.json").read_text())
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    for entry in manifest["files"].values():
        (wrong / entry["path"]).write_bytes((model_dir / entry["path"]).read_bytes())
    (wrong / "manifest.json").write_text(json.dumps({**manifest, "dim": DIM + 1}))
    other = LateInteractionEmbedder(ModelDir.open(wrong, verify=False))
    with pytest.raises(ModelUnavailable, match=r"must give \(1, rows, 25\)"):
        other.embed_patches(np.zeros((1, 3, SIZE, SIZE), np.float32))


def test_patches_vector_only_for_late_interaction_collections() -> None:
    assert patches_vector_for("tiny_li_abc", {"late_interaction": True}) == "tiny_li_abc-patches"
    assert patches_vector_for("tiny_li_abc", {"late_interaction": False}) is None
    assert patches_vector_for("clip_abc", {"use_crops": True}) is None
    assert patches_vector_for("clip_abc", None) is None


def test_pool_of_unit_rows() -> None:
    rows = np.array([[[1.0, 0.0], [0.0, 1.0]]], np.float32)
    np.testing.assert_allclose(pool(rows), [[2**-0.5, 2**-0.5]], atol=1e-6)


def test_a_blank_image_still_gets_finite_vectors(embedder: LateInteractionEmbedder) -> None:
    blank = embedder.preprocess(Image.new("RGB", (40, 40), (0, 0, 0)))[None]
    pooled, patches = embedder.embed_patches(blank)
    assert np.isfinite(pooled).all() and np.isfinite(patches).all()
