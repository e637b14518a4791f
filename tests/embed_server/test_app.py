"""The embedding service's routes, on the real app: vectors equal the in-process model's; the
key it requires; the URLs it fetches, and the addresses it fetches them from."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from numpy.typing import NDArray
from typer.testing import CliRunner

from embedding.live import FileServer, LiveServer
from lookalike.core.config import Settings
from lookalike.core.errors import InvalidInput, Misconfigured, UrlNotAllowed
from lookalike.embed_server import app as service_module
from lookalike.embed_server.app import (
    IPAddress,
    check_url_allowed,
    create_embed_app,
    is_loopback_host,
    is_public_address,
    pinned_request,
)
from lookalike.embedding import Embedder, ImagePreprocessor, load_embedder
from lookalike.imaging import decode_image
from support import make_settings, wait_until

PHOTOS = ("rocket", "grace_hopper", "coins")
KEY = "test-embed-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
PROBES = {"/healthz", "/readyz", "/health"}
# A name in the .test domain, which never resolves: only the stubbed resolver knows it.
MADE_UP = "images.example.test"


@pytest.fixture(scope="module")
def images(photos: dict[str, bytes]) -> dict[str, bytes]:
    return {name: photos[name] for name in PHOTOS}


@pytest.fixture(scope="module")
def file_server(images: dict[str, bytes]) -> Iterator[FileServer]:
    def to(host: str) -> tuple[int, dict[str, str], bytes]:
        location = f"http://{host}:{httpx.URL(server.url).port}/images/rocket.jpg"
        return 302, {"Location": location}, b""

    server = FileServer(
        {
            "/images/rocket.jpg": lambda: (200, {"Content-Type": "image/jpeg"}, images["rocket"]),
            "/images/escape": lambda: (302, {"Location": "/private/rocket.jpg"}, b""),
            "/images/hop": lambda: (302, {"Location": "/images/rocket.jpg"}, b""),
            "/private/rocket.jpg": lambda: (200, {}, images["rocket"]),
            "/public/rocket.jpg": lambda: (200, {}, images["rocket"]),
            "/public/to-localhost": lambda: to("localhost"),
            "/public/to-made-up": lambda: to(MADE_UP),
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
        embed_api_key=KEY,
    )


@pytest.fixture(scope="module")
def client(service_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_embed_app(service_settings), headers=AUTH) as test_client:
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
        message = refused.json()["error"]["message"]
        assert "LOOKALIKE_EMBED_ALLOWED_URLS" in message
        assert "not under a URL prefix" in message
        # The allow-list maps the operator's network: only the caller's own URL is told.
        assert f"{file_server.url}/images/" not in message.replace(file_server.url + path, "")

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
        with pytest.raises(UrlNotAllowed) as refused:
            check_url_allowed(url, allowed)
        told = refused.value.message.replace(url, "")
        assert not any(prefix in told for prefix in allowed), url
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


# --- the key ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(service_settings: Settings) -> Iterator[LiveServer]:
    server = LiveServer(create_embed_app(service_settings)).start()
    yield server
    server.stop()


def test_every_route_but_the_probes_needs_the_key(live: LiveServer) -> None:
    # Every route the app has, as its OpenAPI schema lists them: a new one is checked too.
    schema = httpx.get(f"{live.url}/openapi.json", trust_env=False).json()
    routes = [
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        if path not in PROBES
        for method in operations
    ]
    assert {path for _, path in routes} >= {
        "/embed/image",
        "/embed/image/batch",
        "/embed/text",
        "/embed/preprocessed",
        "/embed/info",
        "/metrics",
        "/extract-features",
        "/extract-features-batch",
    }
    wrong = [
        {"Authorization": "Bearer not-the-key"},
        {"X-API-Key": "not-the-key"},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": f"Bearer {KEY}x"},
    ]
    with httpx.Client(base_url=live.url, trust_env=False) as http:
        for method, path in routes:
            for headers in [{}, *wrong]:
                response = http.request(method, path, headers=headers, json={"text": "a cat"})
                assert response.status_code == 401, (method, path, headers, response.text)
                error = response.json()["error"]
                assert error["code"] == "unauthorized"
                assert "LOOKALIKE_EMBED_API_KEY" in error["message"]
                assert KEY not in error["message"]
        missing = http.get("/embed/info").json()["error"]["message"]
        assert "Authorization: Bearer" in missing and "X-API-Key" in missing

        for headers in (AUTH, {"X-API-Key": KEY}):
            info = http.get("/embed/info", headers=headers)
            assert info.status_code == 200, info.text
            assert info.json()["model_version"]
        assert http.get("/metrics", headers=AUTH).status_code == 200


def test_probes_stay_open_and_tell_the_model_to_key_holders_only(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url, trust_env=False) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/readyz").json() == {"status": "ready"}
        assert http.get("/health").json() == {"status": "healthy", "model_loaded": True}
        model_id = http.get("/embed/info", headers=AUTH).json()["model_version"]
        assert http.get("/readyz", headers=AUTH).json()["model"] == model_id
        assert http.get("/health", headers=AUTH).json()["model_version"] == model_id


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com", ""])
def test_without_a_key_the_service_refuses_to_start_off_loopback(
    service_settings: Settings, host: str
) -> None:
    open_off_loopback = service_settings.model_copy(
        update={"embed_api_key": None, "embed_open": True, "host": host}
    )
    with pytest.raises(Misconfigured) as refused:
        create_embed_app(open_off_loopback)
    assert "LOOKALIKE_EMBED_OPEN" in refused.value.message
    assert "LOOKALIKE_EMBED_API_KEY" in refused.value.message
    assert not is_loopback_host(host)

    # A key makes any address fine; no key and no open mode is refused even on loopback.
    create_embed_app(open_off_loopback.model_copy(update={"embed_api_key": KEY}))
    for blank in (None, "", "   "):
        no_key = service_settings.model_copy(update={"embed_api_key": blank, "host": "127.0.0.1"})
        with pytest.raises(Misconfigured, match=r"LOOKALIKE_EMBED_API_KEY.*LOOKALIKE_EMBED_OPEN"):
            create_embed_app(no_key)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback_host(host)


def test_the_cli_refuses_open_mode_on_a_public_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    from lookalike.cli import app as cli

    served: list[object] = []
    # Only a guard, so that a regression fails here instead of serving on 0.0.0.0.
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: served.append(args))
    monkeypatch.chdir(tmp_path)  # no .env file from the working directory
    env = {"LOOKALIKE_EMBED_OPEN": "true", "LOOKALIKE_EMBED_API_KEY": None}
    result = CliRunner().invoke(
        cli, ["embed-server", "--host", "0.0.0.0", "--data-dir", str(tmp_path)], env=env
    )
    assert result.exit_code == 2, result.output
    assert "LOOKALIKE_EMBED_OPEN" in result.output
    assert "LOOKALIKE_EMBED_API_KEY" in result.output
    assert served == []


def test_open_mode_answers_loopback_connections_without_a_key(
    service_settings: Settings,
) -> None:
    settings = service_settings.model_copy(
        update={"embed_api_key": None, "embed_open": True, "host": "127.0.0.1"}
    )
    server = LiveServer(create_embed_app(settings)).start()
    try:
        info = httpx.get(f"{server.url}/embed/info", timeout=30, trust_env=False)
        assert info.status_code == 200, info.text
    finally:
        server.stop()

    # Served by something that listens elsewhere than LOOKALIKE_HOST, it still answers
    # loopback connections only (the test client reports its base URL as the server address).
    app = create_embed_app(settings)
    with TestClient(app, base_url="http://192.0.2.10") as elsewhere:
        refused = elsewhere.get("/embed/info")
        assert refused.status_code == 401
        assert "loopback only" in refused.json()["error"]["message"]
        assert elsewhere.get("/healthz").status_code == 200
    with TestClient(app, base_url="http://127.0.0.1:8001") as local:
        assert local.get("/metrics").status_code == 200


# --- the addresses URLs are fetched from --------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(service_settings: Settings, file_server: FileServer) -> Iterator[TestClient]:
    """A service whose allow-list names the local file server by name and by IP literal."""
    port = httpx.URL(file_server.url).port
    settings = service_settings.model_copy(
        update={
            "embed_allowed_urls": [
                f"http://localhost:{port}/images/",
                f"http://{MADE_UP}:{port}/images/",
                f"http://127.0.0.1:{port}/public/",
            ]
        }
    )
    with TestClient(create_embed_app(settings), headers=AUTH) as test_client:
        yield test_client


def resolve_made_up_name_to(
    monkeypatch: pytest.MonkeyPatch, *answers: str
) -> list[tuple[str, int]]:
    """DNS cannot be set up here: the service's resolver answers `answers` for MADE_UP."""
    asked: list[tuple[str, int]] = []
    real = service_module.resolve_host

    def resolve(host: str, port: int) -> list[IPAddress]:
        asked.append((host, port))
        if host == MADE_UP:
            return [ipaddress.ip_address(a) for a in answers]
        return real(host, port)

    monkeypatch.setattr(service_module, "resolve_host", resolve)
    return asked


def assert_refused_unseen(
    client: TestClient, url: str, file_server: FileServer, *hidden: str
) -> str:
    before = len(file_server.requests)
    refused = client.post("/embed/image", json={"url": url})
    assert refused.status_code == 403, (url, refused.text)
    error = refused.json()["error"]
    assert error["code"] == "url_not_allowed"
    assert "LOOKALIKE_EMBED_ALLOWED_URLS" in error["message"]
    for text in hidden:
        assert text not in error["message"], (text, error["message"])
    assert file_server.requests[before:] == [], "the refused URL was fetched"
    return str(error["message"])


def test_a_listed_name_that_resolves_to_loopback_is_refused(
    guarded: TestClient, file_server: FileServer
) -> None:
    port = httpx.URL(file_server.url).port
    message = assert_refused_unseen(
        guarded, f"http://localhost:{port}/images/rocket.jpg", file_server, "127.0.0.1", "::1"
    )
    assert "internal address" in message
    assert "IP address itself" in message

    # The name in the allow-list does not admit the address it stands for...
    assert_refused_unseen(
        guarded, f"http://127.0.0.1:{port}/images/rocket.jpg", file_server, "localhost"
    )
    # ... while an entry that names the IP literal is the operator's choice, and holds.
    allowed = guarded.post(
        "/embed/image", json={"url": f"http://127.0.0.1:{port}/public/rocket.jpg"}
    )
    assert allowed.status_code == 200, allowed.text
    assert file_server.requests[-1] == ("/public/rocket.jpg", f"127.0.0.1:{port}")


@pytest.mark.parametrize(
    "answers",
    [
        ("10.0.0.7",),
        ("169.254.169.254",),
        ("::ffff:127.0.0.1",),
        ("fd00::7",),
        ("93.184.215.14", "192.168.0.7"),  # one internal address is enough to refuse
    ],
)
def test_a_listed_name_that_resolves_to_an_internal_address_is_refused(
    guarded: TestClient,
    file_server: FileServer,
    monkeypatch: pytest.MonkeyPatch,
    answers: tuple[str, ...],
) -> None:
    asked = resolve_made_up_name_to(monkeypatch, *answers)
    port = httpx.URL(file_server.url).port
    url = f"http://{MADE_UP}:{port}/images/rocket.jpg"
    assert_refused_unseen(guarded, url, file_server, *answers, "localhost:")
    assert asked == [(MADE_UP, port)]


def test_every_redirect_hop_is_resolved_and_checked(
    guarded: TestClient, file_server: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = resolve_made_up_name_to(monkeypatch, "10.0.0.7")
    port = httpx.URL(file_server.url).port
    for path in ("/public/to-localhost", "/public/to-made-up"):
        before = len(file_server.requests)
        refused = guarded.post("/embed/image", json={"url": f"{file_server.url}{path}"})
        assert refused.status_code == 403, (path, refused.text)
        # The first hop (an IP-literal entry) was fetched; the listed name it led to was not.
        assert file_server.requests[before:] == [(path, f"127.0.0.1:{port}")]
    assert asked == [("localhost", port), (MADE_UP, port)]


def test_a_pinned_request_goes_to_the_checked_address_under_the_name(
    file_server: FileServer, images: dict[str, bytes]
) -> None:
    port = httpx.URL(file_server.url).port
    url = httpx.URL(f"http://{MADE_UP}:{port}/public/rocket.jpg")
    with httpx.Client(trust_env=False) as http:
        # MADE_UP resolves nowhere: only the pinned address can have answered.
        response = http.send(pinned_request(http, url, ipaddress.ip_address("127.0.0.1")))
        assert response.status_code == 200
        assert response.content == images["rocket"]
        assert file_server.requests[-1] == ("/public/rocket.jpg", f"{MADE_UP}:{port}")

        secure = pinned_request(
            http, httpx.URL("https://cdn.example.test/a.jpg"), ipaddress.ip_address("2001:db8::1")
        )
        assert str(secure.url) == "https://[2001:db8::1]/a.jpg"
        assert secure.headers["Host"] == "cdn.example.test"
        assert secure.extensions["sni_hostname"] == "cdn.example.test"


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", True),
        ("::ffff:93.184.215.14", True),
        ("127.0.0.1", False),
        ("127.8.9.10", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),
        ("fd12:3456::1", False),
        ("169.254.169.254", False),
        ("fe80::1", False),
        ("224.0.0.1", False),
        ("ff02::1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.1", False),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public
