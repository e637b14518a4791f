"""The embedding service's routes, on the real app: vectors equal the in-process model's."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from numpy.typing import NDArray

from embedding.live import FileServer
from lookalike.config import Settings
from lookalike.embedding import Embedder, ImagePreprocessor, load_embedder
from lookalike.embedding.service import check_url_allowed, create_embed_app
from lookalike.errors import InvalidInput, UrlNotAllowed
from lookalike.imaging import decode_image
from support import make_settings, wait_until

PHOTOS = ("rocket", "grace_hopper", "coins")


@pytest.fixture(scope="module")
def images(photos: dict[str, bytes]) -> dict[str, bytes]:
    return {name: photos[name] for name in PHOTOS}


@pytest.fixture(scope="module")
def file_server(images: dict[str, bytes]) -> Iterator[FileServer]:
    server = FileServer(
        {
            "/images/rocket.jpg": lambda: (200, {"Content-Type": "image/jpeg"}, images["rocket"]),
            "/images/escape": lambda: (302, {"Location": "/private/rocket.jpg"}, b""),
            "/images/hop": lambda: (302, {"Location": "/images/rocket.jpg"}, b""),
            "/private/rocket.jpg": lambda: (200, {}, images["rocket"]),
        }
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def service_settings(
    tmp_path_factory: pytest.TempPathFactory,
    models_dir: Path,
    tiny_clip: str,
    file_server: FileServer,
) -> Settings:
    return make_settings(
        tmp_path_factory.mktemp("embed") / "data",
        models_dir,
        embed_threads=1,
        embed_max_batch=8,
        embed_allowed_urls=[f"{file_server.url}/images/"],
    )


@pytest.fixture(scope="module")
def client(service_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_embed_app(service_settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def offline(service_settings: Settings) -> Embedder:
    return load_embedder(service_settings)


@pytest.fixture(scope="module")
def clip(service_settings: Settings, tiny_clip: str) -> Embedder:
    return load_embedder(service_settings, tiny_clip)


def local_vectors(embedder: Embedder, settings: Settings, *datas: bytes) -> NDArray[np.float32]:
    """What the in-process model gives for these image bytes, decoded as ingest decodes them."""
    decoded = [
        decode_image(
            data,
            max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
            reduce_for=embedder.input_size,
        ).image
        for data in datas
    ]
    return embedder.embed_images(decoded)


def assert_model(body: dict[str, object], embedder: Embedder) -> None:
    assert body["model_name"] == embedder.name
    assert body["model_version"] == embedder.model_id
    assert body["dim"] == embedder.dim


def test_one_image_multipart_json_and_compat_give_in_process_vector(
    client: TestClient, offline: Embedder, service_settings: Settings, images: dict[str, bytes]
) -> None:
    data = images["rocket"]
    expected = local_vectors(offline, service_settings, data)[0]

    answers = [
        client.post("/embed/image", files={"file": ("r.jpg", data, "image/jpeg")}),
        client.post("/embed/image", json={"image_b64": base64.b64encode(data).decode()}),
        client.post(
            "/embed/image",
            json={"image_b64": "data:image/jpeg;base64," + base64.b64encode(data).decode()},
        ),
    ]
    for response in answers:
        assert response.status_code == 200, response.text
        body = response.json()
        assert_model(body, offline)
        assert len(body["embedding"]) == offline.dim
        np.testing.assert_allclose(body["embedding"], expected, atol=1e-6)

    compat = client.post("/extract-features", files={"image": ("r.jpg", data, "image/jpeg")})
    assert compat.status_code == 200, compat.text
    assert_model(compat.json(), offline)
    np.testing.assert_allclose(compat.json()["features"], expected, atol=1e-6)


def test_batch_keeps_order(
    client: TestClient, offline: Embedder, service_settings: Settings, images: dict[str, bytes]
) -> None:
    datas = [images[name] for name in PHOTOS]
    expected = local_vectors(offline, service_settings, *datas)
    files = [
        ("files", (f"{i}.img", data, "application/octet-stream")) for i, data in enumerate(datas)
    ]

    response = client.post("/embed/image/batch", files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert_model(body, offline)
    assert body["count"] == 3
    np.testing.assert_allclose(body["embeddings"], expected, atol=1e-6)

    as_json = client.post(
        "/embed/image/batch",
        json={"images": [base64.b64encode(d).decode() for d in datas]},
    )
    np.testing.assert_allclose(as_json.json()["embeddings"], expected, atol=1e-6)

    compat = client.post("/extract-features-batch", files=files)
    assert compat.status_code == 200, compat.text
    assert compat.json()["count"] == 3
    np.testing.assert_allclose(compat.json()["features"], expected, atol=1e-6)

    too_many = [("files", (f"{i}.img", datas[0], "image/jpeg")) for i in range(9)]
    refused = client.post("/embed/image/batch", files=too_many)
    assert refused.status_code == 422
    assert "at most 8 images" in refused.json()["error"]["message"]


def test_text_with_a_clip_model_named_in_the_request(client: TestClient, clip: Embedder) -> None:
    texts = ["a photo of a cat", "a rocket launch"]
    expected = clip.embed_texts(texts)

    one = client.post("/embed/text", json={"text": texts[0], "model": clip.name})
    assert one.status_code == 200, one.text
    assert_model(one.json(), clip)
    np.testing.assert_allclose(one.json()["embedding"], expected[0], atol=1e-6)

    many = client.post("/embed/text", json={"texts": texts, "model": clip.name})
    assert many.status_code == 200, many.text
    assert many.json()["count"] == 2
    np.testing.assert_allclose(many.json()["embeddings"], expected, atol=1e-6)

    neither = client.post("/embed/text", json={"model": clip.name})
    assert neither.status_code == 422
    assert neither.json()["error"]["code"] == "invalid_input"


def test_text_on_an_image_only_model_is_422_saying_what_to_install(client: TestClient) -> None:
    response = client.post("/embed/text", json={"text": "a cat"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "text_search_unavailable"
    assert "image-only" in error["message"]
    assert "lookalike model pull" in error["message"]


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"this is not an image", 415, "invalid_image"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 64, 415, "invalid_image"),
        (b"", 415, "invalid_image"),
    ],
)
def test_bad_images_get_a_4xx_error_body(
    client: TestClient, payload: bytes, status: int, code: str
) -> None:
    response = client.post("/embed/image", files={"file": ("x.jpg", payload, "image/jpeg")})
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


def test_bad_requests_name_the_problem(client: TestClient, images: dict[str, bytes]) -> None:
    bad_b64 = client.post("/embed/image", json={"image_b64": "%%% not base64"})
    assert bad_b64.status_code == 422
    assert "base64" in bad_b64.json()["error"]["message"]

    no_file = client.post("/embed/image", files={"other": ("x", b"x", "text/plain")})
    assert no_file.status_code == 422
    assert "'file'" in no_file.json()["error"]["message"]

    huge = "A" * (15 * 1024 * 1024)
    too_large = client.post("/embed/image", json={"image_b64": huge})
    assert too_large.status_code == 413
    assert too_large.json()["error"]["code"] == "image_too_large"

    broken_batch = client.post(
        "/embed/image/batch",
        files=[
            ("files", ("a.jpg", images["rocket"], "image/jpeg")),
            ("files", ("b.jpg", b"garbage", "image/jpeg")),
        ],
    )
    assert broken_batch.status_code == 415
    assert broken_batch.json()["error"]["message"].startswith("image 1:")

    unknown = client.post("/embed/text", json={"text": "x", "model": "no-such-model"})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "unknown_model"


def test_url_fetch_only_from_the_allow_list(
    client: TestClient,
    offline: Embedder,
    service_settings: Settings,
    images: dict[str, bytes],
    file_server: FileServer,
) -> None:
    expected = local_vectors(offline, service_settings, images["rocket"])[0]
    for path in ("/images/rocket.jpg", "/images/hop"):
        response = client.post("/embed/image", json={"url": file_server.url + path})
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(response.json()["embedding"], expected, atol=1e-6)

    for path in ("/private/rocket.jpg", "/images/escape", "/images/../private/rocket.jpg"):
        refused = client.post("/embed/image", json={"url": file_server.url + path})
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["error"]["code"] == "url_not_allowed"
        assert "LOOKALIKE_EMBED_ALLOWED_URLS" in refused.json()["error"]["message"]

    missing = client.post("/embed/image", json={"url": file_server.url + "/images/nothing.jpg"})
    assert missing.status_code == 502
    assert missing.json()["error"]["code"] == "url_fetch_failed"
    assert "404" in missing.json()["error"]["message"]


def test_allow_list_compares_parsed_urls() -> None:
    allowed = ["https://cdn.example.com/images/", "http://10.0.0.5:9000/bucket"]
    assert check_url_allowed("https://cdn.example.com/images/a.jpg", allowed)
    assert check_url_allowed("https://CDN.example.com:443/images/a/b.jpg?x=1", allowed)
    assert check_url_allowed("http://10.0.0.5:9000/bucket/a.jpg", allowed)
    for url in (
        "https://cdn.example.com.evil.net/images/a.jpg",
        "https://cdn.example.com@evil.net/images/a.jpg",
        "https://user@cdn.example.com/images/a.jpg",
        "http://cdn.example.com/images/a.jpg",
        "https://cdn.example.com:8443/images/a.jpg",
        "https://cdn.example.com/imagesX/a.jpg",
        "https://cdn.example.com/images/../secret",
        "https://cdn.example.com/images/%2e%2e/secret",
        "http://10.0.0.5:9000/bucket-private/a.jpg",
        "file:///etc/passwd",
    ):
        with pytest.raises(UrlNotAllowed):
            check_url_allowed(url, allowed)
    with pytest.raises(UrlNotAllowed, match="fetching images by URL is off"):
        check_url_allowed("https://cdn.example.com/images/a.jpg", [])
    with pytest.raises((InvalidInput, UrlNotAllowed)):
        check_url_allowed("not a url at all", allowed)


def test_preprocessed_pixels_are_bit_identical_to_in_process(
    client: TestClient, offline: Embedder, service_settings: Settings, images: dict[str, bytes]
) -> None:
    datas = [images[name] for name in PHOTOS]
    expected = local_vectors(offline, service_settings, *datas)
    size = offline.input_size
    preprocessor = ImagePreprocessor(offline.model_dir.manifest.preprocess)  # type: ignore[attr-defined]
    decoded = [
        decode_image(d, max_bytes=10**8, max_pixels=10**9, reduce_for=size).image for d in datas
    ]
    pixels = np.stack([np.asarray(preprocessor.resize(im), dtype=np.uint8) for im in decoded])
    headers = {
        "Content-Type": "application/octet-stream",
        "X-Lookalike-Dtype": "uint8",
        "X-Lookalike-Shape": f"3,{size},{size},3",
        "X-Lookalike-Model-Version": offline.model_id,
    }
    response = client.post("/embed/preprocessed", content=pixels.tobytes(), headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["x-lookalike-shape"] == f"3,{offline.dim}"
    assert response.headers["x-lookalike-model-version"] == offline.model_id
    assert response.headers["x-lookalike-model-name"] == offline.name
    vectors = np.frombuffer(response.content, dtype="<f4").reshape(3, offline.dim)
    np.testing.assert_allclose(vectors, expected, atol=1e-6)

    batch = np.stack([preprocessor(im) for im in decoded]).astype("<f4")
    as_float = client.post(
        "/embed/preprocessed",
        content=batch.tobytes(),
        headers={
            **headers,
            "X-Lookalike-Dtype": "float32",
            "X-Lookalike-Shape": f"3,3,{size},{size}",
        },
    )
    assert as_float.status_code == 200, as_float.text
    np.testing.assert_allclose(
        np.frombuffer(as_float.content, dtype="<f4").reshape(3, -1), expected, atol=1e-6
    )

    mismatch = client.post(
        "/embed/preprocessed",
        content=pixels.tobytes(),
        headers={**headers, "X-Lookalike-Model-Version": "other-model@123"},
    )
    assert mismatch.status_code == 409
    assert mismatch.json()["error"]["code"] == "model_mismatch"

    wrong_shape = client.post(
        "/embed/preprocessed",
        content=pixels.tobytes(),
        headers={**headers, "X-Lookalike-Shape": f"3,{size},{size},4"},
    )
    assert wrong_shape.status_code == 422
    short = client.post("/embed/preprocessed", content=pixels.tobytes()[:-1], headers=headers)
    assert short.status_code == 422
    assert "bytes" in short.json()["error"]["message"]


def test_info_health_readiness_and_metrics(
    client: TestClient, offline: Embedder, clip: Embedder
) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert wait_until(lambda: client.get("/readyz").status_code == 200, timeout=60)
    assert client.get("/readyz").json()["model"] == offline.model_id
    health = client.get("/health").json()
    assert health["status"] == "healthy"
    assert health["model_loaded"] is True
    assert_model(health, offline)

    info = client.get("/embed/info").json()
    assert_model(info, offline)
    assert info["supports_text"] is False
    assert info["input_size"] == offline.input_size
    assert info["vector_name"] == offline.vector_name
    assert "lookalike model pull" in info["text_unavailable"]
    clip_info = client.get("/embed/info", params={"model": clip.name}).json()
    assert_model(clip_info, clip)
    assert clip_info["supports_text"] is True

    client.post("/embed/text", json={"text": "a cat"})
    text = client.get("/metrics").text
    assert 'lookalike_embed_requests_total{method="GET",route="/embed/info",status="200"}' in text
    assert 'lookalike_embed_requests_total{method="POST",route="/embed/text",status="422"}' in text
    assert f'lookalike_embed_model_loaded{{model="{offline.name}"}} 1.0' in text
    assert 'lookalike_embed_request_seconds_bucket{le="0.005",route="/embed/info"}' in text
    assert 'lookalike_embed_batch_size_count{route="/embed/text"}' in text
