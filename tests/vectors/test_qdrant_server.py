"""Qdrant server engine only: what the contract suite (run on local mode) cannot show.

No Qdrant server can run where these tests run. Where a test needs a server's answers (the
creation request, a refused API key, a 503, an outage), a tiny stdlib HTTP server on a free
127.0.0.1 port stands in for it: it speaks just enough of Qdrant's REST API for the real
qdrant-client to send its real requests, and records them. What the real server then does
with those requests (shards, replicas, quantization, HNSW) only a test against one can show.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import models as qm

from lookalike.core.errors import (
    CollectionNotFound,
    Misconfigured,
    VectorStoreUnavailable,
)
from lookalike.vectors.base import (
    DatetimeRange,
    Filter,
    IndexSettings,
    MatchAny,
    MatchValue,
    PayloadType,
    Point,
    VectorSpec,
)
from lookalike.vectors.qdrant_server import QdrantServerIndex

from .test_contract import ulids, unit

SECRET = "s3cret-api-key-never-shown"
INDEXES: dict[str, PayloadType] = {"owner": "keyword", "n": "integer", "created_at": "datetime"}
SPECS = (VectorSpec("img", 16), VectorSpec("crops", 8, distance="dot", multivector=True))


# --- a stand-in for a Qdrant server ---------------------------------------------------------


@dataclass
class StandIn:
    """What the stand-in answers (`reply(method, path) -> (status, body)`) and what it got."""

    url: str
    reply: Callable[[str, str], tuple[int, Any]]
    # method, path, JSON body, headers
    requests: list[tuple[str, str, Any, dict[str, str]]] = field(default_factory=list)


def ok(result: Any) -> tuple[int, Any]:
    return 200, {"result": result, "status": "ok", "time": 0.0}


def empty_qdrant(method: str, path: str) -> tuple[int, Any]:
    """A Qdrant with no collections that accepts whatever is created."""
    route = path.split("?", 1)[0]
    if method == "GET" and route == "/collections":
        return ok({"collections": []})
    if method == "GET" and route.endswith("/exists"):
        return ok({"exists": False})
    if method == "PUT" and route.endswith("/index"):
        return ok({"operation_id": 1, "status": "completed"})
    if method == "PUT" and route.startswith("/collections/"):
        return ok(True)
    return 404, {"status": {"error": f"Not found: {route}"}, "time": 0.0}


@pytest.fixture
def stand_in() -> Iterator[Callable[[Callable[[str, str], tuple[int, Any]]], StandIn]]:
    servers: list[ThreadingHTTPServer] = []

    def start(reply: Callable[[str, str], tuple[int, Any]]) -> StandIn:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        state = StandIn(f"http://127.0.0.1:{server.server_address[1]}", reply)
        server.state = state  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return state

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


class _Handler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        state: StandIn = self.server.state  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        state.requests.append(
            (self.command, self.path, json.loads(raw) if raw else None, dict(self.headers))
        )
        status, body = state.reply(self.command, self.path)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    # http.server dispatches on these names.
    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _answer  # noqa: N815

    def log_message(self, *args: Any) -> None:  # quiet test output
        pass


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: a connection is refused


# --- the creation request -------------------------------------------------------------------


def test_creation_parameters_reach_the_server(stand_in: Any) -> None:
    server = stand_in(empty_qdrant)
    with QdrantServerIndex(
        server.url,
        namespace="shop-1",
        shard_number=3,
        replication_factor=2,
        write_consistency_factor=2,
        on_disk=True,
    ) as index:
        settings = IndexSettings(
            hnsw_m=32, hnsw_ef_construct=200, quantization="int8", indexing_threshold=1000
        )
        index.create_collection("photos", SPECS, settings, INDEXES)

    (create,) = [
        r for r in server.requests if r[0] == "PUT" and r[1].split("?")[0].endswith("photos")
    ]
    assert create[1].startswith("/collections/shop-1_photos")
    body = create[2]
    assert body["shard_number"] == 3
    assert body["replication_factor"] == 2
    assert body["write_consistency_factor"] == 2
    assert body["vectors"] == {
        "img": {"size": 16, "distance": "Cosine", "on_disk": True},
        "crops": {
            "size": 8,
            "distance": "Dot",
            "on_disk": True,
            "multivector_config": {"comparator": "max_sim"},
        },
    }
    assert body["hnsw_config"] == {"m": 32, "ef_construct": 200}
    assert body["quantization_config"] == {
        "scalar": {"type": "int8", "quantile": 0.99, "always_ram": True}
    }
    # 1000 points of 16 + 8 floats: 94 KB of vectors before the server indexes a segment.
    assert body["optimizers_config"] == {"indexing_threshold": 94}
    assert body["metadata"]["lookalike"]["vectors"][1] == {
        "name": "crops",
        "dim": 8,
        "distance": "dot",
        "multivector": True,
    }
    indexes = {
        r[2]["field_name"]: r[2]["field_schema"]
        for r in server.requests
        if r[1].startswith("/collections/shop-1_photos/index")
    }
    assert indexes == {"owner": "keyword", "n": "integer", "created_at": "datetime"}
    assert all(
        "wait=true" in r[1] for r in server.requests if r[1].endswith("/index") or "/index?" in r[1]
    )


# --- an unreachable or refusing server ------------------------------------------------------


def test_an_unreachable_server_is_unavailable_naming_qdrant_and_the_url() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    with pytest.raises(VectorStoreUnavailable) as caught:
        QdrantServerIndex(url, api_key=SECRET, timeout_s=1)
    assert time.monotonic() - started < 5
    assert "Qdrant" in caught.value.message
    assert url in caught.value.message
    assert SECRET not in caught.value.message


def test_a_server_that_never_answers_is_unavailable_after_the_timeout() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # connections are taken by the kernel, never answered
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(VectorStoreUnavailable) as caught:
            QdrantServerIndex(url, timeout_s=1)
        took = time.monotonic() - started
    assert 0.9 <= took < 5, took
    assert url in caught.value.message


def test_grpc_to_an_unreachable_server_is_unavailable() -> None:
    # qdrant-client sends gRPC to port 6334 whatever the URL says.
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 6334)) == 0:
            pytest.skip("something listens on 127.0.0.1:6334 (a Qdrant?)")
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(VectorStoreUnavailable) as caught:
        QdrantServerIndex(url, api_key=SECRET, prefer_grpc=True, timeout_s=2)
    assert url in caught.value.message
    assert SECRET not in caught.value.message


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_api_key_is_a_configuration_error(stand_in: Any, status: int) -> None:
    server = stand_in(lambda method, path: (status, {"status": {"error": "Invalid api-key"}}))
    with pytest.raises(Misconfigured) as caught:
        QdrantServerIndex(server.url, api_key=SECRET)
    assert not isinstance(caught.value, VectorStoreUnavailable)
    assert "API key" in caught.value.message
    assert server.url in caught.value.message
    assert SECRET not in caught.value.message
    assert server.requests[0][3].get("api-key") == SECRET  # it was sent, as a header


def test_a_server_answering_503_is_unavailable(stand_in: Any) -> None:
    server = stand_in(lambda method, path: (503, {"status": {"error": "Service Unavailable"}}))
    with pytest.raises(VectorStoreUnavailable) as caught:
        QdrantServerIndex(server.url, api_key=SECRET)
    assert "Qdrant" in caught.value.message
    assert server.url in caught.value.message
    assert SECRET not in caught.value.message


def test_an_outage_after_opening_makes_each_call_unavailable(stand_in: Any) -> None:
    down = threading.Event()

    def reply(method: str, path: str) -> tuple[int, Any]:
        if down.is_set():
            return 502, {"status": {"error": "Bad Gateway"}}
        return empty_qdrant(method, path)

    server = stand_in(reply)
    with QdrantServerIndex(server.url, api_key=SECRET) as index:
        assert not index.has_collection("photos")
        down.set()
        for call in (
            lambda: index.has_collection("photos"),
            lambda: index.count("photos"),
            lambda: index.search("photos", "img", unit(1)[0]),
            lambda: index.drop_collection("photos"),
        ):
            with pytest.raises(VectorStoreUnavailable) as caught:
                call()
            assert server.url in caught.value.message
            assert SECRET not in caught.value.message


def test_an_unknown_collection_on_the_server_is_not_found(stand_in: Any) -> None:
    server = stand_in(empty_qdrant)
    with QdrantServerIndex(server.url) as index, pytest.raises(CollectionNotFound):
        index.status("nope")


# --- local mode: what it can show -----------------------------------------------------------


def test_reopen_keeps_specs_settings_and_points(tmp_path: Path) -> None:
    settings = IndexSettings(hnsw_m=24, quantization="int8", indexing_threshold=500)
    ids, x = ulids(30), unit(30)
    with QdrantServerIndex(path=tmp_path, namespace="a") as index:
        index.create_collection("photos", SPECS, settings, INDEXES)
        index.upsert(
            "photos",
            [
                Point(i, {"img": v}, {"owner": "ann" if k < 10 else "bob"})
                for k, (i, v) in enumerate(zip(ids, x, strict=True))
            ],
        )
    with QdrantServerIndex(path=tmp_path, namespace="a") as index:
        assert index.vector_specs("photos") == list(SPECS)
        assert index.index_settings("photos") == settings
        assert index.payload_indexes("photos") == INDEXES
        assert index.count("photos", Filter(must=(MatchValue("owner", "ann"),))) == 10
        assert index.search("photos", "img", x[4], limit=1)[0].id == ids[4]
        # Local mode indexes nothing and says so; asking for a build changes nothing.
        index.build_index("photos", wait=True)
        status = index.status("photos")
        assert (status.points, status.indexed_vectors, status.building) == (30, 0, False)
        assert index.maybe_build_index("photos") is False
    with QdrantServerIndex(path=tmp_path, namespace="b") as other:
        assert not other.has_collection("photos")  # another namespace sees nothing


def test_unknown_collections_are_not_found(tmp_path: Path) -> None:
    with QdrantServerIndex(path=tmp_path) as index:
        for call in (
            lambda: index.status("nope"),
            lambda: index.build_index("nope", wait=True),
            lambda: index.scroll("nope"),
            lambda: index.upsert("nope", [Point(ulids(1)[0], {"img": unit(1)[0]})]),
            lambda: index.delete("nope", ulids(1)),
            lambda: index.retrieve("nope", ulids(1)),
        ):
            with pytest.raises(CollectionNotFound):
                call()


@pytest.mark.parametrize("namespace", ["a_b", "", "-x", "a.b"])
def test_a_namespace_that_could_run_into_a_collection_name_is_refused(
    tmp_path: Path, namespace: str
) -> None:
    # With '_' allowed, namespace "a_b" + collection "c" would be namespace "a" + "b_c".
    with pytest.raises(Misconfigured):
        QdrantServerIndex(path=tmp_path, namespace=namespace)


# --- indexing and search requests, as the server gets them ----------------------------------


def collection_info(status: str, *, points: int, indexed: int, error: str | None = None) -> Any:
    """A collection as GET /collections/NAME describes it: SPECS, int8, made by Lookalike."""
    vectors = {
        "img": qm.VectorParams(size=16, distance=qm.Distance.COSINE),
        "crops": qm.VectorParams(
            size=8,
            distance=qm.Distance.DOT,
            multivector_config=qm.MultiVectorConfig(comparator=qm.MultiVectorComparator.MAX_SIM),
        ),
    }
    info = qm.CollectionInfo(
        status=qm.CollectionStatus(status),
        optimizer_status=qm.OptimizersStatusOneOf1(error=error) if error else "ok",
        points_count=points,
        indexed_vectors_count=indexed,
        segments_count=2,
        payload_schema={},
        config=qm.CollectionConfig(
            params=qm.CollectionParams(vectors=vectors),
            hnsw_config=qm.HnswConfig(m=16, ef_construct=100, full_scan_threshold=10000),
            optimizer_config=qm.OptimizersConfig(
                deleted_threshold=0.2,
                vacuum_min_vector_number=1000,
                default_segment_number=0,
                flush_interval_sec=5,
            ),
            wal_config=qm.WalConfig(wal_capacity_mb=32, wal_segments_ahead=0),
            quantization_config=qm.ScalarQuantization(
                scalar=qm.ScalarQuantizationConfig(type=qm.ScalarType.INT8)
            ),
            metadata={
                "lookalike": {
                    "format": 1,
                    "vectors": [asdict(v) for v in SPECS],
                    "settings": asdict(IndexSettings(indexing_threshold=1000)),
                    "payload_indexes": INDEXES,
                }
            },
        ),
    )
    return ok(info.model_dump(mode="json", exclude_none=True))


def test_build_index_waits_for_the_server_and_restores_its_threshold(stand_in: Any) -> None:
    """The server indexes while yellow; `build_index(wait=True)` returns once it is green and
    puts the collection's own threshold back."""
    polls = [0]

    def reply(method: str, path: str) -> tuple[int, Any]:
        route = path.split("?", 1)[0]
        if method == "GET" and route == "/collections/lookalike_photos":
            polls[0] += 1
            if polls[0] < 4:
                return collection_info("yellow", points=100, indexed=polls[0] * 30)
            return collection_info("green", points=100, indexed=100)
        if method == "PATCH":
            return ok(True)
        return empty_qdrant(method, path)

    server = stand_in(reply)
    with QdrantServerIndex(server.url) as index:
        assert index.status("photos").building  # yellow: the optimizer runs
        index.build_index("photos", wait=True)
        status = index.status("photos")
        assert (status.points, status.indexed_vectors, status.building) == (100, 100, False)
    thresholds = [
        r[2]["optimizers_config"]["indexing_threshold"] for r in server.requests if r[0] == "PATCH"
    ]
    # Down to every segment, then back to 1000 points of 16 + 8 floats (94 KB).
    assert thresholds == [1, 94]


def test_an_optimizer_error_is_the_last_build_error(stand_in: Any) -> None:
    def reply(method: str, path: str) -> tuple[int, Any]:
        if path.startswith("/collections/lookalike_photos"):
            return collection_info("red", points=10, indexed=0, error="disk full")
        return empty_qdrant(method, path)

    server = stand_in(reply)
    with QdrantServerIndex(server.url) as index:
        assert index.status("photos").last_build_error == "disk full"


def test_a_search_sends_its_parameters_and_filter(stand_in: Any) -> None:
    def reply(method: str, path: str) -> tuple[int, Any]:
        route = path.split("?", 1)[0]
        if route == "/collections/lookalike_photos":
            return collection_info("green", points=10, indexed=10)
        if route == "/collections/lookalike_photos/points/query":
            return ok({"points": []})
        return empty_qdrant(method, path)

    server = stand_in(reply)
    query_filter = Filter(
        must=(MatchValue("nsfw", False), MatchAny("n", (1, "x"))),
        must_not=(
            DatetimeRange(
                "created_at", gte=datetime(2024, 1, 1, 9, tzinfo=timezone(timedelta(hours=9)))
            ),
        ),
    )
    with QdrantServerIndex(server.url) as index:
        assert (
            index.search(
                "photos", "crops", unit(2, dim=8), limit=5, ef=77, query_filter=query_filter
            )
            == []
        )
        index.search("photos", "img", unit(1)[0], exact=True)
    first, second = [
        r[2]
        for r in server.requests
        if r[1].startswith("/collections/lookalike_photos/points/query")
    ]
    assert first["using"] == "crops"
    assert len(first["query"]["nearest"]) == 2  # a multivector query: two rows
    assert first["params"] == {
        "hnsw_ef": 77,
        "exact": False,
        "quantization": {"ignore": False, "rescore": True, "oversampling": 2.0},
    }
    assert first["filter"]["must"][0] == {"key": "nsfw", "match": {"value": False}}
    assert first["filter"]["must"][1] == {
        "should": [
            {"key": "n", "match": {"any": ["x"]}},
            {"key": "n", "match": {"any": [1]}},
        ]
    }
    # A time is sent as the instant, in UTC.
    assert first["filter"]["must_not"][0]["range"]["gte"] in (
        "2024-01-01T00:00:00Z",
        "2024-01-01T00:00:00+00:00",
    )
    # Exact search skips the int8 copy.
    assert second["params"]["exact"] is True
    assert second["params"]["quantization"]["ignore"] is True


def test_a_url_where_something_else_answers_is_a_configuration_error(stand_in: Any) -> None:
    server = stand_in(lambda method, path: (404, {"detail": "Not Found"}))
    with pytest.raises(Misconfigured) as caught:
        QdrantServerIndex(server.url)
    assert server.url in caught.value.message
