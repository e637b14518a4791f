"""Rate limits (in memory and in Redis), body size limit, CORS and gzip of the HTTP API."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from lookalike.api.app import create_app
from lookalike.api.limits import BodySizeLimitMiddleware
from lookalike.api.ratelimit import MemoryTokenBuckets
from lookalike.auth.tokens import create_token
from lookalike.composition import Lookalike
from lookalike.core.config import Settings
from support import free_port, make_settings, wait_until

REDIS_URL = "redis://127.0.0.1:6379/0"

ClientFor = Callable[..., TestClient]


def _redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own in the real Redis, removed afterwards."""
    if not _redis_reachable():
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    import redis

    prefix = f"lookalike-test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> dict[str, str]:
    """Settings that put the rate limits in memory, or in the real Redis."""
    if request.param == "memory":
        return {}
    prefix: str = request.getfixturevalue("redis_prefix")
    return {"redis_url": REDIS_URL, "redis_key_prefix": prefix}


@pytest.fixture
def client_for(tmp_path: Path, models_dir: Path) -> Iterator[ClientFor]:
    """Open a runtime and a client with the given settings (closed after the test)."""
    opened: list[Any] = []

    def open_client(**overrides: object) -> TestClient:
        settings = make_settings(tmp_path / f"d{len(opened)}", models_dir, **overrides)
        rt = Lookalike(settings)
        opened.append(rt)
        client = TestClient(create_app(runtime=rt))
        client.__enter__()
        opened.append(client)
        return client

    yield open_client
    for thing in reversed(opened):
        if isinstance(thing, TestClient):
            thing.__exit__(None, None, None)
        else:
            thing.close()


def _auth(settings: Settings, tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_token(settings, user='u', tenant=tenant)}"}


# --- token buckets ----------------------------------------------------------------------


def test_memory_bucket_refills_with_the_clock() -> None:
    now = [100.0]
    buckets = MemoryTokenBuckets(clock=lambda: now[0])
    assert buckets.take_now("k", rate=2.0, burst=2).allowed
    assert buckets.take_now("k", rate=2.0, burst=2).allowed
    refused = buckets.take_now("k", rate=2.0, burst=2)
    assert not refused.allowed and refused.retry_after_s == pytest.approx(0.5)
    assert refused.retry_after_header == "1"
    assert buckets.take_now("other", rate=2.0, burst=2).allowed  # keys are independent
    now[0] += 0.25
    assert buckets.take_now("k", rate=2.0, burst=2).retry_after_s == pytest.approx(0.25)
    now[0] += 0.25
    assert buckets.take_now("k", rate=2.0, burst=2).allowed
    now[0] += 60
    # Refilled to the burst, not beyond.
    assert [buckets.take_now("k", rate=2.0, burst=2).allowed for _ in range(3)] == [
        True,
        True,
        False,
    ]


def test_memory_buckets_forget_refilled_clients() -> None:
    now = [0.0]
    buckets = MemoryTokenBuckets(clock=lambda: now[0], max_keys=10)
    for i in range(10):
        buckets.take_now(f"ip{i}", rate=1.0, burst=1)
    now[0] += 5
    buckets.take_now("new", rate=1.0, burst=1)
    assert len(buckets._buckets) == 1


# --- rate limits over HTTP ----------------------------------------------------------------


def test_tenant_over_its_rate_gets_429_and_others_do_not(
    client_for: ClientFor, backend: dict[str, str]
) -> None:
    client = client_for(
        auth="on",
        secret_key="k" * 32,
        rate_limit_ip_per_s=0,
        rate_limit_tenant_per_s=0.001,
        rate_limit_tenant_burst=2,
        **backend,
    )
    settings = client.app.state.runtime.settings  # type: ignore[attr-defined]
    acme, globex = _auth(settings, "acme"), _auth(settings, "globex")
    assert [client.get("/api/collections", headers=acme).status_code for _ in range(2)] == [
        200,
        200,
    ]
    r = client.get("/api/collections", headers=acme)
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limited"
    assert "acme" in r.json()["error"]["message"]
    assert 900 <= int(r.headers["retry-after"]) <= 1000  # one token per 1000 s
    assert r.headers["x-request-id"]
    # Another tenant has its own bucket.
    assert client.get("/api/collections", headers=globex).status_code == 200
    # Health probes are not counted against anybody.
    assert client.get("/healthz").status_code == 200


def test_client_ip_over_its_rate_gets_429(client_for: ClientFor, backend: dict[str, str]) -> None:
    client = client_for(rate_limit_ip_per_s=0.001, rate_limit_ip_burst=3, **backend)
    codes = [client.get("/api/collections").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = client.get("/api/collections")
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 900
    assert r.json()["error"]["code"] == "rate_limited"
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200
    m = client.get("/metrics").text
    assert 'route="/api/collections",status="4xx"} 2.0' in m


def test_bucket_refills_over_time(client_for: ClientFor, backend: dict[str, str]) -> None:
    client = client_for(rate_limit_ip_per_s=20, rate_limit_ip_burst=1, **backend)
    assert client.get("/api/collections").status_code == 200
    # A refused request (it may already have refilled on a slow machine, which is fine too).
    codes = [client.get("/api/collections").status_code for _ in range(5)]
    assert 429 in codes
    assert wait_until(lambda: client.get("/api/collections").status_code == 200, timeout=5)


def test_unreachable_redis_lets_requests_through(client_for: ClientFor) -> None:
    client = client_for(
        redis_url="redis://127.0.0.1:1/0", rate_limit_ip_per_s=0.001, rate_limit_ip_burst=1
    )
    assert [client.get("/api/collections").status_code for _ in range(3)] == [200, 200, 200]


# --- body size ------------------------------------------------------------------------------


def test_declared_body_over_the_limit_is_413(client_for: ClientFor) -> None:
    client = client_for(max_request_bytes=1000)
    r = client.post(
        "/api/search/similar",
        content=b"x" * 5000,
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"
    assert "LOOKALIKE_MAX_REQUEST_BYTES" in r.json()["error"]["message"]
    small = client.post("/api/search/similar", json={"collection": "none", "image_id": "x"})
    assert small.status_code == 404


def _chunked_call(
    app: Any, path: str, chunks: int, chunk: bytes, first: bytes = b""
) -> tuple[int, bytes, int]:
    """Send a body without Content-Length, as chunked uploads come; returns (status, body,
    chunks the app asked for)."""
    asked = 0
    out: list[Message] = []

    async def receive() -> Message:
        nonlocal asked
        asked += 1
        body = first if asked == 1 and first else chunk
        return {"type": "http.request", "body": body, "more_body": asked < chunks}

    async def send(message: Message) -> None:
        out.append(message)

    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"multipart/form-data; boundary=b0undary")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
        "state": {},
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in out if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in out if m["type"] == "http.response.body")
    return start["status"], body, asked


def test_streamed_body_is_refused_once_over_the_limit(client_for: ClientFor) -> None:
    async def reads_everything(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    limited = BodySizeLimitMiddleware(reads_everything, max_bytes=2500)
    status, body, asked = _chunked_call(limited, "/x", chunks=1000, chunk=b"x" * 1000)
    assert status == 413 and b"request_too_large" in body
    assert asked == 3  # stopped at the first chunk over the limit, not after 1 MB

    # The whole app: a multipart search upload that never ends.
    app = client_for(max_request_bytes=10_000).app
    head = (
        b"--b0undary\r\n"
        b'Content-Disposition: form-data; name="file"; filename="q.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n"
    )
    status, body, asked = _chunked_call(
        app, "/api/search/similar", chunks=10**6, chunk=b"y" * 4096, first=head
    )
    assert status == 413 and b"request_too_large" in body
    assert asked <= 5


@contextmanager
def _serving(app: Any) -> Iterator[int]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: server.started, timeout=10)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_real_server_refuses_a_huge_upload_before_reading_it(
    tmp_path: Path, models_dir: Path
) -> None:
    settings = make_settings(tmp_path / "d", models_dir, max_request_bytes=1024 * 1024)
    with Lookalike(settings) as rt, _serving(create_app(runtime=rt)) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            # Announce 10 GB and send none of it: the answer comes anyway, at once.
            started = time.monotonic()
            sock.sendall(
                b"POST /api/search/similar HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: multipart/form-data; boundary=b\r\n"
                b"Content-Length: 10000000000\r\n\r\n"
            )
            answer = b""
            while b"request_too_large" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 413"), answer
        assert b"request_too_large" in answer
        assert time.monotonic() - started < 5


# --- CORS and gzip -------------------------------------------------------------------------


def test_cors_preflight_allowed_and_denied(client_for: ClientFor) -> None:
    client = client_for(cors_origins=["https://shop.example"])
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    ok = client.options("/api/collections", headers={"Origin": "https://shop.example", **preflight})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://shop.example"
    assert "POST" in ok.headers["access-control-allow-methods"]
    denied = client.options(
        "/api/collections", headers={"Origin": "https://evil.example", **preflight}
    )
    assert denied.status_code == 400
    assert "access-control-allow-origin" not in denied.headers
    simple = client.get("/api/collections", headers={"Origin": "https://shop.example"})
    assert simple.headers["access-control-allow-origin"] == "https://shop.example"
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()


def test_no_cors_headers_without_origins(client: TestClient) -> None:
    r = client.get("/api/collections", headers={"Origin": "https://shop.example"})
    assert "access-control-allow-origin" not in r.headers


def test_large_responses_are_gzipped(client: TestClient, photos: dict[str, bytes]) -> None:
    big = client.get("/api/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert big.headers["content-encoding"] == "gzip"
    assert big.json()["openapi"]  # decoded fine
    small = client.get("/healthz", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in small.headers
    plain = client.get("/api/openapi.json", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
