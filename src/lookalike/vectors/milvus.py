"""Milvus 2.3: `VectorIndex` on a Milvus server, through pymilvus.

Names. A Lookalike collection `photos` in namespace `lookalike` is the Milvus collection
`lookalike_photos`. Milvus names take letters, digits and '_' only, so the collection name is
escaped reversibly ('_' -> '__', '.' -> '_0', '-' -> '_1'); a name that would pass Milvus's 255
characters is cut and ends in a hash. The Lookalike name, namespace, vector specs, index settings
and payload indexes live as JSON in the collection's description: that is what `vector_specs`
reads back, and what tells two namespaces apart should their escaped names ever meet.

Schema. Milvus 2.3 holds one vector field per collection and no multivectors, so:

    <base>          id VARCHAR primary key (the ULID), payload JSON (the whole payload),
                    _present ARRAY<VARCHAR> (top-level keys whose value is neither null nor []),
                    _typed ARRAY<VARCHAR> (indexed keys whose shadow field holds a value),
                    p0, p1, ... one shadow field per payload index, has_v BOOL, v FLOAT_VECTOR
    <base>_v<k>     one per other vector spec k (the k-th of the specs): rid VARCHAR "ULID:row",
                    doc VARCHAR (the point), v FLOAT_VECTOR, one row per vector of the point

The first dense spec lives in `<base>.v` (a point without it has `has_v` false and a placeholder
vector); when the first spec is a multivector, `<base>.v` is a 1-d placeholder. Shadow fields
make filters use real columns: keyword -> ARRAY<VARCHAR> (a string or a list of strings),
integer -> INT64, float -> DOUBLE, bool -> BOOL, datetime -> INT64 epoch microseconds (payloads
hold ISO strings in any offset; the shadow compares instants). Numeric shadows get an STL_SORT
index; Milvus 2.3 indexes neither BOOL nor ARRAY fields.

Filters become Milvus boolean expressions. Conditions on an indexed key use its shadow field
(guarded by `_typed`, since 2.3 has no nulls); other keys go through the JSON field
(`payload["key"] == v or json_contains(payload["key"], v)` covers scalars and lists alike),
`IsEmpty` through `_present`. Every literal is written as a JSON string (quotes and backslashes
escaped), so no value can change the expression's shape. Datetime ranges need a datetime payload
index: JSON holds the ISO text, whose order is not the order of instants across offsets.

Search. Dense vectors: Milvus's own search, the filter applied inside the index. A filtered or
exact search first counts its matches: up to 2048 are fetched and scored here, exactly (like
Qdrant Edge's full scan of a selective filter). That matters on Milvus: rows of a growing
segment are searched through an interim IVF index whose nprobe no request can raise, and a 1%
filter through it returned 6 of 10 hits. Scores match Qdrant Edge: cosine and dot are
similarities (higher is better), euclid the distance (Milvus reports its square). Multivectors
(and any second dense vector) score by MaxSim on this side: each query row searches
`<base>_v<k>` for candidate rows, then the candidates' rows are scored exactly in numpy;
`exact=True` scores every row. With `quantization="int8"` the index is IVF_SQ8 (2.3 has no
quantized HNSW) and the hits are rescored on the original vectors, as Qdrant does.

Consistency: every read is made with consistency level Session: it sees every write this
process made before it (read your writes; a delete, whose answer carries no timestamp, is
followed by one Strong read), without Strong's wait for the next time tick on every
read (200 ms at Milvus's defaults: most of a search's time); another process's writes show within
that tick. Milvus 2.3 has no partial update:
`set_payload` reads the rows and upserts them whole.

Index builds: Milvus indexes sealed segments by itself; rows still in a growing segment are
searched by brute force. `build_index` flushes (sealing the growing segments) and, with `wait`,
waits until every sealed row is indexed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal, NoReturn

import grpc
import numpy as np
from numpy.typing import NDArray
from pymilvus import (
    Collection,
    CollectionSchema,
    DataType,
    FieldSchema,
    MilvusException,
    connections,
    utility,
)

from lookalike.core.errors import (
    CollectionNotFound,
    Conflict,
    InvalidInput,
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

IndexKind = Literal["hnsw", "ivf_flat"]
# A hit on its way out: id, score, and the payload when the search already brought it.
_Scored = tuple[str, float, dict[str, Any] | None]

_FORMAT = 1
_MAX_NAME = 255
# Milvus names start with a letter or '_'.
_NAMESPACE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# Room for the side collections' "_v<k>" suffix.
_SUFFIX_ROOM = 8
_CONSISTENCY = "Session"
# Milvus caps limit + offset of a search or query at 16384.
_TOPK_MAX = 16_384
_WRITE_CHUNK = 512
_READ_CHUNK = 1_000
_ARRAY_CAPACITY = 4_096
_KEY_LENGTH = 512
_KEYWORD_LENGTH = 65_535
_DEFAULT_EF = 64
_HNSW_EF_MAX = 32_768
_INT8_OVERSAMPLING = 2
# A filtered or exact search whose matches are at most this many scores them here, exactly
# (Qdrant Edge scans such filters too).
_SCAN_POINTS = 2_048
# MaxSim candidates: rows fetched per query row, as a multiple of the hits asked for.
_MAXSIM_ROWS_PER_HIT = 8
# A filtered MaxSim search restricts its row search to the matching points when they are
# at most this many; more, and the filter applies to the candidates.
_MAXSIM_FILTER_IDS = 4_096
_TRUE = 'id != ""'
_FALSE = 'id == ""'

_METRICS = {"cosine": "COSINE", "dot": "IP", "euclid": "L2"}
_SHADOW_TYPES: dict[PayloadType, DataType] = {
    "keyword": DataType.ARRAY,
    "integer": DataType.INT64,
    "float": DataType.DOUBLE,
    "datetime": DataType.INT64,
    "bool": DataType.BOOL,
}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class MilvusIndex(VectorIndex):
    """`VectorIndex` on a Milvus 2.3 server at `uri` ("http://HOST:PORT"); safe to call from
    many threads.

    Collections are named `{namespace}_{collection}`. `index` picks the vector index (HNSW, or
    IVF_FLAT whose `nlist` follows the point count at each `build_index`); `timeout_s` bounds
    every call, including the retries pymilvus makes while the server is away. An unreachable
    server raises `VectorStoreUnavailable`, here and from any later call.
    """

    def __init__(
        self,
        uri: str,
        *,
        namespace: str = "lookalike",
        token: str | None = None,
        timeout_s: float = 10.0,
        index: IndexKind = "hnsw",
    ) -> None:
        if not _NAMESPACE.match(namespace):
            raise InvalidInput(
                f"namespace {namespace!r}: Milvus needs up to 64 letters, digits and '_', "
                "not starting with a digit"
            )
        if index not in ("hnsw", "ivf_flat"):
            raise InvalidInput(f"unknown Milvus index {index!r}: use 'hnsw' or 'ivf_flat'")
        self._uri = uri
        self._namespace = namespace
        self._timeout = timeout_s
        self._index_kind: IndexKind = index
        self._alias = f"lookalike-{uuid.uuid4().hex}"
        self._lock = threading.Lock()
        self._metas: dict[str, _Meta] = {}
        self._handles: dict[str, Collection] = {}
        self._closed = False
        with self._calling("connect"):
            connections.connect(alias=self._alias, uri=uri, token=token or "", timeout=timeout_s)

    # --- collections ----------------------------------------------------------

    def create_collection(
        self,
        collection: str,
        vectors: Sequence[VectorSpec],
        settings: IndexSettings,
        payload_indexes: Mapping[str, PayloadType],
    ) -> None:
        """Create `collection`; one that exists with the same vectors is left as it is, one with
        other vectors raises `Conflict`."""
        check_name(collection)
        specs = check_specs(vectors)
        check_settings(settings)
        for key, kind in payload_indexes.items():
            if kind not in _SHADOW_TYPES:
                raise InvalidInput(f"payload index {key!r}: unknown type {kind!r}")
        meta = _Meta(
            name=collection,
            namespace=self._namespace,
            vectors=specs,
            settings=settings,
            payload_indexes=dict(sorted(payload_indexes.items())),
            index=self._index_kind,
        )
        base = self._base(collection)
        with self._calling(f"create collection {collection!r}", collection):
            existing = self._read_meta(collection)
            if existing is not None:
                if existing.vectors != specs:
                    raise Conflict(
                        f"collection {collection!r} exists with other vectors "
                        f"({describe(existing.vectors)}); drop it or use another name"
                    )
                return
            if utility.has_collection(base, using=self._alias, timeout=self._timeout):
                raise Conflict(
                    f"Milvus collection {base!r} exists and is not Lookalike collection "
                    f"{collection!r} of namespace {self._namespace!r}"
                )
            try:
                # Side collections first: the main one, which carries the description, is
                # what makes the collection exist.
                for k, spec in meta.side_specs():
                    self._create_side(f"{base}_v{k}", spec, meta)
                self._create_main(base, meta)
            except BaseException:
                self._drop_physical(base, meta)
                raise
        with self._lock:
            self._metas[collection] = meta

    def drop_collection(self, collection: str) -> None:
        """Remove the collection and all its points; absent is not an error."""
        if not NAME.match(collection):
            return
        with self._calling(f"drop collection {collection!r}", collection):
            meta = self._read_meta(collection)
            self._forget(collection)
            if meta is not None:
                self._drop_physical(self._base(collection), meta)

    def has_collection(self, collection: str) -> bool:
        if not NAME.match(collection):
            return False
        with self._calling(f"look up collection {collection!r}", collection):
            return self._read_meta(collection) is not None

    def vector_specs(self, collection: str) -> list[VectorSpec]:
        """The named vectors the collection was created with."""
        return list(self._meta(collection).vectors)

    def index_settings(self, collection: str) -> IndexSettings:
        """The index settings the collection was created with."""
        return self._meta(collection).settings

    def payload_indexes(self, collection: str) -> dict[str, PayloadType]:
        """The payload fields the collection indexes, and their types."""
        return dict(self._meta(collection).payload_indexes)

    # --- writes -----------------------------------------------------------------

    def upsert(self, collection: str, points: Sequence[Point]) -> None:
        """Insert or replace points. Every vector is checked before anything is written: a wrong
        dimension raises `DimensionMismatch`, an unknown vector name or a bad id `InvalidInput`.
        A replaced point loses the vectors and payload keys the new one lacks."""
        meta = self._meta(collection)
        latest = {p.id: p for p in points}  # a batch that repeats an id keeps the last
        rows = [_main_row(meta, p) for p in latest.values()]
        sides = {
            k: [r for p in latest.values() for r in _side_rows(meta, k, p)]
            for k, _ in meta.side_specs()
        }
        if not rows:
            return
        base = self._base(collection)
        with self._calling(f"write to collection {collection!r}", collection):
            main = self._handle(base)
            for chunk in _chunks(rows, _WRITE_CHUNK):
                main.upsert(chunk, timeout=self._timeout)
            ids = list(latest)
            for k, side_rows in sides.items():
                side = self._handle(f"{base}_v{k}")
                for id_chunk in _chunks(ids, _READ_CHUNK):
                    side.delete(f"doc in {_literal_list(id_chunk)}", timeout=self._timeout)
                for chunk in _chunks(side_rows, _WRITE_CHUNK):
                    side.insert(chunk, timeout=self._timeout)

    def set_payload(self, collection: str, ids: Sequence[str], payload: Mapping[str, Any]) -> None:
        """Merge `payload` keys into the points among `ids` that exist (others are skipped).
        Milvus 2.3 has no partial update: the rows are read and written back whole, so a write
        to the same points by another client in between is overwritten."""
        meta = self._meta(collection)
        wanted = _checked_ids(ids)
        if not wanted or not payload:
            return
        body = payload_in(payload)
        base = self._base(collection)
        with self._calling(f"write to collection {collection!r}", collection):
            main = self._handle(base)
            for chunk in _chunks(wanted, _READ_CHUNK):
                found = main.query(
                    f"id in {_literal_list(chunk)}",
                    output_fields=["id", "payload", "has_v", "v"],
                    consistency_level=_CONSISTENCY,
                    timeout=self._timeout,
                )
                rows = []
                for row in found:
                    merged = {**dict(row["payload"] or {}), **body}
                    vector = [float(v) for v in row["v"]]
                    rows.append(_row(meta, row["id"], merged, bool(row["has_v"]), vector))
                if rows:
                    main.upsert(rows, timeout=self._timeout)

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        """Remove the points among `ids`; missing ids are not an error."""
        meta = self._meta(collection)
        wanted = _checked_ids(ids)
        if not wanted:
            return
        base = self._base(collection)
        with self._calling(f"delete points of collection {collection!r}", collection):
            for chunk in _chunks(wanted, _READ_CHUNK):
                self._handle(base).delete(f"id in {_literal_list(chunk)}", timeout=self._timeout)
                for k, _ in meta.side_specs():
                    self._handle(f"{base}_v{k}").delete(
                        f"doc in {_literal_list(chunk)}", timeout=self._timeout
                    )
            # Milvus 2.3 answers a delete with timestamp 0, so the Session reads that follow
            # may be served before the delete is applied (measured: 3 of 30 counts right
            # after a delete still saw the rows). One Strong read waits until the query
            # nodes have consumed it; later reads are served at or after that point.
            for name in [base, *(f"{base}_v{k}" for k, _ in meta.side_specs())]:
                self._handle(name).query(
                    "",
                    output_fields=["count(*)"],
                    consistency_level="Strong",
                    timeout=self._timeout,
                )

    # --- reads ------------------------------------------------------------------

    def retrieve(
        self, collection: str, ids: Sequence[str], *, with_vectors: bool = False
    ) -> list[Point]:
        """The points that exist among `ids`, in the order given (each once). Cosine vectors
        come back unit-length: they are stored normalised, as Qdrant stores them."""
        meta = self._meta(collection)
        wanted = list(dict.fromkeys(_checked_ids(ids)))
        if not wanted:
            return []
        with self._calling(f"read collection {collection!r}", collection):
            found: dict[str, Point] = {}
            for chunk in _chunks(wanted, _READ_CHUNK):
                for point in self._read_points(
                    collection, meta, f"id in {_literal_list(chunk)}", None, with_vectors
                ):
                    found[point.id] = point
        return [found[i] for i in wanted if i in found]

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
        """Nearest points by `vector_name`, best first. A multivector takes a (n, dim) query
        (or one (dim,) vector) and scores by MaxSim. `ef` is HNSW's search breadth (IVF: it
        raises `nprobe`). `exact` scores up to 2048 matching points (every row of a
        multivector) here; beyond that it searches the whole index: every list of an IVF index,
        an HNSW breadth of 32768."""
        meta = self._meta(collection)
        spec = meta.spec(vector_name)
        if spec is None:
            raise InvalidInput(
                f"collection {collection!r} has no vector {vector_name!r} "
                f"(it has {describe(meta.vectors)})"
            )
        if offset < 0:
            raise InvalidInput("offset must be >= 0")
        if ef is not None and ef < 1:
            raise InvalidInput("ef must be >= 1")
        vector = np.asarray(query_vector(spec, query), dtype=np.float32)
        if limit <= 0:
            return []
        if limit + offset > _TOPK_MAX:
            raise InvalidInput(f"Milvus answers at most {_TOPK_MAX} hits: limit + offset is more")
        expr = _expression(meta, query_filter)
        with self._calling(f"search collection {collection!r}", collection):
            if meta.main_spec() == spec:
                scored = self._search_main(
                    collection, meta, spec, vector, limit + offset, expr, ef, exact, with_payload
                )
            else:
                scored = self._search_rows(
                    collection, meta, spec, vector, limit + offset, expr, exact
                )
            if score_threshold is not None:
                euclid = spec.distance == "euclid"
                scored = [
                    hit
                    for hit in scored
                    if (hit[1] <= score_threshold if euclid else hit[1] >= score_threshold)
                ]
            page = scored[offset : offset + limit]
            missing = [i for i, _, payload in page if payload is None]
            payloads: dict[str, dict[str, Any]] = {}
            if with_payload and missing:
                payloads = {
                    p.id: p.payload
                    for p in self._read_points(
                        collection, meta, f"id in {_literal_list(missing)}", None, False
                    )
                }
        return [
            Hit(
                id=i,
                score=s,
                payload=(payload if payload is not None else payloads.get(i, {}))
                if with_payload
                else None,
            )
            for i, s, payload in page
        ]

    def count(self, collection: str, query_filter: Filter | None = None) -> int:
        """Exact number of points matching the filter."""
        meta = self._meta(collection)
        expr = _expression(meta, query_filter)
        with self._calling(f"count collection {collection!r}", collection):
            return self._count(self._handle(self._base(collection)), expr)

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
        limit = min(limit, _TOPK_MAX - 1)
        expr = _expression(meta, query_filter)
        if offset is not None:
            _checked_ids([offset])
            expr = f"id >= {_literal(offset)}" + (f" and ({expr})" if expr else "")
        with self._calling(f"read collection {collection!r}", collection):
            # A query with a limit returns rows in primary-key order.
            points = self._read_points(collection, meta, expr, limit + 1, with_vectors)
        points.sort(key=lambda p: p.id)
        if len(points) > limit:
            return points[:limit], points[limit].id
        return points, None

    # --- index builds -------------------------------------------------------------

    def build_index(self, collection: str, *, wait: bool = False) -> None:
        """Seal the growing segments so that Milvus indexes them (IVF: first re-create the index
        with an `nlist` that suits the point count). With `wait`, return once every row written
        before the call is indexed. Searches are answered throughout."""
        meta = self._meta(collection)
        base = self._base(collection)
        names = [base] + [f"{base}_v{k}" for k, _ in meta.side_specs()]
        with self._calling(f"index collection {collection!r}", collection):
            for name, spec in zip(
                names, [meta.main_spec()] + [s for _, s in meta.side_specs()], strict=True
            ):
                handle = self._handle(name)
                handle.flush(timeout=self._timeout)
                self._resize_ivf(spec, meta, handle)
            if wait:
                for name in names:
                    self._wait_indexed(name)

    def status(self, collection: str) -> IndexStatus:
        """Points, vectors in built index segments, and whether Milvus is still indexing sealed
        segments (rows in growing segments count as neither)."""
        meta = self._meta(collection)
        base = self._base(collection)
        indexed = pending = 0
        with self._calling(f"read collection {collection!r}", collection):
            names = [f"{base}_v{k}" for k, _ in meta.side_specs()]
            if meta.main_spec() is not None:
                names.insert(0, base)
            for name in names:
                progress = utility.index_building_progress(
                    name, index_name="v", using=self._alias, timeout=self._timeout
                )
                indexed += int(progress.get("indexed_rows", 0))
                pending += int(progress.get("pending_index_rows", 0))
        return IndexStatus(
            points=self.count(collection), indexed_vectors=indexed, building=pending > 0
        )

    # --- life cycle -----------------------------------------------------------------

    def close(self) -> None:
        """Disconnect; the data stays on the server."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._handles.clear()
            self._metas.clear()
        with contextlib.suppress(MilvusException):  # the connection is gone either way
            connections.disconnect(self._alias)

    def __enter__(self) -> MilvusIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals: server calls ----------------------------------------------------

    @contextmanager
    def _calling(self, what: str, collection: str | None = None) -> Iterator[None]:
        """Turns what pymilvus and gRPC raise into Lookalike's errors, naming Milvus and its
        URI, never as a stack trace."""
        if self._closed:
            raise StorageError("the Milvus vector index is closed")
        try:
            yield
        except (InvalidInput, CollectionNotFound, Conflict, StorageError):
            raise
        except Exception as exc:
            self._raise_for(what, collection, exc)

    def _raise_for(self, what: str, collection: str | None, exc: Exception) -> NoReturn:
        message = str(getattr(exc, "message", "") or exc)
        code = getattr(exc, "code", None)
        lowered = message.lower()
        if isinstance(exc, grpc.RpcError | grpc.FutureTimeoutError | TimeoutError) or any(
            sign in lowered
            for sign in (
                "unavailable",
                "fail connecting",
                "failed to connect",
                "connection refused",
                "deadline",
                "timeout",
                "timed out",
                "connect failed",
                "should create connect first",
                "connection reset",
                "socket closed",
            )
        ):
            raise VectorStoreUnavailable(
                f"Milvus at {self._uri} is unavailable ({what}): {_first_line(message)}"
            ) from None
        if collection is not None and (code == 101 or "not loaded" in lowered):
            # A restarted Milvus reloads its collections a while after it answers (and one
            # released by hand never comes back by itself): ask for the load, report a
            # passing outage.
            self._request_load(collection)
            raise VectorStoreUnavailable(
                f"Milvus at {self._uri} is loading collection {collection!r}: try again shortly"
            ) from None
        if collection is not None and (
            code == 100
            or "collection not found" in lowered
            or "can't find collection" in lowered
            or "not exist" in lowered
        ):
            self._forget(collection)
            raise CollectionNotFound(f"no collection {collection!r}") from None
        raise StorageError(f"Milvus at {self._uri}: {what} failed: {_first_line(message)}") from exc

    def _request_load(self, collection: str) -> None:
        base = self._base(collection)
        with self._lock:
            meta = self._metas.get(collection)
        names = [base] + ([f"{base}_v{k}" for k, _ in meta.side_specs()] if meta else [])
        for name in names:
            with contextlib.suppress(Exception):  # best effort: the caller reports the outage
                self._handle(name).load(timeout=self._timeout, _async=True)

    def _base(self, collection: str) -> str:
        return _physical_name(self._namespace, collection)

    def _meta(self, collection: str) -> _Meta:
        with self._lock:
            meta = self._metas.get(collection)
        if meta is not None:
            return meta
        if not NAME.match(collection):
            raise CollectionNotFound(f"no collection {collection!r}")
        with self._calling(f"look up collection {collection!r}", collection):
            meta = self._read_meta(collection)
        if meta is None:
            raise CollectionNotFound(f"no collection {collection!r}")
        with self._lock:
            self._metas[collection] = meta
        return meta

    def _read_meta(self, collection: str) -> _Meta | None:
        base = self._base(collection)
        if not utility.has_collection(base, using=self._alias, timeout=self._timeout):
            self._forget(collection)
            return None
        handle = Collection(base, using=self._alias)
        try:
            raw = json.loads(handle.description)
        except ValueError:
            return None
        if not isinstance(raw, dict) or raw.get("lookalike") != collection:
            return None
        if raw.get("namespace") != self._namespace:
            return None
        if raw.get("format") != _FORMAT:
            raise StorageError(
                f"Milvus collection {base!r} has format {raw.get('format')!r}; "
                f"this version reads format {_FORMAT}"
            )
        with self._lock:
            self._handles[base] = handle
        return _Meta.from_json(raw)

    def _forget(self, collection: str) -> None:
        base = self._base(collection)
        with self._lock:
            self._metas.pop(collection, None)
            for name in [n for n in self._handles if n == base or n.startswith(base + "_v")]:
                del self._handles[name]

    def _handle(self, name: str) -> Collection:
        with self._lock:
            handle = self._handles.get(name)
        if handle is None:
            handle = Collection(name, using=self._alias)
            with self._lock:
                self._handles[name] = handle
        return handle

    def _create_main(self, base: str, meta: _Meta) -> None:
        main = meta.main_spec()
        fields = [
            FieldSchema("id", DataType.VARCHAR, is_primary=True, max_length=64),
            FieldSchema("payload", DataType.JSON),
            _key_array("_present"),
            _key_array("_typed"),
        ]
        for i, (_, kind) in enumerate(meta.payload_indexes.items()):
            if kind == "keyword":
                fields.append(
                    FieldSchema(
                        f"p{i}",
                        DataType.ARRAY,
                        element_type=DataType.VARCHAR,
                        max_capacity=_ARRAY_CAPACITY,
                        max_length=_KEYWORD_LENGTH,
                    )
                )
            else:
                fields.append(FieldSchema(f"p{i}", _SHADOW_TYPES[kind]))
        fields += [
            FieldSchema("has_v", DataType.BOOL),
            FieldSchema("v", DataType.FLOAT_VECTOR, dim=main.dim if main else 1),
        ]
        handle = Collection(
            base,
            CollectionSchema(fields, description=json.dumps(meta.to_json())),
            using=self._alias,
            consistency_level=_CONSISTENCY,
            timeout=self._timeout,
        )
        for i, (_, kind) in enumerate(meta.payload_indexes.items()):
            if kind in ("integer", "float", "datetime"):
                self._create_index(handle, f"p{i}", {"index_type": "STL_SORT"})
        self._create_index(handle, "v", meta.index_params(main, 0))
        self._load(handle)
        with self._lock:
            self._handles[base] = handle

    def _create_side(self, name: str, spec: VectorSpec, meta: _Meta) -> None:
        fields = [
            FieldSchema("rid", DataType.VARCHAR, is_primary=True, max_length=64),
            FieldSchema("doc", DataType.VARCHAR, max_length=64),
            FieldSchema("v", DataType.FLOAT_VECTOR, dim=spec.dim),
        ]
        handle = Collection(
            name,
            CollectionSchema(fields, description=f"rows of vector {spec.name!r}"),
            using=self._alias,
            consistency_level=_CONSISTENCY,
            timeout=self._timeout,
        )
        self._create_index(handle, "doc", {"index_type": "Trie"})
        self._create_index(handle, "v", meta.index_params(spec, 0))
        self._load(handle)

    def _create_index(self, handle: Collection, field: str, params: dict[str, Any]) -> None:
        # pymilvus would poll the build every 0.5 s; Milvus builds it (and any later segment's)
        # by itself, and a load needs only the index's definition.
        handle.create_index(
            field, params, index_name=field, timeout=self._timeout, _async=True, sync=False
        ).result()

    def _load(self, handle: Collection) -> None:
        """Load and wait, polling faster than pymilvus's 0.5 s (a create would take 2.5 s)."""
        handle.load(timeout=self._timeout, _async=True)
        deadline = time.monotonic() + self._timeout
        while (
            utility.loading_progress(handle.name, using=self._alias, timeout=self._timeout).get(
                "loading_progress"
            )
            != "100%"
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(f"collection {handle.name} did not load in {self._timeout} s")
            time.sleep(0.02)

    def _wait_indexed(self, name: str) -> None:
        """Until every sealed row of `name` is indexed (pymilvus would poll every 0.5 s)."""
        while True:
            progress = utility.index_building_progress(
                name, index_name="v", using=self._alias, timeout=self._timeout
            )
            if int(progress.get("pending_index_rows", 0)) == 0 and int(
                progress.get("indexed_rows", 0)
            ) >= int(progress.get("total_rows", 0)):
                return
            time.sleep(0.05)

    def _drop_physical(self, base: str, meta: _Meta) -> None:
        for name in [base] + [f"{base}_v{k}" for k, _ in meta.side_specs()]:
            if utility.has_collection(name, using=self._alias, timeout=self._timeout):
                utility.drop_collection(name, using=self._alias, timeout=self._timeout)

    def _resize_ivf(self, spec: VectorSpec | None, meta: _Meta, handle: Collection) -> None:
        """IVF's `nlist` must follow the number of points; a build re-creates the index when the
        count has moved it by more than half."""
        rows = int(handle.num_entities)
        wanted = meta.index_params(spec, rows)
        current = next((i.params for i in handle.indexes if i.field_name == "v"), None)
        if current is None or "nlist" not in wanted["params"]:
            return
        have = int(current.get("params", current).get("nlist", 0) or 0)
        if have and 0.5 <= wanted["params"]["nlist"] / have <= 2:
            return
        handle.release(timeout=self._timeout)
        handle.drop_index(index_name="v", timeout=self._timeout)
        self._create_index(handle, "v", wanted)
        self._load(handle)

    def _read_points(
        self,
        collection: str,
        meta: _Meta,
        expr: str,
        limit: int | None,
        with_vectors: bool,
    ) -> list[Point]:
        base = self._base(collection)
        main = meta.main_spec()
        fields = ["id", "payload"] + (["has_v", "v"] if with_vectors and main else [])
        rows = self._handle(base).query(
            expr or _TRUE,
            output_fields=fields,
            consistency_level=_CONSISTENCY,
            timeout=self._timeout,
            **({"limit": limit} if limit is not None else {}),
        )
        points = [Point(id=r["id"], vectors={}, payload=dict(r["payload"] or {})) for r in rows]
        if not with_vectors or not points:
            return points
        by_id = {p.id: p for p in points}
        if main is not None:
            for r in rows:
                if r["has_v"]:
                    by_id[r["id"]].vectors[main.name] = np.asarray(r["v"], dtype=np.float32)
        for k, spec in meta.side_specs():
            side = self._handle(f"{base}_v{k}")
            grouped: dict[str, list[tuple[str, list[float]]]] = {}
            for chunk in _chunks(list(by_id), _READ_CHUNK):
                for r in side.query(
                    f"doc in {_literal_list(chunk)}",
                    output_fields=["rid", "doc", "v"],
                    consistency_level=_CONSISTENCY,
                    timeout=self._timeout,
                ):
                    grouped.setdefault(r["doc"], []).append((r["rid"], r["v"]))
            for doc, found in grouped.items():
                found.sort()
                array = np.asarray([v for _, v in found], dtype=np.float32)
                by_id[doc].vectors[spec.name] = array if spec.multivector else array[0]
        return points

    def _search_main(
        self,
        collection: str,
        meta: _Meta,
        spec: VectorSpec,
        vector: NDArray[np.float32],
        top: int,
        expr: str,
        ef: int | None,
        exact: bool,
        with_payload: bool,
    ) -> list[_Scored]:
        handle = self._handle(self._base(collection))
        query = _normalised(vector) if spec.distance == "cosine" else vector
        where = "has_v == true" + (f" and ({expr})" if expr else "")
        outputs = ["payload"] if with_payload else []
        if (expr or exact) and self._count(handle, where) <= _SCAN_POINTS:
            # Few enough to score them all here: exact, and immune to what an approximate
            # index does with a selective filter (Milvus searches growing segments through an
            # interim IVF index whose nprobe no request can raise).
            rows = handle.query(
                where,
                output_fields=["id", "v", *outputs],
                limit=_SCAN_POINTS,
                consistency_level=_CONSISTENCY,
                timeout=self._timeout,
            )
            return self._scored_rows(spec, query, rows, with_payload)[:top]
        int8 = meta.settings.quantization == "int8"
        fetch = min(_TOPK_MAX, top * _INT8_OVERSAMPLING) if int8 else top
        result = handle.search(
            [query.tolist()],
            "v",
            self._search_params(handle, meta, spec, fetch, ef, exact),
            limit=fetch,
            expr=where,
            output_fields=["v", *outputs] if int8 else outputs,
            consistency_level=_CONSISTENCY,
            timeout=self._timeout,
        )
        if int8:
            # The quantized index ranks; the original vectors score, as in Qdrant.
            rows = [
                {"id": h.id, **{f: h.entity.get(f) for f in ["v", *outputs]}} for h in result[0]
            ]
            return self._scored_rows(spec, query, rows, with_payload)[:top]
        return [
            (
                str(h.id),
                _score(spec, float(h.distance)),
                dict(h.entity.get("payload") or {}) if with_payload else None,
            )
            for h in result[0]
        ]

    @staticmethod
    def _scored_rows(
        spec: VectorSpec,
        query: NDArray[np.float32],
        rows: Sequence[Mapping[str, Any]],
        with_payload: bool,
    ) -> list[_Scored]:
        if not rows:
            return []
        matrix = np.asarray([r["v"] for r in rows], dtype=np.float32)
        scores = _pair_scores(spec, query[None, :], matrix)[0]
        scored = [
            (str(r["id"]), float(s), dict(r.get("payload") or {}) if with_payload else None)
            for r, s in zip(rows, scores, strict=True)
        ]
        return _best_first(spec, scored)

    def _count(self, handle: Collection, expr: str) -> int:
        found = handle.query(
            expr,
            output_fields=["count(*)"],
            consistency_level=_CONSISTENCY,
            timeout=self._timeout,
        )
        return int(found[0]["count(*)"]) if found else 0

    def _search_params(
        self,
        handle: Collection,
        meta: _Meta,
        spec: VectorSpec,
        top: int,
        ef: int | None,
        exact: bool,
    ) -> dict[str, Any]:
        if meta.index_params(spec, 0)["index_type"] == "HNSW":
            breadth = _HNSW_EF_MAX if exact else max(ef or _DEFAULT_EF, top)
            return {"metric_type": _METRICS[spec.distance], "params": {"ef": breadth}}
        nlist = 1
        for info in handle.indexes:
            if info.field_name == "v":
                nlist = int(info.params.get("params", info.params).get("nlist", 1) or 1)
        nprobe = nlist if exact else min(nlist, max(16, nlist // 8, (ef or 0) // 4))
        return {"metric_type": _METRICS[spec.distance], "params": {"nprobe": nprobe}}

    def _search_rows(
        self,
        collection: str,
        meta: _Meta,
        spec: VectorSpec,
        query: NDArray[np.float32],
        top: int,
        expr: str,
        exact: bool,
    ) -> list[_Scored]:
        """MaxSim over the rows of a side collection: candidate points from a per-row search
        (every row with `exact`), then exact scores on all of their rows."""
        base = self._base(collection)
        k = next(i for i, s in meta.side_specs() if s == spec)
        side = self._handle(f"{base}_v{k}")
        queries = _normalised(query) if spec.distance == "cosine" else query
        allowed: set[str] | None = None
        row_expr = ""
        if expr:
            matching = self._handle(base).query(
                expr,
                output_fields=["id"],
                limit=_MAXSIM_FILTER_IDS + 1,
                consistency_level=_CONSISTENCY,
                timeout=self._timeout,
            )
            allowed = {r["id"] for r in matching}
            if not allowed:
                return []
            if len(allowed) <= _MAXSIM_FILTER_IDS:
                row_expr = f"doc in {_literal_list(sorted(allowed))}"
            else:
                allowed = None  # too many to list: the filter applies to the candidates
                row_expr = ""
        rows: dict[str, list[tuple[str, list[float]]]] = {}
        if exact:
            for r in self._all_rows(side, row_expr):
                rows.setdefault(r["doc"], []).append((r["rid"], r["v"]))
        else:
            per_row = min(_TOPK_MAX, max(_DEFAULT_EF, top * _MAXSIM_ROWS_PER_HIT))
            params = self._search_params(side, meta, spec, per_row, None, False)
            found = side.search(
                queries.tolist(),
                "v",
                params,
                limit=per_row,
                expr=row_expr or None,
                output_fields=["doc"],
                consistency_level=_CONSISTENCY,
                timeout=self._timeout,
            )
            candidates = sorted({str(h.entity.get("doc")) for hits in found for h in hits})
            for chunk in _chunks(candidates, _READ_CHUNK):
                for r in side.query(
                    f"doc in {_literal_list(chunk)}",
                    output_fields=["rid", "doc", "v"],
                    consistency_level=_CONSISTENCY,
                    timeout=self._timeout,
                ):
                    rows.setdefault(r["doc"], []).append((r["rid"], r["v"]))
        if expr and allowed is None and rows:
            passing: set[str] = set()
            for chunk in _chunks(sorted(rows), _READ_CHUNK):
                passing |= {
                    r["id"]
                    for r in self._handle(base).query(
                        f"id in {_literal_list(chunk)} and ({expr})",
                        output_fields=["id"],
                        consistency_level=_CONSISTENCY,
                        timeout=self._timeout,
                    )
                }
            rows = {d: r for d, r in rows.items() if d in passing}
        scored: list[_Scored] = [
            (doc, _maxsim(spec, queries, np.asarray([v for _, v in found], dtype=np.float32)), None)
            for doc, found in rows.items()
        ]
        return _best_first(spec, scored)[:top]

    def _all_rows(self, side: Collection, expr: str) -> Iterator[dict[str, Any]]:
        last: str | None = None
        while True:
            where = expr
            if last is not None:
                where = f"rid > {_literal(last)}" + (f" and ({expr})" if expr else "")
            page = side.query(
                where or 'rid != ""',
                output_fields=["rid", "doc", "v"],
                limit=_READ_CHUNK,
                consistency_level=_CONSISTENCY,
                timeout=self._timeout,
            )
            yield from page
            if len(page) < _READ_CHUNK:
                return
            last = max(r["rid"] for r in page)


# --- metadata -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Meta:
    name: str
    namespace: str
    vectors: list[VectorSpec]
    settings: IndexSettings
    payload_indexes: dict[str, PayloadType]
    index: IndexKind

    def to_json(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "lookalike": self.name,
            "namespace": self.namespace,
            "vectors": [asdict(v) for v in self.vectors],
            "settings": asdict(self.settings),
            "payload_indexes": self.payload_indexes,
            "index": self.index,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> _Meta:
        return cls(
            name=str(raw["lookalike"]),
            namespace=str(raw["namespace"]),
            vectors=[VectorSpec(**v) for v in raw["vectors"]],
            settings=IndexSettings(**raw["settings"]),
            payload_indexes=dict(raw["payload_indexes"]),
            index=raw["index"],
        )

    def main_spec(self) -> VectorSpec | None:
        """The vector kept in the main collection: the first spec, if it is dense."""
        first = self.vectors[0]
        return None if first.multivector else first

    def side_specs(self) -> list[tuple[int, VectorSpec]]:
        main = self.main_spec()
        return [(k, s) for k, s in enumerate(self.vectors) if s != main]

    def spec(self, name: str) -> VectorSpec | None:
        return next((s for s in self.vectors if s.name == name), None)

    def shadow(self, key: str) -> tuple[str, PayloadType] | None:
        for i, (indexed, kind) in enumerate(self.payload_indexes.items()):
            if indexed == key:
                return f"p{i}", kind
        return None

    def index_params(self, spec: VectorSpec | None, rows: int) -> dict[str, Any]:
        """The vector index of `spec`'s collection; None: the main collection's placeholder."""
        if spec is None:
            return {"index_type": "FLAT", "metric_type": "L2", "params": {}}
        return _vector_index_params(self.index, spec, self.settings, rows)


def _vector_index_params(
    kind: IndexKind, spec: VectorSpec, settings: IndexSettings, rows: int
) -> dict[str, Any]:
    metric = _METRICS[spec.distance]
    # IVF wants about 4 * sqrt(n) lists, at least enough to train on.
    nlist = int(min(65_536, max(16, 4 * math.sqrt(max(rows, 1)))))
    if settings.quantization == "int8":
        # Milvus 2.3 quantizes only IVF indexes.
        return {"index_type": "IVF_SQ8", "metric_type": metric, "params": {"nlist": nlist}}
    if kind == "ivf_flat":
        return {"index_type": "IVF_FLAT", "metric_type": metric, "params": {"nlist": nlist}}
    return {
        "index_type": "HNSW",
        "metric_type": metric,
        "params": {"M": settings.hnsw_m, "efConstruction": settings.hnsw_ef_construct},
    }


# --- names ------------------------------------------------------------------------------------


def _physical_name(namespace: str, collection: str) -> str:
    escaped = collection.replace("_", "__").replace(".", "_0").replace("-", "_1")
    name = f"{namespace}_{escaped}"
    room = _MAX_NAME - _SUFFIX_ROOM
    if len(name) > room:
        digest = hashlib.sha256(collection.encode()).hexdigest()[:16]
        name = f"{name[: room - 18]}_x{digest}"
    return name


# --- rows ---------------------------------------------------------------------------------


def _checked_ids(ids: Sequence[str]) -> list[str]:
    for i in ids:
        to_uuid(i)  # raises InvalidInput for anything but a ULID
    return [str(i) for i in ids]


def _main_row(meta: _Meta, point: Point) -> dict[str, Any]:
    to_uuid(point.id)
    for name in point.vectors:
        if meta.spec(name) is None:
            raise InvalidInput(
                f"point {point.id}: unknown vector {name!r} "
                f"(the collection has {', '.join(v.name for v in meta.vectors)})"
            )
    main = meta.main_spec()
    value = point.vectors.get(main.name) if main is not None else None
    if main is not None and value is not None:
        array = vector_array(main, value, f"point {point.id}")
        if main.distance == "cosine":
            array = _normalised(array)
        vector, has_v = array.tolist(), True
    else:
        # Milvus needs a vector in every row; `has_v` keeps this one out of searches.
        dim = main.dim if main is not None else 1
        vector, has_v = [1.0] + [0.0] * (dim - 1), False
    for spec in meta.vectors:
        if spec is not main and spec.name in point.vectors:
            vector_array(spec, point.vectors[spec.name], f"point {point.id}")
    try:
        payload = payload_in(point.payload)
        json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"point {point.id}: payload is not JSON-like: {exc}") from None
    return _row(meta, point.id, payload, has_v, vector)


def _row(
    meta: _Meta, point_id: str, payload: dict[str, Any], has_v: bool, vector: list[float]
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": point_id,
        "payload": payload,
        "_present": [_key_token(k) for k, v in payload.items() if v is not None and v != []],
        "has_v": has_v,
        "v": vector,
    }
    typed = []
    for i, (key, kind) in enumerate(meta.payload_indexes.items()):
        value, ok = _shadow_value(kind, payload.get(key))
        row[f"p{i}"] = value
        if ok:
            typed.append(_key_token(key))
    row["_typed"] = typed
    return row


def _side_rows(meta: _Meta, k: int, point: Point) -> list[dict[str, Any]]:
    spec = meta.vectors[k]
    value = point.vectors.get(spec.name)
    if value is None:
        return []
    array = vector_array(spec, value, f"point {point.id}")
    if not spec.multivector:
        array = array[None, :]
    if spec.distance == "cosine":
        array = _normalised(array)
    return [
        {"rid": f"{point.id}:{r:06d}", "doc": point.id, "v": row.tolist()}
        for r, row in enumerate(array)
    ]


def _shadow_value(kind: PayloadType, value: Any) -> tuple[Any, bool]:
    """The shadow field's value and whether it holds the payload's (2.3 has no nulls: a
    missing or mistyped value is stored as a default that `_typed` keeps out of filters)."""
    if kind == "keyword":
        items = value if isinstance(value, list) else [value]
        strings = [v for v in items if isinstance(v, str)]
        return strings, bool(strings)
    if kind == "integer":
        if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63:
            return value, True
        return 0, False
    if kind == "float":
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value), True
        return 0.0, False
    if kind == "bool":
        return (value, True) if isinstance(value, bool) else (False, False)
    micros = _epoch_micros(value)
    return (micros, True) if micros is not None else (0, False)


def _epoch_micros(value: Any) -> int | None:
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return (moment - _EPOCH) // dt.timedelta(microseconds=1)


def _key_token(key: str) -> str:
    """A payload key as an element of `_present`/`_typed` (whose elements have a length cap)."""
    if len(key.encode()) <= _KEY_LENGTH - 8:
        return key
    return "#sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _key_array(name: str) -> FieldSchema:
    return FieldSchema(
        name,
        DataType.ARRAY,
        element_type=DataType.VARCHAR,
        max_capacity=_ARRAY_CAPACITY,
        max_length=_KEY_LENGTH,
    )


# --- filters ------------------------------------------------------------------------------


def _expression(meta: _Meta, query_filter: Filter | None) -> str:
    """The Milvus boolean expression of `query_filter`; "" matches everything."""
    if query_filter is None:
        return ""
    expr = _filter_expr(meta, query_filter)
    return "" if expr == _TRUE else expr


def _filter_expr(meta: _Meta, query_filter: Filter) -> str:
    parts = [_condition_expr(meta, c) for c in query_filter.must]
    if query_filter.should:
        parts.append(_any_of([_condition_expr(meta, c) for c in query_filter.should]))
    parts += [f"not ({_condition_expr(meta, c)})" for c in query_filter.must_not]
    return _all_of(parts)


def _all_of(parts: list[str]) -> str:
    parts = [p for p in parts if p != _TRUE]
    if not parts:
        return _TRUE
    if _FALSE in parts:
        return _FALSE
    return parts[0] if len(parts) == 1 else " and ".join(f"({p})" for p in parts)


def _any_of(parts: list[str]) -> str:
    parts = [p for p in parts if p != _FALSE]
    if not parts:
        return _FALSE
    if _TRUE in parts:
        return _TRUE
    return parts[0] if len(parts) == 1 else " or ".join(f"({p})" for p in parts)


def _condition_expr(meta: _Meta, condition: Condition) -> str:
    if isinstance(condition, Filter):
        return _filter_expr(meta, condition)
    if isinstance(condition, HasId):
        if not condition.ids:
            return _FALSE
        return f"id in {_literal_list(_checked_ids(condition.ids))}"
    if isinstance(condition, IsEmpty):
        return f"not array_contains(_present, {_literal(_key_token(condition.key))})"
    if isinstance(condition, MatchValue):
        return _match_expr(meta, condition.key, [condition.value])
    if isinstance(condition, MatchAny):
        return _match_expr(meta, condition.key, list(condition.values))
    if isinstance(condition, Range):
        return _range_expr(meta, condition)
    if isinstance(condition, DatetimeRange):
        return _datetime_expr(meta, condition)
    raise InvalidInput(f"unsupported filter condition: {condition!r}")


def _match_expr(meta: _Meta, key: str, values: list[str | int | bool]) -> str:
    """`key` equals (or, for a list, holds) one of `values`."""
    if not values:
        return _FALSE
    shadow = meta.shadow(key)
    strings = [v for v in values if isinstance(v, str)]
    bools = [v for v in values if isinstance(v, bool)]
    ints = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    parts: list[str] = []
    rest: list[list[Any]] = []
    if shadow is not None and shadow[1] == "keyword":
        if strings:
            parts.append(f"array_contains_any({shadow[0]}, {_literal_list(strings)})")
        rest = [bools, ints]
    elif shadow is not None and shadow[1] == "integer":
        if ints:
            parts.append(f"{_typed(key)} and {shadow[0]} in {_literal_list(ints)}")
        rest = [strings, bools]
    elif shadow is not None and shadow[1] == "bool":
        for value in sorted(set(bools)):
            parts.append(f"{_typed(key)} and {shadow[0]} == {_literal(value)}")
        rest = [strings, ints]
    else:
        rest = [strings, bools, ints]
    path = f"payload[{_literal(key)}]"
    # Milvus takes one value type per list: a mixed MatchAny becomes an OR per type.
    for group in rest:
        if group:
            listed = _literal_list(group)
            parts.append(f"{path} in {listed} or json_contains_any({path}, {listed})")
    return _any_of(parts)


def _range_expr(meta: _Meta, condition: Range) -> str:
    shadow = meta.shadow(condition.key)
    bounds = [
        (op, value)
        for op, value in (
            (">", condition.gt),
            (">=", condition.gte),
            ("<", condition.lt),
            ("<=", condition.lte),
        )
        if value is not None
    ]
    if not bounds:
        return f"not ({_match_nothing_if_absent(condition.key)})"
    if shadow is not None and shadow[1] in ("integer", "float"):
        field, kind = shadow
        parts = [_typed(condition.key)]
        for op, value in bounds:
            bound = _integer_bound(op, value) if kind == "integer" else f"{op} {float(value)!r}"
            parts.append(f"{field} {bound}")
        return " and ".join(parts)
    path = f"payload[{_literal(condition.key)}]"
    return " and ".join(f"{path} {op} {float(value)!r}" for op, value in bounds)


def _match_nothing_if_absent(key: str) -> str:
    # A range without bounds matches every point that has a value.
    return f"not array_contains(_present, {_literal(_key_token(key))})"


def _integer_bound(op: str, value: float) -> str:
    """A bound on an INT64 field as an integer (Milvus rejects a float literal there)."""
    if float(value).is_integer():
        return f"{op} {int(value)}"
    if op in (">", ">="):
        return f">= {math.ceil(value)}"
    return f"<= {math.floor(value)}"


def _datetime_expr(meta: _Meta, condition: DatetimeRange) -> str:
    shadow = meta.shadow(condition.key)
    if shadow is None or shadow[1] != "datetime":
        raise InvalidInput(
            f"a datetime range on {condition.key!r} needs a datetime payload index on Milvus "
            "(the JSON payload holds ISO text, which does not sort as instants)"
        )
    parts = [_typed(condition.key)]
    for op, bound in (
        (">", condition.gt),
        (">=", condition.gte),
        ("<", condition.lt),
        ("<=", condition.lte),
    ):
        if bound is not None:
            micros = _epoch_micros(bound)
            parts.append(f"{shadow[0]} {op} {micros}")
    return " and ".join(parts)


def _typed(key: str) -> str:
    return f"array_contains(_typed, {_literal(_key_token(key))})"


def _literal(value: str | int | float | bool) -> str:
    """A literal of Milvus's expression language: strings as JSON strings (Milvus unquotes them
    as Go does), so quotes and backslashes in a value stay inside it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


def _literal_list(values: Sequence[str | int | float | bool]) -> str:
    return "[" + ", ".join(_literal(v) for v in values) + "]"


# --- scores -------------------------------------------------------------------------------


def _normalised(array: NDArray[np.float32]) -> NDArray[np.float32]:
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    result: NDArray[np.float32] = (array / np.where(norms == 0, 1, norms)).astype(np.float32)
    return result


def _score(spec: VectorSpec, distance: float) -> float:
    # Milvus's L2 is the squared distance; Qdrant (and so Lookalike) reports the distance.
    return math.sqrt(max(distance, 0.0)) if spec.distance == "euclid" else distance


def _pair_scores(
    spec: VectorSpec, queries: NDArray[np.float32], rows: NDArray[np.float32]
) -> NDArray[np.float64]:
    """Scores of every query row against every stored row, on Lookalike's scale."""
    q = queries.astype(np.float64)
    r = rows.astype(np.float64)
    if spec.distance == "euclid":
        squared = (q * q).sum(1)[:, None] + (r * r).sum(1)[None, :] - 2 * q @ r.T
        result: NDArray[np.float64] = np.sqrt(np.maximum(squared, 0))
        return result
    return q @ r.T


def _maxsim(spec: VectorSpec, queries: NDArray[np.float32], rows: NDArray[np.float32]) -> float:
    """Qdrant's MaxSim: the best row for each query row, summed. For euclid Qdrant sums the
    negated squared distances and reports the root of the total."""
    scores = _pair_scores(spec, queries, rows)
    if spec.distance == "euclid":
        return float(math.sqrt(float((scores**2).min(axis=1).sum())))
    return float(scores.max(axis=1).sum())


def _best_first(spec: VectorSpec, scored: list[_Scored]) -> list[_Scored]:
    if spec.distance == "euclid":
        return sorted(scored, key=lambda item: (item[1], item[0]))
    return sorted(scored, key=lambda item: (-item[1], item[0]))


# --- small helpers ----------------------------------------------------------------------------


def _chunks(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _first_line(message: str) -> str:
    line = message.strip().splitlines()[0] if message.strip() else "no detail"
    return line[:300]
