"""PostgreSQL with pgvector: collections as tables, searched with HNSW or IVFFlat indexes.

Layout, one schema per namespace (`LOOKALIKE_VECTORS_NAMESPACE`)::

    "<ns>".registry              one row per collection: name, table, vector specs, index
                                 settings and payload indexes as JSON (what `vector_specs` returns)
    "<ns>"."c.<name>"            id text primary key (a ULID), payload jsonb, one vector(dim)
                                 column "v<i>" per dense vector (i: its place in the specs)
    "<ns>"."c.<name>#mv<i>"      multivector i: (id, row, vec), one row per vector of a point
    "<ns>".lookalike_instant()   an ISO 8601 string as a timestamptz, immutable, for indexes

'#' and '~' never occur in collection names, so no collection's tables or indexes can take
another's name; a name too long for PostgreSQL's 63-byte identifiers is cut and given a hash.

Filters become SQL with every value bound as a parameter. A condition on `key` reads
`payload -> 'key'`: `MatchValue`/`MatchAny` test jsonb containment (`@>`), which holds both for
a scalar equal to the value and for a list holding it; `Range` compares the number as `numeric`,
`DatetimeRange` the instant (payloads hold ISO strings in any UTC offset). Each payload index is
an expression index on exactly the expression the filters use (GIN for keyword, integer and bool
keys, btree on the numeric or instant), so the planner can pick it. Inside `must_not` every
condition is `COALESCE(..., false)`: a missing field makes a comparison NULL, and `NOT NULL` would
drop the point instead of keeping it. Keys name top-level payload fields ("a.b" is one key, not
a path), and a range matches a scalar, not the numbers inside a list.

ANN indexes are built by `build_index` (or by `maybe_build_index` once a collection holds
`indexing_threshold` points), with `CREATE INDEX CONCURRENTLY`: searches and writes go on
meanwhile, and pgvector keeps the index up to date on every write after that. Until then a
search is an exact scan. `quantization="int8"` indexes a halfvec (16-bit) copy of each vector,
the nearest pgvector has to int8, and rescores twice the candidates on the full vectors.

A filtered HNSW query in plain pgvector visits `hnsw.ef_search` (40) candidates and filters them
afterwards: with a 1% filter, 10 nearest asked, it returns none or one. Every search here turns
on pgvector 0.8's iterative scans (`hnsw.iterative_scan = relaxed_order`, `ivfflat` alike),
which go on walking the graph until enough rows pass the filter; relaxed order can emit rows
slightly out of order, so the rows are sorted again by distance. A scan that still comes back
short (it hit `max_scan_tuples` before enough rows passed) is run again exactly.

Multivectors (MaxSim) live in their side table. The exact score is computed in SQL: for each
query row the best document row, summed. With an index on the side table, the candidates are
the nearest document rows of each query row (through the index), scored exactly.

Scores are on the Qdrant Edge engine's scale: cosine similarity and dot product (higher is
better), euclidean distance (lower is better). Cosine vectors are stored unit-length, as Edge
does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar

import numpy as np
import psycopg
from numpy.typing import NDArray
from pgvector import Vector
from pgvector.psycopg.vector import register_vector_info
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.types import TypeInfo

from lookalike.core.errors import (
    CollectionNotFound,
    Conflict,
    InvalidInput,
    Misconfigured,
    StorageError,
    VectorStoreUnavailable,
)
from lookalike.vectors._common import (
    NAME,
    check_name,
    check_settings,
    check_specs,
    describe,
    payload_in,
    query_vector,
    to_ulid,
    to_uuid,
    vector_array,
)
from lookalike.vectors.base import (
    Condition,
    DatetimeRange,
    Filter,
    HasId,
    Hit,
    IndexSettings,
    IndexStatus,
    IsEmpty,
    MatchAny,
    MatchValue,
    PayloadType,
    Point,
    Range,
    VectorIndex,
    VectorSpec,
)

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_Conn = psycopg.Connection[Any]

_FORMAT = 1
_MIN_PGVECTOR = (0, 8)  # iterative index scans
# pgvector indexes `vector` up to 2000 dimensions and `halfvec` up to 4000.
_MAX_VECTOR_INDEX_DIM = 2000
_DEFAULT_EF_SEARCH = 40  # pgvector's own default
_MAX_EF_SEARCH = 1000  # the highest hnsw.ef_search pgvector takes
# How far an iterative scan may walk before giving up (pgvector's default is 20k tuples); a scan
# that still comes back short is answered by an exact scan instead.
_MAX_SCAN_TUPLES = 50_000
_INT8_OVERSAMPLING = 2
# A multivector search takes this many nearest document rows per query row (at least) as
# candidates for the exact MaxSim.
_MV_CANDIDATES = 100
# How long a call waits for one of the pool's connections before giving up.
_POOL_WAIT_S = 30.0
_CONNECT_TIMEOUT_S = 5
_RETRY_AFTER_S = 60.0  # automatic builds wait this long after a failed one
_OTHER_BUILD_POLL_S = 0.5
_NAMESPACE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,62}$")
_TABLE_NAME_MAX = 40  # "c." + name + "#mvann99" stays within 63 bytes

_OPERATORS = {"cosine": "<=>", "dot": "<#>", "euclid": "<->"}
_OPCLASSES = {"cosine": "cosine_ops", "dot": "ip_ops", "euclid": "l2_ops"}
_PAYLOAD_TYPES = ("keyword", "integer", "float", "datetime", "bool")


class PgvectorIndex(VectorIndex):
    """`VectorIndex` on PostgreSQL with pgvector 0.8+; safe to call from many threads.

    `dsn` is a libpq URL or key=value string (`postgresql://USER@HOST:PORT/DB`); a password in it
    never appears in an error. `namespace` is the schema that holds this instance's collections.
    `pool_size` connections serve calls (a call waits for a free one); index builds use one more
    each. `index` picks the ANN index kind: `hnsw` (`m`, `ef_construction` from the collection's
    `IndexSettings`; `ef` of a search sets `hnsw.ef_search`) or `ivfflat` (lists from the number
    of points when built; `ef` scales the probes).

    The constructor connects, creates the extension, the schema and the registry if missing,
    and raises `VectorStoreUnavailable` naming the server if it cannot reach it.
    """

    def __init__(
        self,
        dsn: str,
        *,
        namespace: str = "lookalike",
        pool_size: int = 4,
        index: Literal["hnsw", "ivfflat"] = "hnsw",
    ) -> None:
        if not _NAMESPACE.match(namespace):
            raise InvalidInput(
                f"namespace {namespace!r}: use 1-63 letters, digits, '_' or '-', "
                "not starting with '-'"
            )
        if index not in ("hnsw", "ivfflat"):
            raise InvalidInput(f"unknown index kind {index!r}: use 'hnsw' or 'ivfflat'")
        if pool_size < 1:
            raise InvalidInput("pool_size must be >= 1")
        self._dsn = dsn
        self._server = _server_label(dsn)
        self._namespace = namespace
        self._kind = index
        self._schema = sql.Identifier(namespace)
        self._registry_lock = threading.Lock()
        self._metas: dict[str, _Meta] = {}
        self._builds: dict[str, _Build] = {}
        self._failed_at: dict[str, float] = {}
        self._build_errors: dict[str, str] = {}
        self._indexed: set[str] = set()  # collections whose ANN indexes are known to be valid
        self._closed = False
        self._vector_info: TypeInfo | None = None
        self._search_path = "public, pg_catalog"
        self._ivf_lists: dict[tuple[str, int], int] = {}
        try:
            conn = psycopg.connect(dsn, **_connect_options(dsn))
        except psycopg.Error as exc:
            raise self._unavailable(exc) from exc
        try:
            self._vector_info = self._set_up(conn)
            register_vector_info(conn, self._vector_info)
        except psycopg.Error as exc:
            outage = _is_outage(conn, exc)
            conn.close()
            if outage:
                raise self._unavailable(exc) from exc
            raise StorageError(f"cannot set up {self._server}: {_first_line(exc)}") from exc
        except BaseException:
            conn.close()
            raise
        self._pool = _Pool(self._connect, pool_size, self._server)
        self._pool.adopt(conn)

    # --- collections ----------------------------------------------------------

    def create_collection(
        self,
        collection: str,
        vectors: Sequence[VectorSpec],
        settings: IndexSettings,
        payload_indexes: Mapping[str, PayloadType],
    ) -> None:
        """Create `collection` (its table, side tables and payload indexes, in one transaction);
        one that exists with the same vectors is left as it is, one with other vectors raises
        `Conflict`."""
        check_name(collection)
        specs = check_specs(vectors)
        check_settings(settings)
        for key, kind in payload_indexes.items():
            if kind not in _PAYLOAD_TYPES:
                raise InvalidInput(f"payload index {key!r}: unknown type {kind!r}")
        meta = _Meta(
            name=collection,
            table=_table_name(collection),
            vectors=specs,
            settings=settings,
            payload_indexes=dict(payload_indexes),
        )

        def work(conn: _Conn) -> None:
            with conn.transaction():
                conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    [f"{self._namespace}/{collection}"],
                )
                existing = self._read_meta(conn, collection)
                if existing is not None:
                    if existing.vectors != specs:
                        raise Conflict(
                            f"collection {collection!r} exists with other vectors "
                            f"({describe(existing.vectors)}); drop it or use another name"
                        )
                    return
                for statement in self._create_statements(meta):
                    conn.execute(statement)
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {}.registry (name, table_name, format, specs, settings, "
                        "payload_indexes) VALUES (%s, %s, %s, %s::jsonb, %s::jsonb, %s::jsonb)"
                    ).format(self._schema),
                    [
                        collection,
                        meta.table,
                        _FORMAT,
                        json.dumps([asdict(v) for v in specs]),
                        json.dumps(asdict(settings)),
                        json.dumps(meta.payload_indexes),
                    ],
                )

        self._run(work)
        with self._registry_lock:
            self._metas.pop(collection, None)
            self._indexed.discard(collection)

    def drop_collection(self, collection: str) -> None:
        """Remove the collection and its points, cancelling a build of it that this instance
        runs; absent is not an error."""
        if not NAME.match(collection):
            return
        self._cancel_build(collection)

        def work(conn: _Conn) -> None:
            with conn.transaction():
                meta = self._read_meta(conn, collection)
                if meta is None:
                    return
                tables = [self._table(meta.table, i) for i in meta.multivector_places]
                tables.append(self._table(meta.table))
                conn.execute(
                    sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.SQL(", ").join(tables))
                )
                conn.execute(
                    sql.SQL("DELETE FROM {}.registry WHERE name = %s").format(self._schema),
                    [collection],
                )

        try:
            self._run(work)
        finally:
            with self._registry_lock:
                self._metas.pop(collection, None)
                self._indexed.discard(collection)
                self._build_errors.pop(collection, None)
                self._failed_at.pop(collection, None)
                for key in [k for k in self._ivf_lists if k[0] == _table_name(collection)]:
                    del self._ivf_lists[key]

    def has_collection(self, collection: str) -> bool:
        if not NAME.match(collection):
            return False
        return self._run(lambda conn: self._read_meta(conn, collection)) is not None

    def vector_specs(self, collection: str) -> list[VectorSpec]:
        """The named vectors the collection was created with (kept in the registry)."""
        return list(self._meta(collection).vectors)

    def index_settings(self, collection: str) -> IndexSettings:
        """The index settings the collection was created with."""
        return self._meta(collection).settings

    def payload_indexes(self, collection: str) -> dict[str, PayloadType]:
        """The payload fields the collection indexes, and their types."""
        return dict(self._meta(collection).payload_indexes)

    # --- writes -----------------------------------------------------------------

    def upsert(self, collection: str, points: Sequence[Point]) -> None:
        """Insert or replace points, in one transaction. Every vector is checked before anything
        is sent: a wrong dimension raises `DimensionMismatch`, an unknown vector name or a bad id
        `InvalidInput`, and nothing is written."""
        meta = self._meta(collection)
        rows: list[list[Any]] = []
        side_rows: dict[int, list[tuple[str, int, Vector]]] = {
            i: [] for i in meta.multivector_places
        }
        # The last of several points with one id wins, as in a sequence of upserts.
        latest = {_canonical_id(p.id): p for p in points}
        for pid, point in latest.items():
            dense: dict[int, Vector | None] = dict.fromkeys(meta.dense_places)
            for name, value in point.vectors.items():
                place = meta.places.get(name)
                if place is None:
                    raise InvalidInput(
                        f"point {point.id}: unknown vector {name!r} "
                        f"(the collection has {describe(meta.vectors)})"
                    )
                spec = meta.vectors[place]
                array = _stored(spec, vector_array(spec, value, f"point {point.id}"))
                if spec.multivector:
                    side_rows[place].extend(
                        (pid, row, Vector(v)) for row, v in enumerate(array, start=1)
                    )
                else:
                    dense[place] = Vector(array)
            rows.append([pid, _payload_json(f"point {point.id}", point.payload), *dense.values()])
        if not rows:
            return
        columns = [sql.Identifier("id"), sql.Identifier("payload")]
        columns += [sql.Identifier(f"v{i}") for i in meta.dense_places]
        values = [sql.SQL("%s"), sql.SQL("%s::jsonb")] + [sql.SQL("%s")] * len(meta.dense_places)
        updates = [sql.SQL("{0} = EXCLUDED.{0}").format(c) for c in columns[1:]]
        insert = sql.SQL(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (id) DO UPDATE SET {}"
        ).format(
            self._table(meta.table),
            sql.SQL(", ").join(columns),
            sql.SQL(", ").join(values),
            sql.SQL(", ").join(updates),
        )
        ids = [row[0] for row in rows]

        def work(conn: _Conn) -> None:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(insert, rows)
                for place, side in side_rows.items():
                    table = self._table(meta.table, place)
                    # A re-upserted point replaces its rows (or loses them, if not given).
                    cur.execute(sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(table), [ids])
                    if side:
                        cur.executemany(
                            sql.SQL("INSERT INTO {} (id, row, vec) VALUES (%s, %s, %s)").format(
                                table
                            ),
                            side,
                        )

        self._run(work, meta)

    def set_payload(self, collection: str, ids: Sequence[str], payload: Mapping[str, Any]) -> None:
        """Merge `payload` keys into the points among `ids` that exist (others are skipped)."""
        meta = self._meta(collection)
        wanted = [_canonical_id(i) for i in ids]
        if not wanted or not payload:
            return
        body = _payload_json("set_payload", payload)
        self._run(
            lambda conn: conn.execute(
                sql.SQL("UPDATE {} SET payload = payload || %s::jsonb WHERE id = ANY(%s)").format(
                    self._table(meta.table)
                ),
                [body, wanted],
            ),
            meta,
        )

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        """Remove the points among `ids` (and their multivector rows); missing ids are fine."""
        meta = self._meta(collection)
        wanted = [_canonical_id(i) for i in ids]
        if not wanted:
            return
        self._run(
            lambda conn: conn.execute(
                sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(self._table(meta.table)),
                [wanted],
            ),
            meta,
        )

    # --- reads ------------------------------------------------------------------

    def retrieve(
        self, collection: str, ids: Sequence[str], *, with_vectors: bool = False
    ) -> list[Point]:
        """The points that exist among `ids`, in the order given (each once)."""
        meta = self._meta(collection)
        wanted = list(dict.fromkeys(_canonical_id(i) for i in ids))
        if not wanted:
            return []
        where = sql.SQL("id = ANY(%s)")
        points = self._run(
            lambda conn: self._points(conn, meta, where, [wanted], with_vectors), meta
        )
        by_id = {p.id: p for p in points}
        return [by_id[i] for i in wanted if i in by_id]

    def search(
        self,
        collection: str,
        vector_name: str,
        query: NDArray[np.float32],
        *,
        limit: int = 10,
        offset: int = 0,
        query_filter: Filter | None = None,
        score_threshold: float | None = None,
        ef: int | None = None,
        with_payload: bool = True,
        exact: bool = False,
    ) -> list[Hit]:
        """Nearest points by `vector_name`, best first. Through the ANN index once built (with
        iterative scans, so a selective filter still fills `limit`), else an exact scan. A
        multivector takes a (n, dim) query (or one (dim,) vector) and scores by MaxSim."""
        meta = self._meta(collection)
        place = meta.places.get(vector_name)
        if place is None:
            raise InvalidInput(
                f"collection {collection!r} has no vector {vector_name!r} "
                f"(it has {describe(meta.vectors)})"
            )
        if offset < 0:
            raise InvalidInput("offset must be >= 0")
        if ef is not None and ef < 1:
            raise InvalidInput("ef must be >= 1")
        spec = meta.vectors[place]
        checked = np.asarray(query_vector(spec, query), dtype=np.float32)
        if limit <= 0:
            return []
        # A multivector's filter reads the main table under the alias "m" (joined to its rows).
        alias = "m" if spec.multivector else None
        condition, params = (
            _compile(query_filter, self._schema, alias) if query_filter is not None else (_TRUE, [])
        )
        wanted = limit + offset
        searcher = self._search_multi if spec.multivector else self._search_dense
        # A filter that selects (must/should) may be answered best through a payload index; one
        # that only excludes (a search by image leaves that image out) never is.
        selective = query_filter is not None and bool(query_filter.must or query_filter.should)
        rows = self._run(
            lambda conn: searcher(
                conn,
                meta,
                place,
                _stored(spec, checked),
                condition,
                params,
                wanted,
                ef,
                exact,
                selective,
            ),
            meta,
        )
        hits = []
        for pid, score, payload in rows[offset:wanted]:
            if score_threshold is not None and (
                score > score_threshold if spec.distance == "euclid" else score < score_threshold
            ):
                continue
            hits.append(Hit(id=pid, score=score, payload=payload if with_payload else None))
        return hits

    def count(self, collection: str, query_filter: Filter | None = None) -> int:
        """Exact number of points matching the filter."""
        meta = self._meta(collection)
        condition, params = (
            _compile(query_filter, self._schema) if query_filter is not None else (_TRUE, [])
        )
        query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(
            self._table(meta.table), condition
        )
        row = self._run(lambda conn: conn.execute(query, params).fetchone(), meta)
        return int(row[0]) if row else 0

    def scroll(
        self,
        collection: str,
        *,
        query_filter: Filter | None = None,
        limit: int = 256,
        offset: str | None = None,
        with_vectors: bool = False,
    ) -> tuple[list[Point], str | None]:
        """A page of points in id order (ULIDs sort by creation time) and the id to continue
        from (None at the end)."""
        if limit < 1:
            raise InvalidInput("limit must be >= 1")
        meta = self._meta(collection)
        condition, params = (
            _compile(query_filter, self._schema) if query_filter is not None else (_TRUE, [])
        )
        if offset is not None:
            condition = sql.SQL("({}) AND id >= %s").format(condition)
            params = [*params, _canonical_id(offset)]
        where = sql.SQL("{} ORDER BY id LIMIT %s").format(condition)
        page = self._run(
            lambda conn: self._points(conn, meta, where, [*params, limit + 1], with_vectors), meta
        )
        if len(page) > limit:
            return page[:limit], page[limit].id
        return page, None

    # --- index builds -------------------------------------------------------------

    def build_index(self, collection: str, *, wait: bool = False) -> None:
        """Create the ANN index of every vector with `CREATE INDEX CONCURRENTLY` (in a thread of
        this instance, on a connection of its own); searches and writes go on meanwhile, and
        pgvector keeps the index current afterwards. A call during a build joins it. With
        `wait`, return once the indexes are valid."""
        meta = self._meta(collection)
        build = self._start_build(meta)
        if not wait:
            return
        build.done.wait()
        if build.cancelled:
            raise CollectionNotFound(f"collection {collection!r} was dropped or closed")
        if build.error is not None:
            raise StorageError(f"index build of {collection!r} failed: {build.error}")

    def maybe_build_index(self, collection: str) -> bool:
        """Start a build once the collection holds `indexing_threshold` points and has no index
        yet (pgvector maintains it afterwards, so there is only ever one). Cheap after that: a
        set lookup. True if a build started."""
        with self._registry_lock:
            if collection in self._indexed or collection in self._builds:
                return False
            if time.monotonic() - self._failed_at.get(collection, -math.inf) < _RETRY_AFTER_S:
                return False
        meta = self._meta(collection)
        threshold = max(1, meta.settings.indexing_threshold)

        def work(conn: _Conn) -> tuple[int, bool]:
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT %s) AS s").format(
                    self._table(meta.table)
                ),
                [threshold],
            ).fetchone()
            valid, _ = self._index_state(conn, meta)
            return (int(row[0]) if row else 0), valid

        points, valid = self._run(work, meta)
        if valid:
            with self._registry_lock:
                self._indexed.add(collection)
            return False
        if points < threshold:
            return False
        with self._registry_lock:
            if collection in self._builds:
                return False
        self._start_build(meta)
        return True

    def status(self, collection: str) -> IndexStatus:
        """Points, and `indexed_vectors` equal to them once every vector's index is valid (a
        pgvector index covers every row from then on). `building` covers builds of this
        instance and, through `pg_stat_progress_create_index`, of any other."""
        meta = self._meta(collection)

        def work(conn: _Conn) -> tuple[int, bool, bool]:
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(self._table(meta.table))
            ).fetchone()
            valid, building = self._index_state(conn, meta)
            return (int(row[0]) if row else 0), valid, building

        points, valid, building_elsewhere = self._run(work, meta)
        with self._registry_lock:
            building = collection in self._builds
            error = self._build_errors.get(collection)
        return IndexStatus(
            points=points,
            indexed_vectors=points if valid else 0,
            building=building or building_elsewhere,
            last_build_error=error,
        )

    # --- life cycle -----------------------------------------------------------------

    def close(self) -> None:
        """Cancel this instance's index builds (an index left half-built is rebuilt by the next
        `build_index`) and close every connection."""
        with self._registry_lock:
            if self._closed:
                return
            self._closed = True
            names = list(self._builds)
        for name in names:
            self._cancel_build(name)
        self._pool.close()

    def __enter__(self) -> PgvectorIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- connections ----------------------------------------------------------------

    def _connect(self) -> _Conn:
        try:
            conn = psycopg.connect(self._dsn, **_connect_options(self._dsn))
        except psycopg.Error as exc:
            raise self._unavailable(exc) from exc
        try:
            assert self._vector_info is not None
            conn.execute("SELECT set_config('search_path', %s, false)", [self._search_path])
            register_vector_info(conn, self._vector_info)
        except psycopg.Error as exc:
            conn.close()
            raise self._unavailable(exc) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _unavailable(self, exc: BaseException) -> VectorStoreUnavailable:
        return VectorStoreUnavailable(f"{self._server} cannot be reached: {_first_line(exc)}")

    def _run(self, work: Callable[[_Conn], _T], meta: _Meta | None = None) -> _T:
        """`work` on a pooled connection. A connection the server closed (a restart) fails on
        its first use: the idle ones are dropped and `work` runs once more on a new one, which
        is safe because every write here is idempotent. A server that cannot be reached is
        `VectorStoreUnavailable`; a table that vanished (dropped elsewhere) `CollectionNotFound`."""
        if self._closed:
            raise StorageError("the vector index is closed")
        for attempt in range(2):
            with self._pool.connection() as (conn, reused):
                try:
                    return work(conn)
                except psycopg.errors.UndefinedTable as exc:
                    if meta is None:
                        raise StorageError(f"{self._server}: {_first_line(exc)}") from exc
                    with self._registry_lock:
                        self._metas.pop(meta.name, None)
                        self._indexed.discard(meta.name)
                    raise CollectionNotFound(f"no collection {meta.name!r}") from None
                except psycopg.Error as exc:
                    if not _is_outage(conn, exc):
                        raise StorageError(f"{self._server}: {_first_line(exc)}") from exc
                    self._pool.drop_idle()
                    if reused and attempt == 0:
                        continue
                    raise self._unavailable(exc) from exc
        raise AssertionError("unreachable")

    # --- schema ---------------------------------------------------------------------

    def _set_up(self, conn: _Conn) -> TypeInfo:
        """The extension, the schema, the registry and the instant function, under an advisory
        lock (concurrent `IF NOT EXISTS` creations can still collide)."""
        with conn.transaction():
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                [f"lookalike-pgvector/{self._namespace}"],
            )
            installed = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()
            if installed is None:
                available = conn.execute(
                    "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
                ).fetchone()
                if available is None:
                    raise Misconfigured(
                        f"{self._server} has no pgvector: the 'vector' extension is not "
                        "installed on that server (install pgvector 0.8 or later there)"
                    )
                try:
                    with conn.transaction():
                        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                except psycopg.errors.InsufficientPrivilege as exc:
                    raise Misconfigured(
                        f"{self._server}: pgvector is available but not enabled in this database, "
                        f"and this user may not enable it ({_first_line(exc)}); run "
                        "'CREATE EXTENSION vector' there as its owner"
                    ) from exc
                installed = conn.execute(
                    "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
                ).fetchone()
            version = str(installed[0]) if installed else "0"
            if _version_tuple(version) < _MIN_PGVECTOR:
                raise Misconfigured(
                    f"{self._server} has pgvector {version}; Lookalike needs 0.8 or later "
                    "(iterative index scans): ALTER EXTENSION vector UPDATE"
                )
            # Each piece is made only if missing: a user that may use the schema but not create
            # in the database still starts (CREATE ... IF NOT EXISTS checks the privilege first).
            present = conn.execute(
                "SELECT to_regnamespace(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL, "
                "to_regprocedure(%s) IS NOT NULL",
                [
                    _quoted(self._namespace),
                    f"{_quoted(self._namespace)}.registry",
                    f"{_quoted(self._namespace)}.lookalike_instant(jsonb)",
                ],
            ).fetchone()
            has_schema, has_registry, has_function = present if present else (False,) * 3
            if not has_schema:
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(self._schema))
            if not has_registry:
                conn.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {}.registry ("
                        'name text COLLATE "C" PRIMARY KEY, table_name text NOT NULL UNIQUE, '
                        "format integer NOT NULL, specs jsonb NOT NULL, settings jsonb NOT NULL, "
                        "payload_indexes jsonb NOT NULL, "
                        "created_at timestamptz NOT NULL DEFAULT now())"
                    ).format(self._schema)
                )
            pg_version = conn.info.server_version
            if not has_function:
                # Never replaced once made: indexes on it hold values it computed.
                conn.execute(_instant_function(self._schema, pg_version))
            # The extension's schema (often public) must be on the path for its type and
            # operators; every name of ours is written out with its schema.
            schema_row = conn.execute(
                "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()
        if schema_row is not None:
            self._search_path = f"{schema_row[0]}, pg_catalog"
        conn.execute("SELECT set_config('search_path', %s, false)", [self._search_path])
        info = TypeInfo.fetch(conn, "vector")
        if info is None:
            raise Misconfigured(f"{self._server}: the pgvector type 'vector' is not visible")
        return info

    def _create_statements(self, meta: _Meta) -> list[sql.Composed]:
        table = self._table(meta.table)
        columns: list[sql.Composable] = [
            sql.SQL('id text COLLATE "C" PRIMARY KEY'),
            sql.SQL("payload jsonb NOT NULL DEFAULT '{}'::jsonb"),
        ]
        for i in meta.dense_places:
            columns.append(
                sql.SQL("{} vector({})").format(
                    sql.Identifier(f"v{i}"), sql.Literal(meta.vectors[i].dim)
                )
            )
        statements: list[sql.Composed] = [
            sql.SQL("CREATE TABLE {} ({})").format(table, sql.SQL(", ").join(columns))
        ]
        for i in meta.multivector_places:
            statements.append(
                sql.SQL(
                    'CREATE TABLE {} (id text COLLATE "C" NOT NULL REFERENCES {} (id) '
                    "ON DELETE CASCADE, row integer NOT NULL, vec vector({}) NOT NULL, "
                    "PRIMARY KEY (id, row))"
                ).format(self._table(meta.table, i), table, sql.Literal(meta.vectors[i].dim))
            )
        for k, (key, kind) in enumerate(sorted(meta.payload_indexes.items())):
            value = _field(key)
            if kind in ("keyword", "integer", "bool"):
                # One GIN serves equality on a scalar and membership in a list alike.
                statements.append(
                    sql.SQL("CREATE INDEX {} ON {} USING gin (({}) jsonb_path_ops)").format(
                        sql.Identifier(f"{meta.table}#p{k}g"), table, value
                    )
                )
            if kind in ("integer", "float"):
                statements.append(
                    sql.SQL("CREATE INDEX {} ON {} (({}))").format(
                        sql.Identifier(f"{meta.table}#p{k}b"), table, _number(value)
                    )
                )
            if kind == "datetime":
                statements.append(
                    sql.SQL("CREATE INDEX {} ON {} (({}))").format(
                        sql.Identifier(f"{meta.table}#p{k}b"), table, _instant(self._schema, value)
                    )
                )
        return statements

    def _table(self, table: str, multivector: int | None = None) -> sql.Composable:
        name = table if multivector is None else f"{table}#mv{multivector}"
        return sql.Identifier(self._namespace, name)

    def _read_meta(self, conn: _Conn, collection: str) -> _Meta | None:
        row = conn.execute(
            sql.SQL(
                "SELECT table_name, format, specs, settings, payload_indexes "
                "FROM {}.registry WHERE name = %s"
            ).format(self._schema),
            [collection],
        ).fetchone()
        if row is None:
            return None
        table, fmt, specs, settings, payload_indexes = row
        if fmt != _FORMAT:
            raise StorageError(
                f"collection {collection!r} on {self._server} has format {fmt}; "
                f"this version reads format {_FORMAT}"
            )
        return _Meta(
            name=collection,
            table=str(table),
            vectors=[VectorSpec(**v) for v in specs],
            settings=IndexSettings(**settings),
            payload_indexes=dict(payload_indexes),
        )

    def _meta(self, collection: str) -> _Meta:
        with self._registry_lock:
            meta = self._metas.get(collection)
        if meta is not None:
            return meta
        if not NAME.match(collection):
            raise CollectionNotFound(f"no collection {collection!r}")
        meta = self._run(lambda conn: self._read_meta(conn, collection))
        if meta is None:
            raise CollectionNotFound(f"no collection {collection!r}")
        with self._registry_lock:
            self._metas[collection] = meta
        return meta

    # --- reads, in SQL ----------------------------------------------------------------

    def _points(
        self,
        conn: _Conn,
        meta: _Meta,
        where: sql.Composable,
        params: Sequence[Any],
        with_vectors: bool,
    ) -> list[Point]:
        columns: list[sql.Composable] = [sql.SQL("id"), sql.SQL("payload")]
        if with_vectors:
            columns += [sql.Identifier(f"v{i}") for i in meta.dense_places]
        query = sql.SQL("SELECT {} FROM {} WHERE {}").format(
            sql.SQL(", ").join(columns), self._table(meta.table), where
        )
        with conn.cursor(binary=True) as cur:
            rows = cur.execute(query, params).fetchall()
            points = []
            for row in rows:
                vectors: dict[str, NDArray[np.float32]] = {}
                if with_vectors:
                    for i, value in zip(meta.dense_places, row[2:], strict=True):
                        if value is not None:
                            vectors[meta.vectors[i].name] = _array(value)
                points.append(Point(id=row[0], vectors=vectors, payload=dict(row[1])))
            if with_vectors and points and meta.multivector_places:
                by_id = {p.id: p for p in points}
                for i in meta.multivector_places:
                    side = cur.execute(
                        sql.SQL(
                            "SELECT id, vec FROM {} WHERE id = ANY(%s) ORDER BY id, row"
                        ).format(self._table(meta.table, i)),
                        [list(by_id)],
                    ).fetchall()
                    grouped: dict[str, list[NDArray[np.float32]]] = {}
                    for pid, vec in side:
                        grouped.setdefault(pid, []).append(_array(vec))
                    for pid, rows_of in grouped.items():
                        by_id[pid].vectors[meta.vectors[i].name] = np.stack(rows_of)
        return points

    def _scan_settings(
        self,
        conn: _Conn,
        meta: _Meta,
        place: int,
        wanted: int,
        ef: int | None,
        exact: bool,
        selective: bool,
    ) -> None:
        """`SET LOCAL` for one search: exact (no index scans; bitmap scans of payload indexes
        stay), or the index kind's search width and iterative scan."""
        if exact:
            conn.execute("SELECT set_config('enable_indexscan', 'off', true)")
            return
        if not selective:
            # The planner does not count reading vectors stored out of line (TOAST: a 512-d
            # vector is 2 KB) in a sequential scan's cost, so at 100k points it chose a full
            # scan over the ANN index (436 ms against 2.6 ms). A selecting filter is left to the
            # planner, which may answer it from a payload index (the few matching rows).
            conn.execute("SELECT set_config('enable_seqscan', 'off', true)")
        if self._kind == "hnsw":
            ef_search = min(_MAX_EF_SEARCH, max(ef or _DEFAULT_EF_SEARCH, min(wanted, 1000)))
            conn.execute(
                "SELECT set_config('hnsw.ef_search', %s, true), "
                "set_config('hnsw.iterative_scan', 'relaxed_order', true), "
                "set_config('hnsw.max_scan_tuples', %s, true)",
                [str(ef_search), str(_MAX_SCAN_TUPLES)],
            )
        else:
            lists = self._lists(conn, meta, place)
            probes = max(1, math.ceil(math.sqrt(lists)))
            if ef is not None:
                probes *= max(1, ef // _DEFAULT_EF_SEARCH)
            conn.execute(
                "SELECT set_config('ivfflat.probes', %s, true), "
                "set_config('ivfflat.iterative_scan', 'relaxed_order', true)",
                [str(min(probes, 32768))],
            )

    def _search_dense(
        self,
        conn: _Conn,
        meta: _Meta,
        place: int,
        query: NDArray[np.float32],
        condition: sql.Composable,
        params: list[Any],
        wanted: int,
        ef: int | None,
        exact: bool,
        selective: bool,
    ) -> list[tuple[str, float, dict[str, Any]]]:
        spec = meta.vectors[place]
        column = sql.Identifier(f"v{place}")
        distance = _distance(column, spec)
        order = _index_distance(column, spec, meta.settings.quantization)
        # A halfvec index orders approximately: take more, then sort by the full vectors.
        fetch = wanted * (_INT8_OVERSAMPLING if _halfvec(spec, meta.settings.quantization) else 1)
        # The CTE is materialized so that the outer sort cannot be folded into the index scan:
        # relaxed order may hand rows over a little out of order.
        query_sql = sql.SQL(
            "WITH found AS MATERIALIZED ("
            "SELECT id, payload, {distance} AS d FROM {table} "
            "WHERE {column} IS NOT NULL AND ({condition}) ORDER BY {order} LIMIT %s) "
            "SELECT id, d, payload FROM found ORDER BY d, id LIMIT %s"
        ).format(
            distance=distance,
            table=self._table(meta.table),
            column=column,
            condition=condition,
            order=order,
        )
        vector = Vector(query)
        # Placeholders in the order they appear: the distance, the filter, the order, the limits.
        args = [vector, *params, vector, fetch, wanted]
        rows = self._in_scan(
            conn, meta, place, wanted, ef, exact, query_sql, args, selective=selective
        )
        if len(rows) < wanted and not exact and self._has_index(conn, meta):
            # The iterative scan gave up before enough rows passed the filter: be exact.
            log.info("search of %s came back short through the index; scanning", meta.name)
            rows = self._in_scan(
                conn, meta, place, wanted, ef, True, query_sql, args, selective=selective
            )
        return [(pid, _score(spec.distance, float(d)), payload) for pid, d, payload in rows]

    def _search_multi(
        self,
        conn: _Conn,
        meta: _Meta,
        place: int,
        query: NDArray[np.float32],
        condition: sql.Composable,
        params: list[Any],
        wanted: int,
        ef: int | None,
        exact: bool,
        selective: bool,
    ) -> list[tuple[str, float, dict[str, Any]]]:
        spec = meta.vectors[place]
        side = self._table(meta.table, place)
        table = self._table(meta.table)
        vec = sql.Identifier("s", "vec")
        rows_sql = sql.SQL(", ").join(sql.SQL("(%s, %s)") for _ in range(len(query)))
        rows_args: list[Any] = []
        for k, row in enumerate(query, start=1):
            rows_args += [k, Vector(row)]
        # The best document row of each query row, then the sum (Edge's MaxSim; for euclid,
        # as Edge does, the square root of the summed squared distances, lower is better).
        per_row = {
            "cosine": sql.SQL("sum(1 - best)"),
            "dot": sql.SQL("sum(-best)"),
            "euclid": sql.SQL("sqrt(sum(best * best))"),
        }[spec.distance]
        direction = sql.SQL("ASC" if spec.distance == "euclid" else "DESC")
        pair = sql.SQL("{} {} q.v").format(vec, sql.SQL(_OPERATORS[spec.distance]))
        if exact or not self._has_index(conn, meta):
            candidates = sql.SQL("SELECT m.id FROM {table} AS m WHERE {condition}").format(
                table=table, condition=condition
            )
            candidate_args: list[Any] = list(params)
        else:
            # Through the side table's index, the nearest rows of each query row that pass the
            # filter (iterative scans as for dense vectors), then exact MaxSim on their points.
            candidates = sql.SQL(
                "SELECT DISTINCT c.id FROM q CROSS JOIN LATERAL ("
                "SELECT s.id FROM {side} AS s JOIN {table} AS m ON m.id = s.id "
                "WHERE {condition} ORDER BY {order} LIMIT %s) AS c"
            ).format(
                side=side,
                table=table,
                condition=condition,
                order=_index_distance(vec, spec, meta.settings.quantization, other=sql.SQL("q.v")),
            )
            candidate_args = [*params, max(_MV_CANDIDATES, wanted * 4)]
        query_sql = sql.SQL(
            "WITH q(k, v) AS (VALUES {rows}), "
            "cand AS MATERIALIZED ({candidates}), "
            "per_row AS (SELECT s.id, q.k, min({pair}) AS best FROM {side} AS s "
            "JOIN cand ON cand.id = s.id CROSS JOIN q GROUP BY s.id, q.k), "
            "scored AS (SELECT id, {per_row} AS score FROM per_row GROUP BY id) "
            "SELECT scored.id, scored.score, m.payload FROM scored JOIN {table} AS m "
            "ON m.id = scored.id ORDER BY scored.score {direction}, scored.id LIMIT %s"
        ).format(
            rows=rows_sql,
            candidates=candidates,
            pair=pair,
            side=side,
            per_row=per_row,
            table=table,
            direction=direction,
        )
        args = [*rows_args, *candidate_args, wanted]
        found = self._in_scan(
            conn, meta, place, wanted, ef, exact, query_sql, args, selective=selective
        )
        return [(pid, float(score), payload) for pid, score, payload in found]

    def _lists(self, conn: _Conn, meta: _Meta, place: int) -> int:
        """The `lists` an IVFFlat index was built with (1 while there is none)."""
        key = (meta.table, place)
        lists = self._ivf_lists.get(key)
        if lists is not None:
            return lists
        row = conn.execute(
            "SELECT option_value FROM pg_class c, pg_options_to_table(c.reloptions) "
            "WHERE c.oid = to_regclass(%s) AND option_name = 'lists'",
            [f"{_quoted(self._namespace)}.{_quoted(meta.index_name(place))}"],
        ).fetchone()
        if row is None:
            return 1
        lists = int(row[0])
        self._ivf_lists[key] = lists
        return lists

    def _in_scan(
        self,
        conn: _Conn,
        meta: _Meta,
        place: int,
        wanted: int,
        ef: int | None,
        exact: bool,
        query: sql.Composed,
        args: Sequence[Any],
        *,
        selective: bool,
    ) -> list[Any]:
        with conn.transaction(), conn.cursor(binary=True) as cur:
            self._scan_settings(conn, meta, place, wanted, ef, exact, selective)
            return cur.execute(query, args).fetchall()

    def _has_index(self, conn: _Conn, meta: _Meta) -> bool:
        """Whether every vector's ANN index is valid (remembered once seen)."""
        with self._registry_lock:
            if meta.name in self._indexed:
                return True
        valid, _ = self._index_state(conn, meta)
        if valid:
            with self._registry_lock:
                self._indexed.add(meta.name)
        return valid

    def _index_state(self, conn: _Conn, meta: _Meta) -> tuple[bool, bool]:
        """(every vector's ANN index is valid, some index of the collection is being built)."""
        names = [meta.index_name(i) for i in range(len(meta.vectors))]
        tables = [meta.table] + [f"{meta.table}#mv{i}" for i in meta.multivector_places]
        row = conn.execute(
            "SELECT "
            "(SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            " WHERE c.relnamespace = %s::regnamespace AND c.relname = ANY(%s) AND i.indisvalid), "
            "EXISTS (SELECT 1 FROM pg_stat_progress_create_index p JOIN pg_class t "
            " ON t.oid = p.relid WHERE t.relnamespace = %s::regnamespace AND t.relname = ANY(%s))",
            [_quoted(self._namespace), names, _quoted(self._namespace), tables],
        ).fetchone()
        if row is None:
            return False, False
        return int(row[0]) == len(names), bool(row[1])

    # --- builds -----------------------------------------------------------------------

    def _start_build(self, meta: _Meta) -> _Build:
        with self._registry_lock:
            if self._closed:
                raise StorageError("the vector index is closed")
            build = self._builds.get(meta.name)
            if build is not None:
                return build
            build = _Build()
            self._builds[meta.name] = build
        thread = threading.Thread(
            target=self._run_build, args=(meta, build), name=f"index-build-{meta.name}", daemon=True
        )
        thread.start()
        return build

    def _run_build(self, meta: _Meta, build: _Build) -> None:
        started = time.monotonic()
        try:
            conn = self._connect()
            with build.lock:
                build.conn = conn
                cancelled = build.cancelled
            try:
                if not cancelled:
                    for place in range(len(meta.vectors)):
                        if build.cancelled:
                            break
                        self._build_one(conn, meta, place, build)
            finally:
                with build.lock:
                    build.conn = None
                conn.close()
            if not build.cancelled:
                log.info(
                    "%s index of %s built in %.1f s",
                    self._kind,
                    meta.name,
                    time.monotonic() - started,
                )
                with self._registry_lock:
                    self._indexed.add(meta.name)
                    self._build_errors.pop(meta.name, None)
                    self._failed_at.pop(meta.name, None)
        except Exception as exc:
            if not build.cancelled:
                build.error = _first_line(exc)
                log.exception("index build of %s failed", meta.name)
                with self._registry_lock:
                    self._build_errors[meta.name] = build.error
                    self._failed_at[meta.name] = time.monotonic()
        finally:
            with self._registry_lock:
                if self._builds.get(meta.name) is build:
                    del self._builds[meta.name]
            build.done.set()

    def _build_one(self, conn: _Conn, meta: _Meta, place: int, build: _Build) -> None:
        spec = meta.vectors[place]
        name = meta.index_name(place)
        table = self._table(meta.table, place if spec.multivector else None)
        while not build.cancelled:
            state = conn.execute(
                "SELECT i.indisvalid, EXISTS (SELECT 1 FROM pg_stat_progress_create_index p "
                "WHERE p.index_relid = c.oid) FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE c.relnamespace = %s::regnamespace AND c.relname = %s",
                [_quoted(self._namespace), name],
            ).fetchone()
            if state is None:
                break
            valid, in_progress = state
            if valid:
                return
            if not in_progress:
                # Left invalid by a build that was cancelled or failed.
                conn.execute(
                    sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                        sql.Identifier(self._namespace, name)
                    )
                )
                break
            # Another process builds it: wait for theirs (it may fail), then look again.
            time.sleep(_OTHER_BUILD_POLL_S)
        if build.cancelled:
            return
        column: sql.Composable = sql.Identifier("vec" if spec.multivector else f"v{place}")
        half = _halfvec(spec, meta.settings.quantization)
        if half:
            column = sql.SQL("({}::halfvec({}))").format(column, sql.Literal(spec.dim))
        opclass = sql.SQL(("halfvec_" if half else "vector_") + _OPCLASSES[spec.distance])
        if self._kind == "hnsw":
            method = sql.SQL("hnsw")
            options = sql.SQL("m = {}, ef_construction = {}").format(
                sql.Literal(meta.settings.hnsw_m), sql.Literal(meta.settings.hnsw_ef_construct)
            )
        else:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
            method = sql.SQL("ivfflat")
            options = sql.SQL("lists = {}").format(
                sql.Literal(_ivf_lists(int(row[0]) if row else 0))
            )
        conn.execute(
            sql.SQL(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} USING {} ({} {}) WITH ({})"
            ).format(sql.Identifier(name), table, method, column, opclass, options)
        )

    def _cancel_build(self, collection: str) -> None:
        with self._registry_lock:
            build = self._builds.get(collection)
        if build is None:
            return
        with build.lock:
            build.cancelled = True
            conn = build.conn
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.cancel_safe(timeout=10)
        build.done.wait()


# --- per-collection state ---------------------------------------------------------------


@dataclass(frozen=True)
class _Meta:
    name: str
    table: str
    vectors: list[VectorSpec]
    settings: IndexSettings
    payload_indexes: dict[str, PayloadType]
    places: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "places", {v.name: i for i, v in enumerate(self.vectors)})

    @property
    def dense_places(self) -> list[int]:
        return [i for i, v in enumerate(self.vectors) if not v.multivector]

    @property
    def multivector_places(self) -> list[int]:
        return [i for i, v in enumerate(self.vectors) if v.multivector]

    def index_name(self, place: int) -> str:
        prefix = "#mvann" if self.vectors[place].multivector else "#ann"
        return f"{self.table}{prefix}{place}"


@dataclass
class _Build:
    conn: _Conn | None = None
    cancelled: bool = False
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Event = field(default_factory=threading.Event)


class _Pool:
    """At most `size` connections, each lent to one caller at a time, in the order callers
    asked: under a steady load, a lock alone let the threads that just gave a connection back
    take it again, and a caller in another thread waited for seconds. A connection goes back
    to the idle list only if it is healthy and outside a transaction."""

    def __init__(self, connect: Callable[[], _Conn], size: int, server: str) -> None:
        self._connect = connect
        self._size = size
        self._server = server
        self._idle: list[_Conn] = []
        self._open = 0  # connections lent, idle, or about to be opened
        self._waiting: deque[_Waiter] = deque()
        self._lock = threading.Lock()
        self._closed = False

    def adopt(self, conn: _Conn) -> None:
        """Adopt a connection opened elsewhere (the constructor's)."""
        with self._lock:
            self._open += 1
        self._release(conn)

    @contextlib.contextmanager
    def connection(self) -> Iterator[tuple[_Conn, bool]]:
        """A connection, and whether it was idle in the pool (rather than new)."""
        conn, reused = self._acquire()
        if conn is None:
            try:
                conn = self._connect()
            except BaseException:
                self._release(None)
                raise
        try:
            yield conn, reused
        finally:
            self._release(conn)

    def _acquire(self) -> tuple[_Conn | None, bool]:
        """An idle connection (True), or None and the right to open one (False)."""
        with self._lock:
            if self._closed:
                raise StorageError("the vector index is closed")
            if not self._waiting:
                if self._idle:
                    return self._idle.pop(), True
                if self._open < self._size:
                    self._open += 1
                    return None, False
            waiter = _Waiter()
            self._waiting.append(waiter)
        if not waiter.ready.wait(_POOL_WAIT_S):
            with self._lock:
                if not waiter.ready.is_set():
                    self._waiting.remove(waiter)
                    raise VectorStoreUnavailable(
                        f"{self._server}: all {self._size} connections stayed busy for "
                        f"{_POOL_WAIT_S:.0f} s"
                    )
        if waiter.closed:
            raise StorageError("the vector index is closed")
        return waiter.conn, waiter.conn is not None

    def _release(self, conn: _Conn | None) -> None:
        """Hand `conn` (None: the right to open one) to the first waiter, or keep it idle."""
        if conn is not None and (
            conn.closed
            or conn.broken
            or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
        ):
            conn.close()
            conn = None
        with self._lock:
            if self._waiting and not self._closed:
                waiter = self._waiting.popleft()
                waiter.conn = conn
                waiter.ready.set()
                return
            if conn is not None and not self._closed:
                self._idle.append(conn)
                return
            self._open -= 1
        if conn is not None:
            conn.close()

    def drop_idle(self) -> None:
        """Close the idle connections: after one failed on a server restart, the others
        would too."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            # Their places go to whoever waits, as the right to open a new connection.
            while self._waiting and self._open < self._size:
                waiter = self._waiting.popleft()
                self._open += 1
                waiter.ready.set()
        for conn in idle:
            conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            waiting, self._waiting = list(self._waiting), deque()
        for waiter in waiting:
            waiter.closed = True
            waiter.ready.set()
        self.drop_idle()


@dataclass
class _Waiter:
    conn: _Conn | None = None
    closed: bool = False
    ready: threading.Event = field(default_factory=threading.Event)


# --- SQL pieces -----------------------------------------------------------------------------

_TRUE = sql.SQL("TRUE")
_FALSE = sql.SQL("FALSE")


def _field(key: str, payload: sql.Composable = sql.Identifier("payload")) -> sql.Composable:
    # The key is a literal, not a parameter, so that the expression is the very one of the
    # payload index on it (psycopg quotes it).
    return sql.SQL("({} -> {})").format(payload, sql.Literal(key))


def _number(value: sql.Composable) -> sql.Composable:
    return sql.SQL("(CASE WHEN jsonb_typeof({0}) = 'number' THEN ({0})::numeric END)").format(value)


def _instant(schema: sql.Identifier, value: sql.Composable) -> sql.Composable:
    return sql.SQL("{}.lookalike_instant({})").format(schema, value)


def _instant_function(schema: sql.Identifier, pg_version: int) -> sql.Composed:
    """`lookalike_instant(jsonb)`: an ISO 8601 string's instant, NULL for anything else.

    Casting text to timestamptz is only STABLE (it reads TimeZone and DateStyle), which an index
    expression may not be; with both pinned here it is truly immutable. A string that does not
    parse gives NULL rather than an error: an error would refuse the point's upsert. 'now' and
    the like never get as far (the leading date is required).
    """
    if pg_version >= 160000:
        body = (
            "SELECT CASE WHEN jsonb_typeof(value) = 'string' "
            r"AND (value #>> '{}') ~ '^\d{4}-\d{2}-\d{2}' "
            "AND pg_input_is_valid(value #>> '{}', 'timestamptz') "
            "THEN (value #>> '{}')::timestamptz END"
        )
        language, parallel = "sql", "SAFE"
    else:
        body = (
            "BEGIN IF jsonb_typeof(value) <> 'string' "
            r"OR (value #>> '{}') !~ '^\d{4}-\d{2}-\d{2}' THEN RETURN NULL; END IF; "
            "RETURN (value #>> '{}')::timestamptz; "
            "EXCEPTION WHEN others THEN RETURN NULL; END"
        )
        # An exception block is a subtransaction, which parallel workers may not start.
        language, parallel = "plpgsql", "RESTRICTED"
    return sql.SQL(
        "CREATE FUNCTION {}.lookalike_instant(value jsonb) RETURNS timestamptz "
        "LANGUAGE {} IMMUTABLE STRICT PARALLEL {} "
        "SET \"TimeZone\" TO 'UTC' SET \"DateStyle\" TO 'ISO, YMD' AS {}"
    ).format(schema, sql.SQL(language), sql.SQL(parallel), sql.Literal(body))


def _halfvec(spec: VectorSpec, quantization: str) -> bool:
    return quantization == "int8" or spec.dim > _MAX_VECTOR_INDEX_DIM


def _distance(column: sql.Composable, spec: VectorSpec) -> sql.Composable:
    return sql.SQL("({} {} %s::vector)").format(column, sql.SQL(_OPERATORS[spec.distance]))


def _index_distance(
    column: sql.Composable,
    spec: VectorSpec,
    quantization: str,
    other: sql.Composable | None = None,
) -> sql.Composable:
    """The distance exactly as the ANN index computes it (so the planner can use it)."""
    operator = sql.SQL(_OPERATORS[spec.distance])
    right = other if other is not None else sql.SQL("%s::vector")
    if _halfvec(spec, quantization):
        dim = sql.Literal(spec.dim)
        return sql.SQL("({}::halfvec({}) {} ({})::halfvec({}))").format(
            column, dim, operator, right, dim
        )
    return sql.SQL("({} {} {})").format(column, operator, right)


def _score(distance: str, d: float) -> float:
    """pgvector's distance on Edge's scale: cosine similarity, dot product, euclid distance."""
    if distance == "cosine":
        return 1.0 - d
    if distance == "dot":
        return -d
    return d


def _ivf_lists(points: int) -> int:
    # pgvector's advice: rows / 1000 up to a million rows, sqrt(rows) beyond.
    if points <= 1_000_000:
        return max(1, points // 1000)
    return int(math.sqrt(points))


def _compile(
    query_filter: Filter, schema: sql.Identifier, alias: str | None = None
) -> tuple[sql.Composable, list[Any]]:
    """The filter as a SQL condition on the points' table (named `alias` if given) and the
    values of its placeholders, in order."""
    compiler = _FilterCompiler(schema, alias)
    return compiler.filter(query_filter), compiler.params


class _FilterCompiler:
    def __init__(self, schema: sql.Identifier, alias: str | None) -> None:
        self.schema = schema
        self.alias = alias
        self.params: list[Any] = []

    def column(self, name: str) -> sql.Composable:
        return sql.Identifier(self.alias, name) if self.alias else sql.Identifier(name)

    def field(self, key: str) -> sql.Composable:
        if "\x00" in key:
            raise InvalidInput(f"filter key {key!r} holds a NUL character")
        return _field(key, self.column("payload"))

    def filter(self, query_filter: Filter) -> sql.Composable:
        parts = [self.condition(c) for c in query_filter.must]
        if query_filter.should:
            parts.append(
                sql.SQL("({})").format(
                    sql.SQL(" OR ").join(self.condition(c) for c in query_filter.should)
                )
            )
        for condition in query_filter.must_not:
            # A comparison with a missing field is NULL, and NOT NULL drops the row: must_not
            # keeps points that lack the field.
            parts.append(sql.SQL("NOT COALESCE({}, false)").format(self.condition(condition)))
        if not parts:
            return _TRUE
        return sql.SQL("({})").format(sql.SQL(" AND ").join(parts))

    def condition(self, condition: Condition) -> sql.Composable:
        params = self.params
        if isinstance(condition, Filter):
            return self.filter(condition)
        if isinstance(condition, MatchValue):
            params.append(json.dumps(condition.value))
            return sql.SQL("({} @> %s::jsonb)").format(self.field(condition.key))
        if isinstance(condition, MatchAny):
            if not condition.values:
                return _FALSE
            value = self.field(condition.key)
            params.extend(json.dumps(v) for v in condition.values)
            return sql.SQL("({})").format(
                sql.SQL(" OR ").join(
                    sql.SQL("{} @> %s::jsonb").format(value) for _ in condition.values
                )
            )
        if isinstance(condition, Range):
            number = _number(self.field(condition.key))
            return _bounds(number, condition, params, lambda b: Decimal(repr(float(b))), "numeric")
        if isinstance(condition, DatetimeRange):
            instant = _instant(self.schema, self.field(condition.key))
            return _bounds(instant, condition, params, _utc, "timestamptz")
        if isinstance(condition, HasId):
            params.append([_canonical_id(i) for i in condition.ids])
            return sql.SQL("({} = ANY(%s::text[]))").format(self.column("id"))
        if isinstance(condition, IsEmpty):
            return sql.SQL("(COALESCE({}, 'null'::jsonb) IN ('null'::jsonb, '[]'::jsonb))").format(
                self.field(condition.key)
            )
        raise InvalidInput(f"unsupported filter condition: {condition!r}")


def _bounds(
    value: sql.Composable,
    condition: Range | DatetimeRange,
    params: list[Any],
    convert: Callable[[Any], Any],
    cast: str,
) -> sql.Composable:
    parts: list[sql.Composable] = []
    for name, operator in (("gt", ">"), ("gte", ">="), ("lt", "<"), ("lte", "<=")):
        bound = getattr(condition, name)
        if bound is None:
            continue
        params.append(convert(bound))
        parts.append(sql.SQL("{} {} %s::{}").format(value, sql.SQL(operator), sql.SQL(cast)))
    if not parts:  # no bounds: the field must hold a value of the type
        return sql.SQL("({} IS NOT NULL)").format(value)
    return sql.SQL("({})").format(sql.SQL(" AND ").join(parts))


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


# --- conversions and helpers -----------------------------------------------------------------


def _canonical_id(point_id: str) -> str:
    """The ULID in its canonical spelling (ids are compared as text)."""
    return to_ulid(to_uuid(point_id))


def _stored(spec: VectorSpec, array: NDArray[np.float32]) -> NDArray[np.float32]:
    """Cosine vectors unit-length, as Edge keeps them (a zero vector stays zero)."""
    if spec.distance != "cosine":
        return array
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    normed: NDArray[np.float32] = np.where(norms > 0, array / np.where(norms > 0, norms, 1), array)
    return normed.astype(np.float32)


def _array(value: Any) -> NDArray[np.float32]:
    if isinstance(value, Vector):
        return np.asarray(value.to_numpy(), dtype=np.float32)
    return np.asarray(value, dtype=np.float32)


def _payload_json(what: str, payload: Mapping[str, Any]) -> str:
    try:
        text = json.dumps(payload_in(payload), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{what}: payload is not JSON-like: {exc}") from None
    if "\\u0000" in text:
        raise InvalidInput(f"{what}: payload holds a NUL character, which jsonb refuses")
    return text


def _connect_options(dsn: str) -> dict[str, Any]:
    options: dict[str, Any] = {"autocommit": True}
    given = conninfo_to_dict(dsn)
    if "connect_timeout" not in given:
        options["connect_timeout"] = _CONNECT_TIMEOUT_S
    if "application_name" not in given:
        options["application_name"] = "lookalike"
    return options


def _server_label(dsn: str) -> str:
    """ "PostgreSQL (pgvector) at HOST:PORT/DB", never with the password."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        raise Misconfigured(
            f"the PostgreSQL address is not a valid connection string: {exc}"
        ) from None
    host = str(parts.get("host") or parts.get("hostaddr") or "localhost")
    port = str(parts.get("port") or "5432")
    dbname = str(parts.get("dbname") or parts.get("user") or "postgres")
    return f"PostgreSQL (pgvector) at {host}:{port}/{dbname}"


def _is_outage(conn: _Conn, exc: BaseException) -> bool:
    """True when the connection itself failed (server down or restarting), not the statement."""
    if conn.broken or conn.closed:
        return True
    return isinstance(
        exc,
        psycopg.errors.AdminShutdown
        | psycopg.errors.CrashShutdown
        | psycopg.errors.CannotConnectNow,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _quoted(identifier: str) -> str:
    """A schema name as `regnamespace` input reads it (quoted, case kept)."""
    return '"' + identifier.replace('"', '""') + '"'


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


def _table_name(collection: str) -> str:
    if len(collection) <= _TABLE_NAME_MAX:
        return f"c.{collection}"
    digest = hashlib.sha1(collection.encode(), usedforsecurity=False).hexdigest()[:10]
    return f"c.{collection[: _TABLE_NAME_MAX - 11]}~{digest}"
