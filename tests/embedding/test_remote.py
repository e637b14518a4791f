"""`RemoteEmbedder` against the real service under uvicorn on 127.0.0.1 (which requires its key),
and against a proxy in front of it that fails on demand, to see retries, the in-flight bound and a
service that is down."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embedding.live import FlakyProxy, LiveServer
from lookalike.core.config import Settings
from lookalike.core.errors import EmbedServiceUnavailable, ModelUnavailable, TextSearchUnavailable
from lookalike.embed_server.app import create_embed_app
from lookalike.embedding import Models, load_embedder
from lookalike.embedding.remote import RemoteEmbedder
from lookalike.imaging import decode_image
from support import free_port, make_settings, wait_until

KEY = "remote-test-key-9876543210"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("remote") / "data"


@pytest.fixture(scope="module")
def local_settings(data_dir: Path, models_dir: Path, tiny_clip: str) -> Settings:
    return make_settings(
        data_dir, models_dir, embed_threads=1, embed_max_batch=4, embed_api_key=KEY
    )


@pytest.fixture(scope="module")
def service(local_settings: Settings) -> Iterator[LiveServer]:
    server = LiveServer(create_embed_app(local_settings)).start()
    yield server
    server.stop()


@pytest.fixture
def proxy(service: LiveServer) -> Iterator[FlakyProxy]:
    flaky = FlakyProxy(service.url)
    yield flaky
    flaky.stop()


def remote_settings(local: Settings, url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "embed_url": url,
        "embed_retries": 2,
        "embed_retry_backoff_s": 0.01,
        "embed_connect_timeout_s": 0.5,
        "embed_timeout_s": 10.0,
        "embed_api_key": KEY,
    }
    values.update(overrides)
    return make_settings(local.data_dir, local.models_dir, embed_threads=1, **values)


def decoded(photos: dict[str, bytes], *names: str, size: int) -> list[Image.Image]:
    return [
        decode_image(photos[n], max_bytes=10**8, max_pixels=10**9, reduce_for=size).image
        for n in names
    ]


def test_remote_model_is_the_local_model(
    service: LiveServer, local_settings: Settings, photos: dict[str, bytes]
) -> None:
    settings = remote_settings(local_settings, service.url)
    models = Models(settings)
    remote = models.default()
    local = Models(local_settings).default()
    assert isinstance(remote, RemoteEmbedder)
    assert not isinstance(local, RemoteEmbedder)
    assert models.get() is remote  # kept: one client per model per process
    for attribute in ("name", "model_id", "vector_name", "dim", "supports_text", "input_size"):
        assert getattr(remote, attribute) == getattr(local, attribute), attribute

    images = decoded(photos, "rocket", "coins", "grace_hopper", "camera", "moon", size=224)
    tensors = np.stack([remote.preprocess(im) for im in images])
    assert np.array_equal(tensors, np.stack([local.preprocess(im) for im in images]))
    # Five images with a service batch limit of four: two requests, one answer.
    np.testing.assert_allclose(remote.embed_images(images), local.embed_images(images), atol=1e-6)
    assert remote.embed_images([]).shape == (0, local.dim)

    # Inputs that are not 8-bit pixels travel as float32 and still give the local vectors.
    noise = np.random.default_rng(0).normal(size=(2, 3, 224, 224)).astype(np.float32)
    np.testing.assert_allclose(
        remote.embed_preprocessed(noise), local.embed_preprocessed(noise), atol=1e-5
    )

    with pytest.raises(TextSearchUnavailable, match="lookalike model pull"):
        remote.embed_texts(["a cat"])


def test_remote_text_model(service: LiveServer, local_settings: Settings, tiny_clip: str) -> None:
    remote = load_embedder(remote_settings(local_settings, service.url), tiny_clip)
    local = load_embedder(local_settings, tiny_clip)
    assert isinstance(remote, RemoteEmbedder)
    assert remote.model_id == local.model_id
    assert remote.supports_text
    texts = ["a photo of a cat", "a rocket launch", "coffee", "red", "street at night"]
    np.testing.assert_allclose(remote.embed_texts(texts), local.embed_texts(texts), atol=1e-6)


@pytest.mark.parametrize(
    ("key", "says"),
    [(None, "needs a key"), ("not-the-key", "refused this process's key")],
)
def test_a_missing_or_wrong_key_fails_at_once_naming_the_setting(
    local_settings: Settings, proxy: FlakyProxy, key: str | None, says: str
) -> None:
    settings = remote_settings(local_settings, proxy.url, embed_api_key=key)
    started = time.monotonic()
    with pytest.raises(EmbedServiceUnavailable) as caught:
        Models(settings).default()
    assert time.monotonic() - started < 3
    assert says in caught.value.message
    assert "LOOKALIKE_EMBED_API_KEY" in caught.value.message
    assert proxy.url in caught.value.message
    assert caught.value.status == 503  # the API's caller did nothing wrong: not a 401
    # One request: a setting is not fixed by asking again, nor by asking for another model.
    assert proxy.state.requests == 1

    # Sent as `Authorization: Bearer`, the right key works through the same proxy.
    remote = load_embedder(remote_settings(local_settings, proxy.url))
    assert isinstance(remote, RemoteEmbedder)


def test_service_down_is_model_unavailable_quickly(local_settings: Settings) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(EmbedServiceUnavailable) as caught:
        Models(remote_settings(local_settings, url)).default()
    assert time.monotonic() - started < 3
    assert isinstance(caught.value, ModelUnavailable)
    assert caught.value.status == 503
    assert url in caught.value.message
    assert "3 attempts" in caught.value.message
    assert "lookalike embed-server" in caught.value.message


def test_service_stopping_later_is_model_unavailable(
    local_settings: Settings, proxy: FlakyProxy, photos: dict[str, bytes]
) -> None:
    remote = load_embedder(remote_settings(local_settings, proxy.url))
    images = decoded(photos, "rocket", size=remote.input_size)
    assert remote.embed_images(images).shape == (1, remote.dim)
    proxy.stop()
    started = time.monotonic()
    with pytest.raises(EmbedServiceUnavailable, match=proxy.url):
        remote.embed_images(images)
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("mode", ["500", "drop"])
def test_retries_ride_out_a_flapping_service(
    local_settings: Settings, proxy: FlakyProxy, photos: dict[str, bytes], mode: str
) -> None:
    proxy.state.fail_mode = mode  # type: ignore[assignment]
    proxy.state.fail_next = 2
    remote = load_embedder(remote_settings(local_settings, proxy.url))
    assert proxy.state.requests == 3  # two failures, then the model info

    images = decoded(photos, "rocket", "coins", size=remote.input_size)
    expected = load_embedder(local_settings).embed_images(images)
    proxy.state.fail_next = 2
    np.testing.assert_allclose(remote.embed_images(images), expected, atol=1e-6)
    assert proxy.state.requests == 6

    # More failures than retries: the caller hears about it, after exactly 1 + retries tries.
    proxy.state.fail_next = 10
    with pytest.raises(EmbedServiceUnavailable, match=proxy.url):
        remote.embed_images(images)
    assert proxy.state.requests == 9


def test_in_flight_requests_are_bounded(
    local_settings: Settings, proxy: FlakyProxy, tiny_clip: str
) -> None:
    # Two models at one service share its bound: each client alone could open 2 connections.
    settings = remote_settings(local_settings, proxy.url, embed_max_in_flight=2)
    remotes = [load_embedder(settings), load_embedder(settings, tiny_clip)]
    proxy.state.hold = threading.Event()
    callers = 6
    start = threading.Barrier(callers)
    results: list[object] = []

    def call(index: int) -> None:
        remote = remotes[index % 2]
        batch = np.zeros((1, 3, remote.input_size, remote.input_size), dtype=np.float32)
        start.wait()
        try:
            results.append(remote.embed_preprocessed(batch))
        except Exception as exc:  # recorded and asserted on below
            results.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    try:
        assert wait_until(lambda: proxy.state.active >= 2, timeout=10)
        # The other callers are past the barrier and a millisecond from sending: without the
        # bound they would reach the held proxy well within this window.
        assert not wait_until(
            lambda: proxy.state.paths.count("/embed/preprocessed") > 2, timeout=0.3
        )
    finally:
        proxy.state.hold.set()
        for thread in threads:
            thread.join(timeout=30)
    assert all(isinstance(r, np.ndarray) for r in results), results
    assert len(results) == callers
    assert proxy.state.peak == 2
    assert proxy.state.paths.count("/embed/preprocessed") == callers


def test_a_model_change_behind_the_clients_back_is_refused(
    local_settings: Settings, service: LiveServer
) -> None:
    remote = load_embedder(remote_settings(local_settings, service.url))
    assert isinstance(remote, RemoteEmbedder)
    remote.model_id = "efficientnet-lite0@000000000000"
    batch = np.zeros((1, 3, remote.input_size, remote.input_size), dtype=np.float32)
    with pytest.raises(ModelUnavailable, match="must not mix") as caught:
        remote.embed_preprocessed(batch)
    assert caught.value.code == "model_mismatch"


def test_a_runtime_ingests_and_searches_through_the_service(
    local_settings: Settings, service: LiveServer, photos: dict[str, bytes], tmp_path: Path
) -> None:
    from lookalike.auth.tokens import DEFAULT_TENANT
    from lookalike.composition import Lookalike
    from lookalike.ingest.pipeline import IngestFile, NewRecord
    from lookalike.records.service import get_or_create_collection
    from lookalike.search.service import search_similar

    settings = remote_settings(local_settings, service.url).model_copy(
        update={"data_dir": tmp_path / "data"}
    )
    with Lookalike(settings) as rt:
        collection = get_or_create_collection(rt, DEFAULT_TENANT, "remote")
        assert collection.model_id == Models(local_settings).default().model_id
        items = [
            (NewRecord(name=name, owner="t"), IngestFile(photos[name], name))
            for name in ("rocket", "coins")
        ]
        results = rt.ingest.add_many(collection, items, wait=True)
        assert [r.status for r in results] == ["added", "added"]
        hits = search_similar(rt, DEFAULT_TENANT, "remote", image_bytes=photos["coins"], limit=2)
    assert hits[0].name == "coins"
    assert hits[0].score > 0.99
