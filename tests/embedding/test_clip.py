"""The CLIP code path, run for real on the tiny test model: tokenizer, text and image towers."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from lookalike.core.errors import InvalidInput
from lookalike.embedding import ClipEmbedder, ModelDir
from lookalike.embedding.testing import BOS, EOS, PAD

from .conftest import sample

TEXTS = [
    "a photo of a cat",
    "A PHOTO OF A CAT",
    "a red rocket at night",
    "",
    "espresso in a small white cup on a table",
    "café ☕ 東京",
    "a very long caption " * 20,
]


@pytest.fixture
def clip(tiny_clip_dir: Path) -> ClipEmbedder:
    return ClipEmbedder(ModelDir.open(tiny_clip_dir), batch_size=3, threads=1)


def test_tokenizer_file_is_a_real_bpe_tokenizer(tiny_clip_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(tiny_clip_dir / "tokenizer.json"))
    encoding = tokenizer.encode("A Photo of a CAT")
    assert encoding.tokens[0] == BOS
    assert encoding.tokens[-1] == EOS
    assert tokenizer.encode("a photo of a cat").ids == encoding.ids  # lower-cased
    # Learned merges: common words are single tokens, not letters.
    assert len(encoding.ids) < len("a photo of a cat")


def test_tokenize_pads_and_truncates_to_context_length(clip: ClipEmbedder) -> None:
    ids = clip.tokenize(["a cat", "word " * 50])
    assert ids.shape == (2, clip.context_length)
    assert ids.dtype == np.int64
    tokenizer = Tokenizer.from_file(str(clip.model_dir.file("tokenizer")))
    bos, eos, pad = (tokenizer.token_to_id(t) for t in (BOS, EOS, PAD))
    short, long = ids
    assert short[0] == bos
    n = int(np.flatnonzero(short == eos)[0])
    assert (short[n + 1 :] == pad).all()
    # Truncation keeps the end-of-text token, where CLIP reads the sentence.
    assert long[0] == bos
    assert long[-1] == eos
    assert pad not in long


def test_text_vectors(clip: ClipEmbedder) -> None:
    vectors = clip.embed_texts(TEXTS)
    assert vectors.shape == (len(TEXTS), 64)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)  # case-insensitive
    assert float(vectors[0] @ vectors[2]) < 0.999  # different texts differ
    again = clip.embed_texts([TEXTS[0]])[0]
    np.testing.assert_allclose(again, vectors[0], atol=1e-6)  # deterministic


@pytest.mark.parametrize("n", [1, 3, 7, 10])
def test_batching_does_not_change_vectors(clip: ClipEmbedder, n: int) -> None:
    texts = [f"a photo of {i} cats on a table" for i in range(n)]
    together = clip.embed_texts(texts)
    one_at_a_time = np.concatenate([clip.embed_texts([t]) for t in texts])
    np.testing.assert_allclose(together, one_at_a_time, atol=1e-6)
    images = [sample("chelsea").rotate(10 * i) for i in range(n)]
    together_images = clip.embed_images(images)
    np.testing.assert_allclose(
        together_images, np.concatenate([clip.embed_images([im]) for im in images]), atol=1e-5
    )


def test_image_vectors(clip: ClipEmbedder) -> None:
    vectors = clip.embed_images([sample("chelsea"), sample("coffee")])
    assert vectors.shape == (2, 64)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert clip.embed_images([]).shape == (0, 64)
    assert clip.supports_text
    assert clip.vector_name.startswith("tiny_clip_")


def test_bad_text_input(clip: ClipEmbedder) -> None:
    with pytest.raises(InvalidInput, match="list of strings"):
        clip.embed_texts("a cat")
    with pytest.raises(InvalidInput, match="strings"):
        clip.embed_texts([b"bytes"])  # type: ignore[list-item]
    with pytest.raises(InvalidInput, match="longer than"):
        clip.embed_texts(["x" * 10_000])
    assert clip.embed_texts([]).shape == (0, 64)


def test_concurrent_first_use_loads_once(clip: ClipEmbedder) -> None:
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(clip.embed_texts(["a cat"]))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(np.allclose(r, results[0]) for r in results)
    session = clip._textual
    clip.load()
    assert clip._textual is session, "a second load must reuse the session"
