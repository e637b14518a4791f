"""Qdrant as a server or cluster: `VectorIndex` over `qdrant-client` (REST, or gRPC with
`prefer_grpc`).

Each collection is the Qdrant collection `{namespace}_{collection}`; a namespace holds letters,
digits and '-' only, so the first '_' always ends it and two namespaces never share a name.
Point ids are the ULIDs as UUIDs (the same 128 bits, so UUID order is ULID order). Every write
waits (`wait=True`) until the server applied it, so the next read sees it.

The server indexes on its own schedule: `IndexSettings.indexing_threshold` (points) becomes the
collection's optimizer threshold (which Qdrant counts in KB of vectors), and `maybe_build_index`
keeps the base default (it never starts anything). `build_index` asks for an index now by
lowering that threshold; with `wait` it polls until the collection is green with its vectors
indexed, then restores the threshold. The collection's settings and payload indexes are kept
in its metadata (Qdrant >= 1.16), the vector specs are read back from its config.

`path` opens qdrant-client's local mode instead (a pure-Python engine in this process), which
is what the tests run: no Qdrant server can be installed on the machines they run on. Local mode
shows that the mapping of filters, ids, payloads, multivectors, scroll order and errors is
right. It cannot show sharding, replication, write consistency, on-disk storage, int8
quantization (it scans the original vectors), HNSW graphs or their recall, payload indexes, or
indexing progress (it reports 0 indexed vectors and is always green): it accepts and ignores
those settings. Only a test against a real server (and a cluster, for shards and replicas)
proves that the server takes the creation request as built here, that `build_index(wait=True)`
ends with every vector indexed, and that filtered HNSW search keeps its recall.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx
import numpy as np
from numpy.typing import NDArray
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from lookalike.core.errors import (
    CollectionNotFound,
    Conflict,
    InvalidInput,
    LookalikeError,
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
    iso_bounds,
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

_NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-]{0,63}$")
_META_KEY = "lookalike"
_FORMAT = 1
# Points per upsert request: a few MB of JSON at 512-d, well under the server's 32 MB limit.
_UPSERT_CHUNK = 512
_INT8_OVERSAMPLING = 2.0
# `build_index` lowers the optimizer threshold to this (KB): every segment qualifies.
_BUILD_THRESHOLD_KB = 1
_BUILD_POLL_S = 0.2
_BUILD_TIMEOUT_S = 3600.0
# How long a collection that stays green is given to start optimizing after the request.
_BUILD_SETTLE_S = 2.0

_DISTANCES = {"cosine": qm.Distance.COSINE, "dot": qm.Distance.DOT, "euclid": qm.Distance.EUCLID}
_DISTANCE_NAMES = {v: k for k, v in _DISTANCES.items()}
_SCHEMAS: dict[str, qm.PayloadSchemaType] = {
    "keyword": qm.PayloadSchemaType.KEYWORD,
    "integer": qm.PayloadSchemaType.INTEGER,
    "float": qm.PayloadSchemaType.FLOAT,
    "datetime": qm.PayloadSchemaType.DATETIME,
    "bool": qm.PayloadSchemaType.BOOL,
}
_BUSY = (qm.CollectionStatus.YELLOW, qm.CollectionStatus.GREY)


class QdrantServerIndex(VectorIndex):
    """`VectorIndex` on a Qdrant server or cluster at `url` (REST; gRPC with `prefer_grpc`), or,
    with `path` instead of `url`, on qdrant-client's local mode in that directory (tests only).

    Opening checks that the server answers: an unreachable one raises `VectorStoreUnavailable`
    naming Qdrant and the URL, a refused `api_key` raises `Misconfigured`. The same errors come
    from any later call during an outage. `timeout_s` bounds each request.

    `shard_number`, `replication_factor`, `write_consistency_factor` and `on_disk` (vectors kept
    on disk, their int8 copy in RAM) apply to the collections this instance creates.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        namespace: str = "lookalike",
        path: Path | None = None,
        prefer_grpc: bool = False,
        timeout_s: float = 10.0,
        shard_number: int = 1,
        replication_factor: int = 1,
        write_consistency_factor: int = 1,
        on_disk: bool = False,
    ) -> None:
        if (url is None) == (path is None):
            raise Misconfigured("QdrantServerIndex takes either a server url or a local path")
        if not _NAMESPACE.match(namespace):
            raise Misconfigured(
                f"vector namespace {namespace!r}: use 1-64 letters, digits or '-', "
                "starting with a letter or digit"
            )
        if min(shard_number, replication_factor, write_consistency_factor) < 1:
            raise Misconfigured(
                "shard_number, replication_factor and write_consistency_factor >= 1"
            )
        self._namespace = namespace
        self._url = url
        self._where = f"Qdrant at {url}" if url is not None else f"Qdrant local mode in {path}"
        if url is not None and prefer_grpc:
            # qdrant-client sends gRPC to its own port (6334), whatever port the URL names.
            self._where += " (gRPC port 6334)"
        self._api_key = api_key
        self._local = path is not None
        self._shards = shard_number
        self._replicas = replication_factor
        self._write_consistency = write_consistency_factor
        self._on_disk = on_disk
        # Local mode is a plain Python object over SQLite: one caller at a time. The HTTP and
        # gRPC clients are safe to share between threads.
        self._local_lock: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if self._local else contextlib.nullcontext()
        )
        # Vector specs and quantization per collection, so a search or an upsert is one request.
        # Only this instance's create and drop change them; a collection dropped and made
        # again elsewhere gets the server's own errors until this instance drops its entry.
        self._schemas: dict[str, _Schema] = {}
        self._closed = False
        with self._calls():
            if path is not None:
                Path(path).mkdir(parents=True, exist_ok=True)
                self._client = QdrantClient(path=str(path))
            else:
                self._client = QdrantClient(
                    url=url,
                    api_key=api_key,
                    prefer_grpc=prefer_grpc,
                    # A request may not wait longer than this (qdrant-client takes whole seconds).
                    timeout=max(1, math.ceil(timeout_s)),
                    # Its own check logs a warning and goes on; ours below fails loudly.
                    check_compatibility=False,
                )
        try:
            with self._calls():
                # Needs the API key too: a refused key shows here, not at the first search.
                self._client.get_collections()
        except BaseException:
            self._client.close()
            raise

    # --- collections ----------------------------------------------------------

    def create_collection(
        self,
        collection: str,
        vectors: Sequence[VectorSpec],
        settings: IndexSettings,
        payload_indexes: Mapping[str, PayloadType],
    ) -> None:
        """Create `collection` with its payload indexes; one that exists with the same vectors
        is left as it is, one with other vectors raises `Conflict`."""
        check_name(collection)
        specs = check_specs(vectors)
        check_settings(settings)
        for key, kind in payload_indexes.items():
            if kind not in _SCHEMAS:
                raise InvalidInput(f"payload index {key!r}: unknown type {kind!r}")
        name = self._name(collection)
        with self._calls(collection):
            if self._client.collection_exists(name):
                existing = self.vector_specs(collection)
                if existing != specs:
                    raise Conflict(
                        f"collection {collection!r} exists with other vectors "
                        f"({describe(existing)}); drop it or use another name"
                    )
                return
            quantization = None
            if settings.quantization == "int8":
                quantization = qm.ScalarQuantization(
                    scalar=qm.ScalarQuantizationConfig(
                        type=qm.ScalarType.INT8, quantile=0.99, always_ram=True
                    )
                )
            try:
                self._client.create_collection(
                    name,
                    vectors_config={v.name: self._vector_params(v) for v in specs},
                    shard_number=self._shards,
                    replication_factor=self._replicas,
                    write_consistency_factor=self._write_consistency,
                    hnsw_config=qm.HnswConfigDiff(
                        m=settings.hnsw_m, ef_construct=settings.hnsw_ef_construct
                    ),
                    optimizers_config=qm.OptimizersConfigDiff(
                        indexing_threshold=_threshold_kb(specs, settings.indexing_threshold)
                    ),
                    quantization_config=quantization,
                    metadata={
                        _META_KEY: {
                            "format": _FORMAT,
                            "vectors": [asdict(v) for v in specs],
                            "settings": asdict(settings),
                            "payload_indexes": dict(payload_indexes),
                        }
                    },
                )
            except UnexpectedResponse as exc:
                # Two creators raced: the loser finds the winner's collection.
                if exc.status_code != 409:
                    raise
                if self.vector_specs(collection) != specs:
                    raise Conflict(
                        f"collection {collection!r} was created with other vectors"
                    ) from None
                return
            for key, kind in payload_indexes.items():
                self._client.create_payload_index(name, key, field_schema=_SCHEMAS[kind], wait=True)

    def drop_collection(self, collection: str) -> None:
        """Remove the collection and its points; absent is not an error."""
        if not NAME.match(collection):
            return
        self._schemas.pop(collection, None)
        with self._calls():
            self._client.delete_collection(self._name(collection))

    def has_collection(self, collection: str) -> bool:
        if not NAME.match(collection):
            return False
        with self._calls():
            return bool(self._client.collection_exists(self._name(collection)))

    def vector_specs(self, collection: str) -> list[VectorSpec]:
        """The named vectors, as the server's collection config holds them."""
        return self._specs_of(collection, self._info(collection))

    def index_settings(self, collection: str) -> IndexSettings:
        """The index settings the collection was created with (defaults for a collection whose
        server kept no metadata)."""
        meta = self._metadata(collection)
        return IndexSettings(**meta["settings"]) if meta else IndexSettings()

    def payload_indexes(self, collection: str) -> dict[str, PayloadType]:
        """The payload fields the collection indexes, and their types."""
        meta = self._metadata(collection)
        return dict(meta["payload_indexes"]) if meta else {}

    # --- writes -----------------------------------------------------------------

    def upsert(self, collection: str, points: Sequence[Point]) -> None:
        """Insert or replace points. Every vector is checked before anything is sent: a wrong
        dimension raises `DimensionMismatch`, an unknown vector name or a bad id `InvalidInput`."""
        specs = self._schema(collection).specs
        structs = [_point_struct(specs, p) for p in points]
        with self._calls(collection):
            for i in range(0, len(structs), _UPSERT_CHUNK):
                self._client.upsert(
                    self._name(collection), points=structs[i : i + _UPSERT_CHUNK], wait=True
                )

    def set_payload(self, collection: str, ids: Sequence[str], payload: Mapping[str, Any]) -> None:
        """Merge `payload` keys into the points among `ids` that exist (others are skipped)."""
        wanted = [str(to_uuid(i)) for i in ids]
        if not wanted or not payload:
            return
        # A filter selector skips missing ids; a list of ids fails if one is missing.
        selector = qm.FilterSelector(filter=qm.Filter(must=[qm.HasIdCondition(has_id=wanted)]))
        with self._calls(collection):
            self._client.set_payload(
                self._name(collection), payload=payload_in(payload), points=selector, wait=True
            )

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        """Remove the points among `ids`; missing ids are not an error."""
        wanted: list[qm.ExtendedPointId] = [str(to_uuid(i)) for i in ids]
        if not wanted:
            return
        with self._calls(collection):
            self._client.delete(
                self._name(collection),
                points_selector=qm.PointIdsList(points=wanted),
                wait=True,
            )

    # --- reads ------------------------------------------------------------------

    def retrieve(
        self, collection: str, ids: Sequence[str], *, with_vectors: bool = False
    ) -> list[Point]:
        """The points that exist among `ids`, in the order given (each once). Cosine vectors
        come back unit-length: the server stores them normalised."""
        wanted = list(dict.fromkeys(to_uuid(i) for i in ids))
        if not wanted:
            return []
        with self._calls(collection):
            records = self._client.retrieve(
                self._name(collection),
                ids=[str(u) for u in wanted],
                with_payload=True,
                with_vectors=with_vectors,
            )
        # The server answers in its own order.
        by_id = {uuid.UUID(str(r.id)): r for r in records}
        return [_point_out(by_id[u], with_vectors) for u in wanted if u in by_id]

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
        (or one (dim,) vector) and scores by MaxSim. With int8 quantization the candidates
        are rescored on the original vectors."""
        schema = self._schema(collection)
        specs = schema.specs
        spec = specs.get(vector_name)
        if spec is None:
            raise InvalidInput(
                f"collection {collection!r} has no vector {vector_name!r} "
                f"(it has {describe(list(specs.values()))})"
            )
        if offset < 0:
            raise InvalidInput("offset must be >= 0")
        if ef is not None and ef < 1:
            raise InvalidInput("ef must be >= 1")
        vector = query_vector(spec, query)
        if limit <= 0:
            return []
        quantization = None
        if schema.quantized:
            quantization = qm.QuantizationSearchParams(
                ignore=exact, rescore=True, oversampling=_INT8_OVERSAMPLING
            )
        with self._calls(collection):
            response = self._client.query_points(
                self._name(collection),
                query=vector,
                using=vector_name,
                limit=limit,
                offset=offset or None,
                query_filter=_filter(query_filter) if query_filter is not None else None,
                score_threshold=score_threshold,
                search_params=qm.SearchParams(hnsw_ef=ef, exact=exact, quantization=quantization),
                with_payload=with_payload,
                with_vectors=False,
            )
        return [
            Hit(
                id=to_ulid(p.id),
                score=float(p.score),
                payload=dict(p.payload or {}) if with_payload else None,
            )
            for p in response.points
        ]

    def count(self, collection: str, query_filter: Filter | None = None) -> int:
        """Exact number of points matching the filter."""
        with self._calls(collection):
            result = self._client.count(
                self._name(collection),
                count_filter=_filter(query_filter) if query_filter is not None else None,
                exact=True,
            )
        return int(result.count)

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
        start = str(to_uuid(offset)) if offset is not None else None
        with self._calls(collection):
            records, next_id = self._client.scroll(
                self._name(collection),
                scroll_filter=_filter(query_filter) if query_filter is not None else None,
                limit=limit,
                offset=start,
                with_payload=True,
                with_vectors=with_vectors,
            )
        page = [_point_out(r, with_vectors) for r in records]
        return page, (to_ulid(next_id) if next_id is not None else None)

    # --- indexing -------------------------------------------------------------------

    def build_index(self, collection: str, *, wait: bool = False) -> None:
        """Ask the server to index every segment now (its optimizer threshold goes to the
        minimum). With `wait`, poll until the collection is green with every point's vectors
        indexed, then restore the collection's own threshold; without, the low threshold stays
        until a later `build_index(wait=True)`. Searches keep being answered throughout.

        Local mode builds no index: this returns at once and `status` keeps saying 0 indexed.
        """
        if self._local:
            self._info(collection)  # still: an unknown collection is an error
            return
        name = self._name(collection)
        with self._calls(collection):
            self._client.update_collection(
                name,
                optimizers_config=qm.OptimizersConfigDiff(indexing_threshold=_BUILD_THRESHOLD_KB),
            )
        if not wait:
            return
        started = time.monotonic()
        saw_busy = False
        while True:
            info = self._info(collection)
            error = _optimizer_error(info)
            if error is not None:
                raise StorageError(f"{self._where}: index build of {collection!r} failed: {error}")
            if info.status != qm.CollectionStatus.GREEN:
                saw_busy = True
            else:
                every_point = int(info.indexed_vectors_count or 0) >= int(info.points_count or 0)
                # Green after yellow: the optimizer ran. Green all along: nothing was left to
                # index (segments under 1 KB of vectors never are), once the optimizer has had
                # time to pick the change up.
                settled = time.monotonic() - started >= _BUILD_SETTLE_S
                if every_point or saw_busy or settled:
                    break
            if time.monotonic() - started > _BUILD_TIMEOUT_S:
                raise StorageError(
                    f"{self._where}: collection {collection!r} was not indexed within "
                    f"{_BUILD_TIMEOUT_S:.0f} s (status {info.status})"
                )
            time.sleep(_BUILD_POLL_S)
        settings = self.index_settings(collection)
        specs = self._specs_of(collection, info)
        with self._calls(collection):
            self._client.update_collection(
                name,
                optimizers_config=qm.OptimizersConfigDiff(
                    indexing_threshold=_threshold_kb(specs, settings.indexing_threshold)
                ),
            )

    def status(self, collection: str) -> IndexStatus:
        """Points and indexed vectors as the server counts them; `building` while its optimizer
        runs or has work pending (yellow or grey)."""
        info = self._info(collection)
        return IndexStatus(
            points=int(info.points_count or 0),
            indexed_vectors=int(info.indexed_vectors_count or 0),
            building=info.status in _BUSY,
            last_build_error=_optimizer_error(info),
        )

    # --- life cycle -----------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (in local mode: persist and release the directory)."""
        if self._closed:
            return
        self._closed = True
        with self._local_lock, contextlib.suppress(Exception):
            self._client.close()

    def __enter__(self) -> QdrantServerIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ----------------------------------------------------------------------

    def _name(self, collection: str) -> str:
        return f"{self._namespace}_{collection}"

    def _vector_params(self, spec: VectorSpec) -> qm.VectorParams:
        return qm.VectorParams(
            size=spec.dim,
            distance=_DISTANCES[spec.distance],
            on_disk=self._on_disk or None,
            multivector_config=(
                qm.MultiVectorConfig(comparator=qm.MultiVectorComparator.MAX_SIM)
                if spec.multivector
                else None
            ),
        )

    def _schema(self, collection: str) -> _Schema:
        schema = self._schemas.get(collection)
        if schema is None:
            info = self._info(collection)
            specs = self._specs_of(collection, info)
            schema = _Schema(
                specs={v.name: v for v in specs},
                quantized=info.config.quantization_config is not None,
            )
            self._schemas[collection] = schema
        return schema

    def _info(self, collection: str) -> qm.CollectionInfo:
        if not NAME.match(collection):
            raise CollectionNotFound(f"no collection {collection!r}")
        with self._calls(collection):
            return self._client.get_collection(self._name(collection))

    def _specs_of(self, collection: str, info: qm.CollectionInfo) -> list[VectorSpec]:
        vectors = info.config.params.vectors
        if not isinstance(vectors, Mapping):
            raise StorageError(
                f"{self._where}: collection {self._name(collection)!r} has an unnamed vector; "
                "it was not created by Lookalike"
            )
        specs = {
            name: VectorSpec(
                name=name,
                dim=params.size,
                distance=_DISTANCE_NAMES[params.distance],  # type: ignore[arg-type]
                multivector=params.multivector_config is not None,
            )
            for name, params in vectors.items()
        }
        # The server may list named vectors in its own (sorted) order; the metadata keeps the
        # order they were created in. The config stays the truth for what they are.
        meta = _lookalike_meta(info)
        order = [v.get("name") for v in meta["vectors"]] if meta else []
        if sorted(order) == sorted(specs):
            return [specs[name] for name in order]
        return list(specs.values())

    def _metadata(self, collection: str) -> dict[str, Any] | None:
        return _lookalike_meta(self._info(collection))

    @contextlib.contextmanager
    def _calls(self, collection: str | None = None) -> Iterator[None]:
        """Turn whatever the client raises into a domain error naming the server (never the
        API key)."""
        if self._closed:
            raise StorageError("the vector index is closed")
        try:
            try:
                with self._local_lock:
                    yield
            except LookalikeError:
                raise
            except UnexpectedResponse as exc:
                self._raise_for_status(exc.status_code, _detail(exc), collection)
            except (
                ResponseHandlingException,
                httpx.HTTPError,
                ConnectionError,
                TimeoutError,
            ) as exc:
                self._unavailable(exc)
            except Exception as exc:
                self._raise_other(exc, collection)
        except CollectionNotFound:
            if collection is not None:
                self._schemas.pop(collection, None)  # dropped elsewhere: read it afresh next time
            raise

    def _raise_for_status(
        self, status: int | None, detail: str, collection: str | None
    ) -> NoReturn:
        if status in (401, 403):
            raise Misconfigured(
                f"{self._where} refused the API key ({status}): check LOOKALIKE_QDRANT_API_KEY"
            )
        if status == 404:
            if collection is not None:
                raise CollectionNotFound(f"no collection {collection!r}")
            # Not even the list of collections: something else answers at that URL.
            raise Misconfigured(
                f"{self._where} answered 404 to Qdrant's API: check the URL (and any path prefix)"
            )
        if status == 409:
            raise Conflict(self._scrub(f"{self._where}: {detail}"))
        # 408 and 429 (a cloud's rate limit) pass, like an outage: the caller retries later.
        if status is not None and 400 <= status < 500 and status not in (408, 429):
            raise InvalidInput(self._scrub(f"{self._where} rejected the request: {detail}"))
        raise VectorStoreUnavailable(
            self._scrub(f"{self._where} is unavailable ({status}): {detail}")
        )

    def _unavailable(self, exc: BaseException) -> NoReturn:
        source = exc.source if isinstance(exc, ResponseHandlingException) else exc
        raise VectorStoreUnavailable(
            self._scrub(f"cannot reach {self._where}: {type(source).__name__}: {source}")
        ) from None

    def _raise_other(self, exc: Exception, collection: str | None) -> NoReturn:
        grpc_code = _grpc_code(exc)
        if grpc_code is not None:
            statuses = {
                "UNAUTHENTICATED": 401,
                "PERMISSION_DENIED": 403,
                "NOT_FOUND": 404,
                "ALREADY_EXISTS": 409,
                "INVALID_ARGUMENT": 400,
                "FAILED_PRECONDITION": 400,
            }
            detail = str(getattr(exc, "details", lambda: "")() or grpc_code)
            if grpc_code in statuses:
                self._raise_for_status(statuses[grpc_code], detail, collection)
            raise VectorStoreUnavailable(
                self._scrub(f"cannot reach {self._where}: gRPC {grpc_code}: {detail}")
            ) from None
        text = str(exc)
        # Local mode speaks in plain exceptions.
        if self._local and collection is not None and "not found" in text.lower():
            raise CollectionNotFound(f"no collection {collection!r}") from None
        if self._local and "already accessed by another instance" in text:
            raise StorageError(f"{self._where} is open in another client: {text}") from None
        if isinstance(exc, ValueError | TypeError):
            raise InvalidInput(self._scrub(f"{self._where} rejected the request: {text}")) from None
        raise StorageError(self._scrub(f"{self._where}: {type(exc).__name__}: {text}")) from exc

    def _scrub(self, message: str) -> str:
        if self._api_key:
            message = message.replace(self._api_key, "***")
        return message


@dataclass(frozen=True)
class _Schema:
    specs: dict[str, VectorSpec]
    quantized: bool


# --- conversions --------------------------------------------------------------------------


def _threshold_kb(specs: Sequence[VectorSpec], points: int) -> int:
    """The optimizer threshold (KB of vectors in a segment) for `points` points: one vector of
    each spec per point (a multivector counted as one)."""
    per_point = sum(v.dim for v in specs) * 4
    return max(_BUILD_THRESHOLD_KB, math.ceil(points * per_point / 1024))


def _lookalike_meta(info: qm.CollectionInfo) -> dict[str, Any] | None:
    meta = (info.config.metadata or {}).get(_META_KEY)
    if isinstance(meta, dict) and meta.get("format") == _FORMAT:
        return meta
    return None


def _optimizer_error(info: qm.CollectionInfo) -> str | None:
    status = info.optimizer_status
    return status.error if isinstance(status, qm.OptimizersStatusOneOf1) else None


def _detail(exc: UnexpectedResponse) -> str:
    try:
        body = exc.structured()
        status = body.get("status") if isinstance(body, dict) else None
        if isinstance(status, dict) and "error" in status:
            return str(status["error"])
    except ValueError:
        pass
    return f"{exc.reason_phrase}: {exc.content[:200]!r}"


def _grpc_code(exc: Exception) -> str | None:
    code = getattr(exc, "code", None)
    if not callable(code) or not type(exc).__module__.startswith("grpc"):
        return None
    try:
        value = code()
    except Exception:
        return None
    name = getattr(value, "name", None)
    return str(name) if name is not None else None


def _point_struct(specs: Mapping[str, VectorSpec], point: Point) -> qm.PointStruct:
    uid = to_uuid(point.id)
    vectors: dict[str, Any] = {}
    for name, value in point.vectors.items():
        spec = specs.get(name)
        if spec is None:
            raise InvalidInput(
                f"point {point.id}: unknown vector {name!r} (the collection has {', '.join(specs)})"
            )
        vectors[name] = vector_array(spec, value, f"point {point.id}").tolist()
    try:
        return qm.PointStruct(id=str(uid), vector=vectors, payload=payload_in(point.payload))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"point {point.id}: payload is not JSON-like: {exc}") from None


def _point_out(record: qm.Record, with_vectors: bool) -> Point:
    vectors: dict[str, NDArray[np.float32]] = {}
    if with_vectors and isinstance(record.vector, dict):
        vectors = {name: np.asarray(v, dtype=np.float32) for name, v in record.vector.items()}
    return Point(id=to_ulid(record.id), vectors=vectors, payload=dict(record.payload or {}))


def _filter(query_filter: Filter) -> qm.Filter:
    return qm.Filter(
        must=[_condition(c) for c in query_filter.must] or None,
        should=[_condition(c) for c in query_filter.should] or None,
        must_not=[_condition(c) for c in query_filter.must_not] or None,
    )


def _condition(condition: Condition) -> Any:
    if isinstance(condition, Filter):
        return _filter(condition)
    if isinstance(condition, MatchValue):
        # The server's model keeps bool, int and str apart (StrictBool first): unlike Qdrant
        # Edge 0.9, a Python bool reaches it as a JSON bool.
        return qm.FieldCondition(key=condition.key, match=qm.MatchValue(value=condition.value))
    if isinstance(condition, MatchAny):
        return _match_any(condition)
    if isinstance(condition, Range):
        return qm.FieldCondition(
            key=condition.key,
            range=qm.Range(gt=condition.gt, gte=condition.gte, lt=condition.lt, lte=condition.lte),
        )
    if isinstance(condition, DatetimeRange):
        return qm.FieldCondition(key=condition.key, range=qm.DatetimeRange(**iso_bounds(condition)))
    if isinstance(condition, HasId):
        ids: list[qm.ExtendedPointId] = [str(to_uuid(i)) for i in condition.ids]
        return qm.HasIdCondition(has_id=ids)
    if isinstance(condition, IsEmpty):
        return qm.IsEmptyCondition(is_empty=qm.PayloadField(key=condition.key))
    raise InvalidInput(f"unsupported filter condition: {condition!r}")


def _match_any(condition: MatchAny) -> Any:
    strings = [v for v in condition.values if isinstance(v, str)]
    numbers = [v for v in condition.values if not isinstance(v, str)]
    # The server takes one value type per condition: a mixed list becomes an OR of two.
    parts: list[qm.Condition] = []
    if strings:
        parts.append(qm.FieldCondition(key=condition.key, match=qm.MatchAny(any=strings)))
    if numbers:
        parts.append(qm.FieldCondition(key=condition.key, match=qm.MatchAny(any=numbers)))
    if len(parts) == 1:
        return parts[0]
    if not parts:  # no values matches nothing, as an empty MatchAny does
        return qm.FieldCondition(key=condition.key, match=qm.MatchAny(any=[]))
    return qm.Filter(should=parts)
