"""Metrics, request ids, JSON logs and the 500 answer of the HTTP API."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from lookalike.api.app import create_app
from lookalike.auth.tokens import create_token
from lookalike.composition import Lookalike
from lookalike.core.logs import JsonFormatter, configure_logging, install_record_factory
from lookalike.core.timing import _NO_TIMER, add_stage_sink, remove_stage_sink, timed
from support import make_settings

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape(client: TestClient) -> Samples:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _value(samples: Samples, name: str, /, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (n, labels) in samples if n == name]


def _json_lines(handler_buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in handler_buf.getvalue().splitlines()]


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    install_record_factory()
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("lookalike")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield buf
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def test_metrics_count_requests_by_route_template_and_stage(
    client: TestClient, photos: dict[str, bytes]
) -> None:
    assert client.post("/api/collections", json={"name": "shop"}).status_code == 201
    files = [("images", (f"{n}.png", photos[n], "image/png")) for n in ("chelsea", "coffee")]
    r = client.post("/api/collections/shop/records?wait=true", data={"name": "cat"}, files=files)
    assert r.status_code == 201, r.text
    image_ids = [x["image_id"] for x in r.json()["results"]]
    for image_id in image_ids:
        assert client.get(f"/api/images/{image_id}").status_code == 200
    search = {"collection": "shop", "image_id": image_ids[0], "limit": 5}
    for _ in range(3):
        assert client.post("/api/search/similar", json=search).status_code == 200
    upload = {"file": ("q.png", photos["chelsea"], "image/png")}
    r = client.post("/api/search/similar", data={"collection": "shop"}, files=upload)
    assert r.status_code == 200, r.text
    assert client.get("/api/images/nope").status_code == 404
    assert client.get("/api/no/such/path").status_code == 404

    m = _scrape(client)
    total = "lookalike_http_requests_total"
    assert _value(m, total, method="GET", route="/api/images/{image_id}", status="2xx") == 2
    assert _value(m, total, method="GET", route="/api/images/{image_id}", status="4xx") == 1
    assert _value(m, total, method="POST", route="/api/search/similar", status="2xx") == 4
    assert _value(m, total, method="GET", route="unmatched", status="4xx") == 1
    # Route templates only: no image id and no raw path becomes a label.
    routes = {s["route"] for s in _series(m, total)}
    assert not any(i in route for i in image_ids for route in routes)
    assert "/api/no/such/path" not in routes
    hist = "lookalike_http_request_duration_seconds"
    labels = {"method": "POST", "route": "/api/search/similar", "status": "2xx"}
    assert _value(m, f"{hist}_count", **labels) == 4
    assert _value(m, f"{hist}_bucket", **labels, le="+Inf") == 4
    assert _value(m, f"{hist}_sum", **labels) > 0

    stage = "lookalike_stage_duration_seconds_count"
    assert _value(m, stage, operation="search", stage="vector_search") >= 4
    assert _value(m, stage, operation="search", stage="catalog") >= 4
    assert _value(m, stage, operation="search", stage="decode") >= 1
    assert _value(m, stage, operation="search", stage="embed") >= 1
    for name in ("decode", "embed", "vector_upsert", "catalog_row", "blob_store"):
        assert _value(m, stage, operation="ingest", stage=name) >= 1, name

    assert ("lookalike_ingest_queue_depth", frozenset()) in m
    assert _value(m, "lookalike_ingest_in_flight") == 0
    [model] = _series(m, "lookalike_model_loaded")
    assert model["model"] == "efficientnet-lite0"
    assert model["model_id"].startswith("efficientnet-lite0")
    assert _value(m, "lookalike_model_loaded", **model) == 1
    # Totals only: /metrics is unauthenticated, so no series names a tenant's collection.
    assert _value(m, "lookalike_collections") == 1
    assert _value(m, "lookalike_vector_points") == 2
    assert _value(m, "lookalike_vector_index_builds_running") == 0
    assert _value(m, "lookalike_vector_index_builds_failed") == 0
    text = client.get("/metrics").text
    collection = client.get("/api/collections/shop").json()
    assert "shop" not in text and collection["id"] not in text


def test_each_app_has_its_own_registry(rt: Lookalike) -> None:
    with TestClient(create_app(runtime=rt)) as one, TestClient(create_app(runtime=rt)) as two:
        for _ in range(3):
            one.get("/healthz")
        two.get("/healthz")
        key = {"method": "GET", "route": "/healthz", "status": "2xx"}
        assert _value(_scrape(one), "lookalike_http_requests_total", **key) == 3
        assert _value(_scrape(two), "lookalike_http_requests_total", **key) == 1


def test_metrics_can_be_switched_off(tmp_path: Path, models_dir: Path) -> None:
    settings = make_settings(tmp_path / "d", models_dir, metrics_enabled=False)
    with Lookalike(settings) as rt, TestClient(create_app(runtime=rt)) as client:
        assert client.get("/metrics").status_code == 404
        assert client.get("/healthz").headers["x-request-id"]


def test_stage_timer_is_a_no_op_without_sinks() -> None:
    assert timed("search", "embed") is _NO_TIMER
    seen: list[tuple[str, str, float]] = []

    class Sink:
        def observe_stage(
            self, operation: str, stage: str, seconds: float, cpu_seconds: float | None = None
        ) -> None:
            seen.append((operation, stage, seconds))

    sink = Sink()
    add_stage_sink(sink)
    try:
        with timed("search", "embed"):
            pass
    finally:
        remove_stage_sink(sink)
    assert [(o, s) for o, s, _ in seen] == [("search", "embed")]
    assert timed("search", "embed") is _NO_TIMER


def test_request_id_is_echoed_or_made_and_logged(client: TestClient, captured: io.StringIO) -> None:
    r = client.get("/api/collections", headers={"X-Request-ID": "req-42.abc"})
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "req-42.abc"
    made = [client.get("/api/collections").headers["x-request-id"] for _ in range(2)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", m) for m in made) and made[0] != made[1]
    # Ids that could forge log lines or headers are replaced, not echoed.
    for bad in (b"x" * 200, b"two words", "a\u00e9b".encode("latin-1")):
        got = client.get("/api/collections", headers={"X-Request-ID": bad}).headers
        assert re.fullmatch(r"[0-9a-f]{32}", got["x-request-id"])

    access = [x for x in _json_lines(captured) if x["logger"] == "lookalike.access"]
    assert len(access) == 6
    first = access[0]
    assert first["request_id"] == "req-42.abc"
    assert first["method"] == "GET" and first["route"] == "/api/collections"
    assert first["status"] == 200 and first["level"] == "info"
    assert isinstance(first["duration_ms"], float) and first["duration_ms"] >= 0
    assert first["tenant"] == "default"
    assert [a["request_id"] for a in access[1:3]] == made


def test_access_line_names_the_tenant(
    tmp_path: Path, models_dir: Path, captured: io.StringIO
) -> None:
    settings = make_settings(tmp_path / "d", models_dir, auth="on", secret_key="s" * 32)
    token = create_token(settings, user="alice", tenant="acme")
    with Lookalike(settings) as rt, TestClient(create_app(runtime=rt)) as client:
        headers = {"Authorization": f"Bearer {token}", "X-Request-ID": "t-1"}
        assert client.get("/api/collections", headers=headers).status_code == 200
        assert client.get("/api/collections", headers={"X-Request-ID": "t-2"}).status_code == 401
    access = {
        x["request_id"]: x for x in _json_lines(captured) if x["logger"] == "lookalike.access"
    }
    assert access["t-1"]["tenant"] == "acme"
    assert "tenant" not in access["t-2"] and access["t-2"]["status"] == 401


def test_unhandled_error_is_a_plain_500_and_a_logged_trace(
    rt: Lookalike, captured: io.StringIO
) -> None:
    app = create_app(runtime=rt)

    @app.get("/api/boom")
    def boom() -> None:
        logging.getLogger("lookalike.test").info("about to fail")
        raise RuntimeError("secret detail /etc/passwd")

    with TestClient(app) as client:
        r = client.get("/api/boom", headers={"X-Request-ID": "boom-1"})
        m = _scrape(client)
    assert r.status_code == 500
    assert r.headers["x-request-id"] == "boom-1"
    assert r.json() == {"error": {"code": "internal", "message": r.json()["error"]["message"]}}
    assert "Traceback" not in r.text and "secret" not in r.text and "boom" not in r.text
    assert _value(m, "lookalike_http_requests_total", method="GET", route="/api/boom", status="5xx")

    lines = [x for x in _json_lines(captured) if x.get("request_id") == "boom-1"]
    # The line the route logged from its worker thread carries the id too.
    assert any(x["message"] == "about to fail" for x in lines)
    [error] = [x for x in lines if x["level"] == "error"]
    assert "Traceback" in str(error["exc_info"]) and "secret detail" in str(error["exc_info"])
    [access] = [x for x in lines if x["logger"] == "lookalike.access"]
    assert access["status"] == 500


def test_configure_logging_prints_json_lines() -> None:
    buf = io.StringIO()
    loggers = [logging.getLogger(name) for name in ("lookalike", "uvicorn")]
    saved = [(lg.level, lg.propagate) for lg in loggers]
    handler = configure_logging("json", stream=buf)
    try:
        logging.getLogger("lookalike.x").info("hello %s", "world", extra={"count": 3})
    finally:
        for lg, (level, propagate) in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate
    [line] = _json_lines(buf)
    assert line["message"] == "hello world" and line["count"] == 3
    assert line["level"] == "info" and line["logger"] == "lookalike.x"
    assert "request_id" not in line
