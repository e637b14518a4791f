"""The hosted embedding providers (Doubao, OpenAI-compatible) against a local stand-in server
that speaks their documented API (tests/provider_standin.py): requests as documented, vectors
as answered, and each way the service can fail."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.core.config import Settings
from lookalike.core.errors import (
    EmbeddingProviderError,
    EmbeddingProviderMisconfigured,
    EmbeddingProviderUnavailable,
    ImageEmbeddingUnsupported,
    Misconfigured,
)
from lookalike.embedding import Models
from lookalike.embedding.providers import DoubaoEmbedder, OpenAIEmbedder, TokenBucket
from provider_standin import DOUBAO_MODEL, KEY, OPENAI_MODEL, ProviderStandIn, provider_standin
from support import free_port, make_settings, open_image


@pytest.fixture(scope="module")
def standin() -> Iterator[ProviderStandIn]:
    with provider_standin() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(standin: ProviderStandIn) -> None:
    standin.reset()
    standin.fail_next(0, "ok")


def doubao_settings(tmp_path: Path, models_dir: Path, url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "doubao_url": url,
        "doubao_api_key": KEY,
        "provider_retries": 2,
        "provider_retry_backoff_s": 0.01,
        "provider_timeout_s": 0.5,
        "provider_connect_timeout_s": 0.5,
        "provider_rate_limit_per_s": 0,
        "provider_image_size": 256,
    }
    values.update(overrides)
    return make_settings(tmp_path / "data", models_dir, **values)


@pytest.fixture
def doubao(tmp_path: Path, models_dir: Path, standin: ProviderStandIn) -> Iterator[DoubaoEmbedder]:
    embedder = DoubaoEmbedder(doubao_settings(tmp_path, models_dir, standin.url))
    yield embedder
    embedder.close()


@pytest.fixture(scope="module")
def pictures(photos: dict[str, bytes]) -> dict[str, Image.Image]:
    return {name: open_image(photos[name]) for name in ("astronaut", "coffee", "chelsea")}


def test_doubao_embeds_images_and_texts_as_documented(
    doubao: DoubaoEmbedder, standin: ProviderStandIn, pictures: dict[str, Image.Image]
) -> None:
    assert doubao.model_id == f"doubao/{DOUBAO_MODEL}@2048"
    assert doubao.vector_name == "doubao_doubao_embedding_vision_250615_2048"
    assert doubao.dim == 2048 and doubao.supports_text
    images = [pictures["astronaut"], pictures["coffee"], pictures["astronaut"]]
    vectors = doubao.embed_images(images)
    assert vectors.shape == (3, 2048) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vectors[0], vectors[2])  # the same photo, the same vector
    assert float(vectors[0] @ vectors[1]) < 0.9
    # One request per image (Ark fuses one request's parts into one embedding), each a JPEG
    # downscaled to fit the configured square; the stand-in decoded every one.
    seen = standin.requests("/embeddings/multimodal")
    assert [s.status for s in seen] == [200, 200, 200]
    assert all(len(s.images) == 1 and s.images[0] == (256, 256) for s in seen)
    # The image on the wire is the whole photo, padded to the square: what the stand-in
    # derives from those pixels (before JPEG) is what came back, normalised.
    padded = np.rint(doubao.preprocess(pictures["coffee"])).astype(np.uint8).transpose(1, 2, 0)
    assert padded[:20].max() == 0 and padded[120:130].max() > 0  # 600x400: bars above, below
    expected = standin.image_vector(Image.fromarray(padded), 2048)
    assert float(vectors[1] @ expected) > 0.99

    texts = doubao.embed_texts(["a red chair", "a blue sea"])
    assert texts.shape == (2, 2048)
    assert np.allclose(texts[0], standin.text_vector("a red chair", 2048), atol=1e-5)
    assert sorted(t for s in standin.requests() for t in s.texts) == ["a blue sea", "a red chair"]


def test_doubao_asks_for_the_configured_dimensions(
    tmp_path: Path, models_dir: Path, standin: ProviderStandIn
) -> None:
    settings = doubao_settings(tmp_path, models_dir, standin.url, doubao_dimensions=1024)
    embedder = DoubaoEmbedder(settings)
    try:
        assert embedder.model_id == f"doubao/{DOUBAO_MODEL}@1024"
        assert embedder.embed_texts(["x"]).shape == (1, 1024)
        assert standin.requests()[-1].dimensions == 1024
    finally:
        embedder.close()


def test_5xx_is_retried_with_back_off(doubao: DoubaoEmbedder, standin: ProviderStandIn) -> None:
    standin.fail_next(2, "500")
    assert doubao.embed_texts(["hello"]).shape == (1, 2048)
    assert [s.status for s in standin.requests()] == [500, 500, 200]
    assert doubao.available()


def test_5xx_past_the_retries_is_unavailable(
    doubao: DoubaoEmbedder, standin: ProviderStandIn
) -> None:
    standin.mode = "500"
    with pytest.raises(EmbeddingProviderUnavailable, match=r"HTTP 500.*3 attempts"):
        doubao.embed_texts(["hello"])
    assert len(standin.requests()) == 3  # provider_retries=2: three tries, then no more
    assert not doubao.available()  # a fallback chain skips it for a while
    standin.mode = "ok"
    assert doubao.embed_texts(["hello"]).shape == (1, 2048)  # a direct call still tries
    assert doubao.available()


def test_429_waits_for_retry_after(doubao: DoubaoEmbedder, standin: ProviderStandIn) -> None:
    standin.retry_after = "1"
    standin.fail_next(1, "429")
    doubao.embed_texts(["hello"])
    first, second = standin.requests()
    assert (first.status, second.status) == (429, 200)
    # Retry-After says 1 s; the usual back-off here is 0.01 s.
    assert second.at - first.at >= 0.95


def test_429_asking_too_long_a_wait_fails_at_once(
    doubao: DoubaoEmbedder, standin: ProviderStandIn
) -> None:
    standin.retry_after = "3600"
    standin.mode = "429"
    started = time.monotonic()
    with pytest.raises(EmbeddingProviderUnavailable, match="Retry-After"):
        doubao.embed_texts(["hello"])
    assert time.monotonic() - started < 5
    assert len(standin.requests()) == 1


def test_timeouts_are_retried_then_unavailable(
    doubao: DoubaoEmbedder, standin: ProviderStandIn
) -> None:
    standin.mode = "timeout"
    standin.delay = 3.0  # past the client's 0.5 s read timeout
    started = time.monotonic()
    with pytest.raises(EmbeddingProviderUnavailable, match="ReadTimeout"):
        doubao.embed_texts(["hello"])
    assert time.monotonic() - started < 3.0  # did not wait for the slow answers
    assert [r.status for r in standin.requests()] == [0, 0, 0]  # three tries, none answered
    standin.mode = "ok"


def test_unreachable_is_unavailable(tmp_path: Path, models_dir: Path) -> None:
    embedder = DoubaoEmbedder(
        doubao_settings(tmp_path, models_dir, f"http://127.0.0.1:{free_port()}")
    )
    try:
        with pytest.raises(EmbeddingProviderUnavailable, match="ConnectError"):
            embedder.embed_texts(["hello"])
    finally:
        embedder.close()


@pytest.mark.parametrize("status", ["401", "403"])
def test_a_refused_key_is_a_configuration_error_never_retried(
    doubao: DoubaoEmbedder,
    standin: ProviderStandIn,
    tmp_path: Path,
    models_dir: Path,
    status: str,
) -> None:
    standin.mode = status
    with pytest.raises(EmbeddingProviderMisconfigured, match="LOOKALIKE_DOUBAO_API_KEY") as err:
        doubao.embed_texts(["hello"])
    assert isinstance(err.value, Misconfigured)
    assert f"HTTP {status}" in err.value.message
    assert len(standin.requests()) == 1
    standin.reset()
    # No key at all: the stand-in refuses it too, and the message says which setting to set.
    settings = doubao_settings(tmp_path, models_dir, standin.url, doubao_api_key=None)
    keyless = DoubaoEmbedder(settings)
    try:
        with pytest.raises(EmbeddingProviderMisconfigured, match="set LOOKALIKE_DOUBAO_API_KEY"):
            keyless.embed_texts(["hello"])
    finally:
        keyless.close()
    assert len(standin.requests()) == 1


def test_malformed_json_is_an_error_not_retried(
    doubao: DoubaoEmbedder, standin: ProviderStandIn
) -> None:
    standin.mode = "malformed"
    with pytest.raises(EmbeddingProviderError, match="not JSON"):
        doubao.embed_texts(["hello"])
    assert len(standin.requests()) == 1


def test_a_vector_of_the_wrong_size_is_refused(
    doubao: DoubaoEmbedder, standin: ProviderStandIn, pictures: dict[str, Image.Image]
) -> None:
    standin.mode = "wrong_dim"
    with pytest.raises(EmbeddingProviderError, match=r"2047-d .*not 2048-d"):
        doubao.embed_images([pictures["coffee"]])


def test_the_rate_limit_holds_across_embedders_of_one_url(
    tmp_path: Path, models_dir: Path, standin: ProviderStandIn
) -> None:
    rate = 5.0
    settings = doubao_settings(
        tmp_path,
        models_dir,
        standin.url,
        provider_rate_limit_per_s=rate,
        provider_rate_burst=1,
        provider_max_in_flight=4,
    )
    # Two embedders of the same URL (as two models of one process would be) share one bucket.
    first, second = DoubaoEmbedder(settings), DoubaoEmbedder(settings)
    try:
        threads = [
            threading.Thread(target=e.embed_texts, args=([f"{n} {i}" for i in range(6)],))
            for n, e in enumerate((first, second))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        first.close()
        second.close()
    times = sorted(s.at for s in standin.requests())
    assert len(times) == 12
    # In any window of one second the stand-in saw at most rate + burst requests.
    for i, start in enumerate(times):
        assert sum(1 for t in times[i:] if t - start < 1.0) <= rate + 1
    assert times[-1] - times[0] >= (len(times) - 1) / rate - 0.25


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=20.0, burst=3)
    started = time.monotonic()
    for _ in range(3):
        bucket.acquire()
    assert time.monotonic() - started < 0.05
    for _ in range(4):
        bucket.acquire()
    assert time.monotonic() - started >= 4 / 20 - 0.02


# --- OpenAI-compatible /embeddings


def openai_settings(tmp_path: Path, models_dir: Path, url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "openai_embed_url": url,
        "openai_embed_api_key": KEY,
        "openai_embed_model": OPENAI_MODEL,
        "provider_retries": 1,
        "provider_retry_backoff_s": 0.01,
        "provider_rate_limit_per_s": 0,
        "provider_image_size": 128,
    }
    values.update(overrides)
    return make_settings(tmp_path / "data", models_dir, **values)


def test_openai_embeds_texts_in_index_order(
    tmp_path: Path, models_dir: Path, standin: ProviderStandIn
) -> None:
    embedder = OpenAIEmbedder(openai_settings(tmp_path, models_dir, standin.url))
    try:
        # No dimensions configured: asked once, by a probe request.
        assert embedder.dim == 384 and embedder.model_id == f"openai/{OPENAI_MODEL}@384"
        texts = [f"text {i}" for i in range(20)]  # two requests of at most 16
        vectors = embedder.embed_texts(texts)
        assert vectors.shape == (20, 384)
        for text, vector in zip(texts, vectors, strict=True):
            assert np.allclose(vector, standin.text_vector(text, 384), atol=1e-5)
        assert len(standin.requests("/embeddings")) == 3
    finally:
        embedder.close()


def test_openai_refuses_images_unless_declared(
    tmp_path: Path, models_dir: Path, standin: ProviderStandIn, pictures: dict[str, Image.Image]
) -> None:
    settings = openai_settings(tmp_path, models_dir, standin.url, openai_embed_dimensions=384)
    texts_only = OpenAIEmbedder(settings)
    try:
        with pytest.raises(ImageEmbeddingUnsupported, match="LOOKALIKE_OPENAI_EMBED_IMAGES"):
            texts_only.embed_images([pictures["coffee"]])
        assert standin.requests() == []  # refused here, nothing sent
    finally:
        texts_only.close()
    with_images = OpenAIEmbedder(settings.model_copy(update={"openai_embed_images": True}))
    try:
        vectors = with_images.embed_images([pictures["coffee"], pictures["chelsea"]])
        assert vectors.shape == (2, 384)
        (seen,) = standin.requests("/embeddings")
        assert len(seen.images) == 2 and max(seen.images[0]) == 128
    finally:
        with_images.close()


def test_provider_names_load_through_the_registry(
    tmp_path: Path, models_dir: Path, standin: ProviderStandIn
) -> None:
    settings = doubao_settings(tmp_path, models_dir, standin.url)
    models = Models(settings)
    try:
        embedder = models.get("doubao")
        assert isinstance(embedder, DoubaoEmbedder)
        assert models.get("doubao") is embedder  # loaded once
        assert standin.requests() == []  # a known model's size needs no request
    finally:
        models.close()
