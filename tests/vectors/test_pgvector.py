"""pgvector only: what the contract cannot see from outside — the ANN index kinds, filtered
HNSW that fills `limit` (iterative scans), payload filters that use their expression indexes,
an outage of the server, and SQL injection through names and filter values."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from pgvector import Vector
from pgvector.psycopg import register_vector
from psycopg import sql

from backends import namespace_for
from backends.pgvector import private_pgvector_server
from lookalike.core.errors import InvalidInput, Misconfigured, VectorStoreUnavailable
from lookalike.vectors.base import (
    Condition,
    DatetimeRange,
    Filter,
    HasId,
    IndexSettings,
    IsEmpty,
    MatchAny,
    MatchValue,
    Point,
    Range,
    VectorSpec,
)
from lookalike.vectors.pgvector import PgvectorIndex, _compile
from support import free_port

from .test_contract import DIM, MANUAL, T0, C, ulids, unit
from .test_contract import PAYLOAD_INDEXES as INDEXES


@pytest.fixture
def namespace(tmp_path: Path) -> str:
    return namespace_for(tmp_path)


@pytest.fixture
def sql_conn(pgvector_server: str) -> Iterator[psycopg.Connection[Any]]:
    """A plain connection to the test server, to look at what the engine made."""
    with psycopg.connect(pgvector_server, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        yield conn


@pytest.fixture
def open_pgvector(pgvector_server: str, namespace: str) -> Iterator[Any]:
    opened: list[PgvectorIndex] = []

    def _open(**options: Any) -> PgvectorIndex:
        index = PgvectorIndex(pgvector_server, namespace=namespace, **options)
        opened.append(index)
        return index

    yield _open
    for index in opened:
        index.close()
    with psycopg.connect(pgvector_server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(namespace)))


def _table(namespace: str, name: str = C) -> sql.Composable:
    return sql.Identifier(namespace, f"c.{name}")


def _indexdef(conn: psycopg.Connection[Any], namespace: str, name: str) -> str:
    row = conn.execute(
        "SELECT pg_get_indexdef(to_regclass(%s))", [f'"{namespace}"."{name}"']
    ).fetchone()
    assert row is not None
    assert row[0] is not None, f"no index {name}"
    return str(row[0])


@pytest.mark.parametrize("kind", ["hnsw", "ivfflat"])
@pytest.mark.parametrize("distance", ["cosine", "dot", "euclid"])
def test_index_kinds_and_distances(
    open_pgvector: Any,
    sql_conn: psycopg.Connection[Any],
    namespace: str,
    kind: str,
    distance: str,
) -> None:
    """Each index kind on each distance: the index is what was asked for, searches through it
    find each point's own vector first, and scores are on Edge's scale."""
    index = open_pgvector(index=kind)
    index.create_collection(C, [VectorSpec("img", DIM, distance)], MANUAL, INDEXES)  # type: ignore[arg-type]
    n = 3000
    ids, x = ulids(n), unit(n, seed=2)
    index.upsert(
        C, [Point(i, {"img": v}, {"n": k}) for k, (i, v) in enumerate(zip(ids, x, strict=True))]
    )
    index.build_index(C, wait=True)
    definition = _indexdef(sql_conn, namespace, "c.photos#ann0")
    opclass = {"cosine": "cosine_ops", "dot": "ip_ops", "euclid": "l2_ops"}[distance]
    assert f"USING {kind}" in definition
    if distance != "euclid":  # l2 is the default operator class, which the definition omits
        assert f"vector_{opclass}" in definition
    if kind == "ivfflat":
        assert "lists='3'" in definition  # a list per thousand points
    assert index.status(C).indexed_vectors == n

    query = x[17]
    hits = index.search(C, "img", query, limit=5, ef=64)
    assert hits[0].id == ids[17]
    exact = {"cosine": x @ query, "dot": x @ query, "euclid": np.linalg.norm(x - query, axis=1)}[
        distance
    ]
    order = np.argsort(exact if distance == "euclid" else -exact)[:5]
    exact_hits = index.search(C, "img", query, limit=5, exact=True)
    assert [h.id for h in exact_hits] == [ids[k] for k in order]
    np.testing.assert_allclose([h.score for h in exact_hits], exact[order], atol=1e-4)


def test_int8_indexes_a_halfvec_copy_and_rescores(
    open_pgvector: Any, sql_conn: psycopg.Connection[Any], namespace: str
) -> None:
    index = open_pgvector()
    index.create_collection(
        C,
        [VectorSpec("img", DIM)],
        IndexSettings(quantization="int8", indexing_threshold=10**9),
        {},
    )
    ids, x = ulids(1000), unit(1000, seed=3)
    index.upsert(C, [Point(i, {"img": v}) for i, v in zip(ids, x, strict=True)])
    index.build_index(C, wait=True)
    assert "halfvec_cosine_ops" in _indexdef(sql_conn, namespace, "c.photos#ann0")
    hit = index.search(C, "img", x[5], limit=1)[0]
    assert hit.id == ids[5]
    assert hit.score == pytest.approx(1.0, abs=1e-6)  # rescored on the full vector


def test_a_ten_percent_filter_fills_k_through_hnsw(
    open_pgvector: Any,
    sql_conn: psycopg.Connection[Any],
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Plain pgvector filters the `hnsw.ef_search` (40) nearest after the index scan: with 1 point
    in 10 passing, about 4 of 10 asked come back. The engine's iterative scans return all 10,
    through the index (no exact scan behind them)."""
    n, k = 10_000, 10
    index = open_pgvector()
    # With a lighter graph than the default (m 16, ef_construction 100), the planner prefers the
    # index to a scan of these 10k rows, and the build takes 2 s instead of 5 on two cores.
    light = IndexSettings(hnsw_m=8, hnsw_ef_construct=32, indexing_threshold=10**9)
    index.create_collection(C, [VectorSpec("img", DIM)], light, INDEXES)
    ids, x = ulids(n), unit(n, seed=6)
    # "group" has no payload index: the planner cannot answer from a payload index instead.
    index.upsert(
        C,
        [
            Point(i, {"img": v}, {"group": "a" if j % 10 == 3 else "b"})
            for j, (i, v) in enumerate(zip(ids, x, strict=True))
        ],
    )
    index.build_index(C, wait=True)
    chosen = np.arange(n) % 10 == 3
    queries = unit(20, seed=8)

    raw = sql.SQL(
        "SELECT id FROM {} WHERE payload -> 'group' @> '\"a\"' ORDER BY v0 <=> %s LIMIT %s"
    ).format(_table(namespace))
    plan = "\n".join(
        r[0] for r in sql_conn.execute(sql.SQL("EXPLAIN ") + raw, [Vector(queries[0]), k])
    )
    assert "c.photos#ann0" in plan
    plain = []
    for q in queries:
        with sql_conn.transaction():
            sql_conn.execute("SET LOCAL hnsw.iterative_scan = off")
            plain.append(len(sql_conn.execute(raw, [Vector(q), k]).fetchall()))
    assert np.mean(plain) < k / 2  # the under-fetch the engine must avoid

    caplog.set_level(logging.INFO, logger="lookalike.vectors.pgvector")
    only_a = Filter(must=(MatchValue("group", "a"),))
    recalls = []
    for q in queries:
        hits = index.search(C, "img", q, limit=k, query_filter=only_a)
        assert len(hits) == k
        truth = {ids[j] for j in np.argsort(-np.where(chosen, x @ q, -np.inf))[:k]}
        recalls.append(len(truth & {h.id for h in hits}) / k)
    assert np.mean(recalls) >= 0.9
    assert "came back short" not in caplog.text


def test_multivector_through_its_index_matches_exact_maxsim(open_pgvector: Any) -> None:
    index = open_pgvector()
    index.create_collection(
        C, [VectorSpec("img", DIM), VectorSpec("crops", DIM, multivector=True)], MANUAL, INDEXES
    )
    rng = np.random.default_rng(3)
    n = 1500
    ids = ulids(n)
    crops = [unit(int(rng.integers(1, 5)), seed=100 + j) for j in range(n)]
    index.upsert(
        C,
        [
            Point(i, {"crops": c}, {"owner": "ann" if j % 4 == 0 else "bob"})
            for j, (i, c) in enumerate(zip(ids, crops, strict=True))
        ],
    )
    query = unit(3, seed=7)
    only_ann = Filter(must=(MatchValue("owner", "ann"),))
    before = [index.search(C, "crops", query, limit=10, query_filter=f) for f in (None, only_ann)]
    index.build_index(C, wait=True)
    assert index.status(C).indexed_vectors == n
    for query_filter, exact in zip((None, only_ann), before, strict=True):
        hits = index.search(C, "crops", query, limit=10, query_filter=query_filter)
        assert [h.id for h in hits] == [h.id for h in exact]
        np.testing.assert_allclose([h.score for h in hits], [h.score for h in exact], atol=1e-5)


# --- filters and their indexes ---------------------------------------------------------------


INDEXED_FILTERS: dict[str, tuple[Condition, str]] = {
    "keyword": (MatchValue("owner", "ann"), "#p3g"),
    "list": (MatchAny("tags", ("cat", "dog")), "#p5g"),
    "integer_range": (Range("n", gte=10, lt=20), "#p1b"),
    "float_range": (Range("quality", gt=0.9), "#p4b"),
    "datetime": (DatetimeRange("created_at", gte=T0), "#p0b"),
    "bool": (MatchValue("nsfw", True), "#p2g"),
}


@pytest.mark.parametrize("case", INDEXED_FILTERS, ids=list(INDEXED_FILTERS))
def test_filters_can_use_their_payload_index(
    open_pgvector: Any, sql_conn: psycopg.Connection[Any], namespace: str, case: str
) -> None:
    """Each payload index is on the very expression the filter compiles to (sorted keys:
    created_at p0, n p1, nsfw p2, owner p3, quality p4, tags p5)."""
    open_pgvector().create_collection(C, [VectorSpec("img", DIM)], MANUAL, INDEXES)
    condition, suffix = INDEXED_FILTERS[case]
    where, params = _compile(Filter(must=(condition,)), sql.Identifier(namespace))
    query = sql.SQL("EXPLAIN SELECT id FROM {} WHERE {}").format(_table(namespace), where)
    with sql_conn.transaction():
        sql_conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in sql_conn.execute(query, params))
    assert f"c.photos{suffix}" in plan, plan


def test_datetimes_compare_as_instants_and_bad_strings_do_not_fail(open_pgvector: Any) -> None:
    index = open_pgvector()
    index.create_collection(C, [VectorSpec("img", DIM)], MANUAL, INDEXES)
    ids, x = ulids(5), unit(5)
    stamps = [
        "2024-01-01T09:00:00+09:00",  # midnight UTC
        "2023-12-31T23:30:00-01:00",  # 00:30 UTC
        "2024-01-01T01:00:00Z",
        "not a date",
        "now",  # a PostgreSQL special value, not a date here
    ]
    index.upsert(
        C, [Point(i, {"img": v}, {"created_at": s}) for i, v, s in zip(ids, x, stamps, strict=True)]
    )
    window = DatetimeRange("created_at", gte=T0, lt=T0.replace(hour=1))
    assert {p.id for p in index.iter_points(C, query_filter=Filter(must=(window,)))} == set(ids[:2])
    assert index.count(C, Filter(must=(DatetimeRange("created_at", gte=T0.replace(year=1)),))) == 3


# --- outage -------------------------------------------------------------------------------------


def test_outage_is_reported_and_recovered(tmp_path: Path) -> None:
    with private_pgvector_server() as server:
        # trust authentication ignores the password; it must still never show in a message.
        dsn = server.dsn.replace("lookalike@", "lookalike:s3cret@")
        where = f"127.0.0.1:{server.port}/lookalike"
        index = PgvectorIndex(dsn, namespace="outage")
        try:
            index.create_collection(C, [VectorSpec("img", DIM)], MANUAL, INDEXES)
            ids, x = ulids(200), unit(200)
            index.upsert(C, [Point(i, {"img": v}) for i, v in zip(ids, x, strict=True)])
            index.build_index(C, wait=True)

            server.stop()
            for call in (
                lambda: index.search(C, "img", x[3], limit=1),
                lambda: index.count(C),
                lambda: index.upsert(C, [Point(ids[0], {"img": x[0]})]),
                lambda: PgvectorIndex(dsn, namespace="outage"),
            ):
                with pytest.raises(VectorStoreUnavailable) as caught:
                    call()
                message = caught.value.message
                assert "PostgreSQL (pgvector)" in message
                assert where in message
                assert "s3cret" not in message

            server.start()
            assert index.search(C, "img", x[3], limit=1)[0].id == ids[3]
            assert index.count(C) == 200
            assert index.status(C).indexed_vectors == 200
        finally:
            index.close()


def test_an_unreachable_server_fails_at_once() -> None:
    with pytest.raises(VectorStoreUnavailable, match=r"PostgreSQL \(pgvector\) at 127\.0\.0\.1:"):
        PgvectorIndex(f"postgresql://nobody:pw@127.0.0.1:{free_port()}/db")


def test_a_database_without_pgvector_is_named_in_the_error(
    sql_conn: psycopg.Connection[Any],
) -> None:
    """pgvector ships with the server but is not enabled in this database, and the user may not
    enable it: the error says so and names the server."""
    for statement in (
        "DROP DATABASE IF EXISTS no_vector",
        "CREATE DATABASE no_vector",
        "DROP ROLE IF EXISTS plain_user",
        "CREATE ROLE plain_user LOGIN NOSUPERUSER",
    ):
        sql_conn.execute(statement)
    host, port = sql_conn.info.host, sql_conn.info.port
    try:
        with pytest.raises(Misconfigured) as caught:
            PgvectorIndex(f"postgresql://plain_user@{host}:{port}/no_vector")
        assert f"PostgreSQL (pgvector) at {host}:{port}/no_vector" in caught.value.message
        assert "CREATE EXTENSION vector" in caught.value.message
    finally:
        sql_conn.execute("DROP DATABASE IF EXISTS no_vector")
        sql_conn.execute("DROP ROLE IF EXISTS plain_user")


# --- injection ------------------------------------------------------------------------------------


def test_sql_in_names_and_values_is_only_data(
    open_pgvector: Any, sql_conn: psycopg.Connection[Any], namespace: str
) -> None:
    index = open_pgvector()
    evil_key = "owner'); DROP TABLE registry; --"
    index.create_collection(
        C, [VectorSpec("img", DIM)], MANUAL, {**INDEXES, evil_key: "keyword", 'a"b': "integer"}
    )
    for name in ('x"; DROP SCHEMA public CASCADE; --', "x'; SELECT 1; --", "a b", "../x"):
        with pytest.raises(InvalidInput):
            index.create_collection(name, [VectorSpec("img", DIM)], MANUAL, {})
        assert not index.has_collection(name)
    with pytest.raises(InvalidInput):
        PgvectorIndex(sql_conn.info.dsn, namespace='x"; DROP SCHEMA public; --')
    # A name with '.' and '-' is fine, and quoted everywhere.
    index.create_collection("a.b-c", [VectorSpec("img", DIM)], MANUAL, INDEXES)

    ids, x = ulids(4), unit(4)
    payloads: list[dict[str, Any]] = [
        {"owner": "'; DROP TABLE registry; --", evil_key: "x", 'a"b': 1},
        {"owner": "ann", "tags": ["') OR TRUE; --"], evil_key: "y"},
        {"owner": 'bob" OR 1=1 --', "n": 3},
        {"owner": "ann"},
    ]
    index.upsert(C, [Point(i, {"img": v}, p) for i, v, p in zip(ids, x, payloads, strict=True)])
    attempts: list[tuple[Condition, set[str]]] = [
        (MatchValue("owner", "'; DROP TABLE registry; --"), {ids[0]}),
        (MatchValue("owner", "x' OR '1'='1"), set()),
        (MatchAny("tags", ("') OR TRUE; --", "x")), {ids[1]}),
        (MatchValue(evil_key, "y"), {ids[1]}),
        (Range('a"b', gte=1), {ids[0]}),
        (IsEmpty("owner' OR 1=1 --"), set(ids)),
        (HasId((ids[2],)), {ids[2]}),
    ]
    for condition, expected in attempts:
        query_filter = Filter(must=(condition,))
        assert {p.id for p in index.iter_points(C, query_filter=query_filter)} == expected
        assert {
            h.id for h in index.search(C, "img", x[0], limit=10, query_filter=query_filter)
        } == (expected)
    with pytest.raises(InvalidInput):
        index.count(C, Filter(must=(HasId(("1' OR '1'='1",)),)))
    with pytest.raises(InvalidInput):
        index.count(C, Filter(must=(MatchValue("own\x00er", "ann"),)))
    index.set_payload(C, [ids[3]], {"owner": "'); DELETE FROM x; --"})
    assert index.retrieve(C, [ids[3]])[0].payload == {"owner": "'); DELETE FROM x; --"}

    # Everything is still there.
    assert index.count(C) == 4
    assert index.has_collection("a.b-c")
    tables = sql_conn.execute(
        "SELECT count(*) FROM pg_tables WHERE schemaname = %s", [namespace]
    ).fetchone()
    assert tables is not None
    assert tables[0] == 3  # the registry and two collections
