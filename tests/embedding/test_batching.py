"""Concurrent queries are embedded together, with the same vectors as one by one."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.core.errors import TextSearchUnavailable
from lookalike.embedding import load_embedder
from lookalike.embedding.base import Embedder, Vectors
from lookalike.embedding.batching import QueryBatcher
from support import make_settings


class _Counting:
    """The real model, recording the size of each call."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.text_calls: list[int] = []

    def embed_texts(self, texts: Sequence[str]) -> Vectors:
        self.text_calls.append(len(texts))
        return self.inner.embed_texts(texts)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_concurrent_texts_share_calls(tmp_path: Path, models_dir: Path, tiny_clip: str) -> None:
    embedder = load_embedder(make_settings(tmp_path, models_dir), tiny_clip)
    counting = _Counting(embedder)
    batcher = QueryBatcher(counting, max_batch=8)  # type: ignore[arg-type]
    texts = [f"photo number {i}" for i in range(32)]
    results: dict[int, np.ndarray] = {}
    start = threading.Barrier(len(texts))

    def query(i: int) -> None:
        start.wait()
        results[i] = batcher.embed_text(texts[i])

    threads = [threading.Thread(target=query, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    expected = embedder.embed_texts(texts)
    for i in range(len(texts)):
        np.testing.assert_allclose(results[i], expected[i], atol=1e-5)
    assert sum(counting.text_calls) == len(texts)
    assert max(counting.text_calls) <= 8
    assert len(counting.text_calls) < len(texts)  # some calls carried several queries


def test_errors_reach_every_caller(tmp_path: Path, models_dir: Path) -> None:
    embedder = load_embedder(make_settings(tmp_path, models_dir), "efficientnet-lite0")
    batcher = QueryBatcher(embedder)
    with pytest.raises(TextSearchUnavailable):
        batcher.embed_text("a cat")
    image = Image.linear_gradient("L").convert("RGB")
    np.testing.assert_allclose(
        batcher.embed_image(image), embedder.embed_images([image])[0], atol=1e-5
    )
    batcher.close()
