"""int8 variants: a new model directory with its own id, vectors close to the float model's."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.core.errors import Conflict
from lookalike.embedding import load_embedder
from lookalike.embedding.quantize import quantize_model
from support import make_settings


def test_quantized_clip_is_its_own_model(tmp_path: Path, models_dir: Path, tiny_clip: str) -> None:
    cache = tmp_path / "models"
    shutil.copytree(models_dir / tiny_clip, cache / tiny_clip)
    settings = make_settings(tmp_path / "data", cache)
    path = quantize_model(settings, tiny_clip)
    assert path.name == f"{tiny_clip}-int8"
    with pytest.raises(Conflict):
        quantize_model(settings, tiny_clip)

    base = load_embedder(settings, tiny_clip)
    fast = load_embedder(settings, f"{tiny_clip}-int8")
    assert fast.model_id != base.model_id
    assert (fast.dim, fast.supports_text) == (base.dim, True)
    images = [
        Image.radial_gradient("L").convert("RGB"),
        Image.linear_gradient("L").convert("RGB").rotate(30),
    ]
    texts = ["a red shoe", "two cats on a sofa"]
    for a, b in (
        (base.embed_images(images), fast.embed_images(images)),
        (base.embed_texts(texts), fast.embed_texts(texts)),
    ):
        cosine = np.sum(a * b, axis=1)
        assert np.all(cosine > 0.95), cosine
        assert not np.allclose(a, b)  # it really is a different graph
