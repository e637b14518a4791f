"""The search cache: ranked hits of repeated searches, kept in Redis (`LOOKALIKE_CACHE_URL`).

What is kept is the vector engine's ranked answer (image id, score, payload per hit) under a
digest of everything that determines it (`SearchKey`). A hit skips decoding and embedding the
query, which is most of a search's cost; the catalog still names the hits on every request, so a
renamed record never shows its old name.

Entries must never outlive the data they were computed from. Each collection has a version in
Redis, a random token that every write to its vectors replaces (`InvalidatingIndex`, which the
runtime puts in front of the engine when a cache is configured, so no write can forget it); an
entry carries the version it was computed under and counts only while that is still the current
one. The token is random rather than a counter so that a version key lost to eviction, a flush
or a Redis restart can never come back with a value an old entry carries.

The cache is optional, so Redis failing never fails a search: the search runs uncached, a warning
is logged at most once a minute, and the cache is left alone for a second before it is tried
again. A version bump that fails is remembered and sent before this process reads the cache
again (a background thread keeps trying meanwhile, for the other replicas' sake).

Values are JSON signed with a key derived from the deployment's secret, never pickles: the
server may be shared, and an entry another writer made (or moved to another key, another
tenant's) is a miss, not an answer.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import astuple, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from lookalike.core.config import Settings
from lookalike.core.errors import Misconfigured
from lookalike.vectors.base import (
    Filter,
    Hit,
    IndexSettings,
    IndexStatus,
    PayloadType,
    Point,
    VectorIndex,
    VectorSpec,
)

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger(__name__)

# Part of every digest: changing what a key covers or how a value reads means a new schema, so
# entries written by an older release are never read by a newer one.
KEY_SCHEMA = 1
# How long an entry lives; proposed setting `cache_ttl_s`. Writes through the runtime retire
# entries at once, so this bounds only writes that go around it (a copy into a live engine).
DEFAULT_TTL_S = 300
# Results whose JSON is bigger are not kept (a 1000-hit page with payloads); proposed setting
# `cache_max_entry_bytes`.
MAX_ENTRY_BYTES = 512 * 1024
# A version key outlives every entry made under it; once gone, the next search makes a new one.
VERSION_TTL_S = 7 * 24 * 3600
# Redis slower than this is treated as down: a cache must not make a search slower.
TIMEOUT_S = 0.5
# After a failure the cache is left alone this long (no timeout paid by every search meanwhile).
RETRY_S = 1.0
WARN_EVERY_S = 60.0

CacheResult = Literal["hit", "miss", "error"]
_RESULTS: tuple[CacheResult, ...] = ("hit", "miss", "error")


@dataclass(frozen=True)
class SearchKey:
    """Everything that determines a search's ranked hits, besides the collection's contents.

    `query` names the query and its kind: `text:<the text>`, `image:<sha256 of the bytes>` or
    `image_id:<id>`; `filters` is the canonical JSON of the filters ("" for none).
    """

    tenant: str
    collection_id: str
    model_id: str
    vector_name: str
    query: str
    filters: str
    limit: int
    offset: int
    score_threshold: float | None
    phash_gate: int | None
    use_crops: bool
    include_payload: bool
    ef: int | None


@dataclass(frozen=True)
class CacheLookup:
    """What `SearchCache.lookup` found: the `hits` when cached, else what `store` needs to keep
    the computed ones (`version` None: do not store, the cache could not be read)."""

    hits: list[Hit] | None
    entry_key: str = ""
    version: str | None = None


@dataclass(frozen=True)
class CacheStats:
    """Counts since the cache was opened, for the metrics."""

    requests: Mapping[CacheResult, int]
    invalidations: int
    pending_invalidations: int


class SearchCache:
    """Search results in Redis, per collection version. Thread-safe; never raises on a Redis
    failure (a lookup answers a miss that must not be stored, a bump is retried)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        secret: str,
        ttl_s: float = DEFAULT_TTL_S,
        max_entry_bytes: int = MAX_ENTRY_BYTES,
    ) -> None:
        # Imported here: the client is an optional extra, and without a cache nothing needs it.
        import redis
        import redis.exceptions

        self._errors: tuple[type[Exception], ...] = (redis.exceptions.RedisError, OSError)
        # Where, for log lines: a password in the URL stays out of them.
        scheme, sep, rest = url.partition("://")
        self.location = scheme + sep + rest.rpartition("@")[2]
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.max_entry_bytes = max_entry_bytes
        self._redis: Redis = redis.Redis.from_url(
            url, socket_connect_timeout=TIMEOUT_S, socket_timeout=TIMEOUT_S
        )
        # Keys and values are keyed with the deployment's secret: the key names reveal no query
        # (a text's plain hash would), and only this deployment's entries verify.
        self._mac_key = hmac.new(secret.encode(), b"lookalike search cache", "sha256").digest()
        self._lock = threading.Lock()
        self._counts: dict[CacheResult, int] = dict.fromkeys(_RESULTS, 0)
        self._invalidations = 0
        # Collections whose bump failed -> a generation, raised by each failed bump, so a flush
        # that raced a newer failure leaves that one pending.
        self._pending: dict[str, int] = {}
        self._down_until = -math.inf
        self._last_warning = -math.inf
        self._closed = threading.Event()
        self._retrier: threading.Thread | None = None

    # --- searches ------------------------------------------------------------

    def lookup(self, key: SearchKey) -> CacheLookup:
        """The cached hits for `key` if its collection has not changed since they were stored."""
        if not self._usable():
            self._count("error")
            return CacheLookup(None)
        entry_key = self._entry_key(key)
        version_key = self._version_key(key.collection_id)
        try:
            self._flush_pending()
            raw_version, raw_entry = self._redis.mget([version_key, entry_key])
            if raw_version is None:
                version = self._start_version(version_key)
            else:
                # The client answers bytes (no decode_responses); str only keeps the types honest.
                version = raw_version.decode() if isinstance(raw_version, bytes) else raw_version
                hits = (
                    self._decode(entry_key, raw_entry, version)
                    if isinstance(raw_entry, bytes)
                    else None
                )
                if hits is not None:
                    self._count("hit")
                    return CacheLookup(hits, entry_key, version)
        except self._errors as exc:
            self._failed(exc)
            self._count("error")
            return CacheLookup(None)
        self._count("miss")
        return CacheLookup(None, entry_key, version)

    def store(self, lookup: CacheLookup, hits: Sequence[Hit]) -> None:
        """Keep `hits`, computed after `lookup` missed, under the version that lookup read."""
        if lookup.version is None or not self._usable():
            return
        try:
            body = json.dumps(
                {"v": lookup.version, "hits": [[h.id, h.score, h.payload] for h in hits]},
                separators=(",", ":"),
                allow_nan=False,
            ).encode()
        except (TypeError, ValueError):  # a payload JSON cannot hold: such a result is not kept
            log.debug("search result not cached: its payload is not JSON", exc_info=True)
            return
        if len(body) > self.max_entry_bytes:
            return
        try:
            # A bump still owed must land first, or this entry could outlive the write.
            self._flush_pending()
            self._redis.set(
                lookup.entry_key, self._sign(lookup.entry_key, body) + body, ex=int(self.ttl_s)
            )
        except self._errors as exc:
            self._failed(exc)

    # --- writes --------------------------------------------------------------

    def invalidate(self, collection_id: str) -> None:
        """Retire every entry of the collection (call after each write to its vectors)."""
        if self._usable():
            try:
                self._flush_pending()
                self._bump(collection_id)
                return
            except self._errors as exc:
                self._failed(exc)
        with self._lock:
            self._pending[collection_id] = self._pending.get(collection_id, 0) + 1
            if self._retrier is None or not self._retrier.is_alive():
                self._retrier = threading.Thread(
                    target=self._retry_pending, name="search-cache-retry", daemon=True
                )
                self._retrier.start()

    # --- life cycle ----------------------------------------------------------

    def health(self) -> str:
        """`ok`, or `error: ...` saying why the cache cannot be used (searches run uncached)."""
        try:
            self._redis.ping()
            self._flush_pending()
        except self._errors as exc:
            return f"error: {exc}"
        with self._lock:
            pending = len(self._pending)
        return f"error: {pending} invalidation(s) not yet sent" if pending else "ok"

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(dict(self._counts), self._invalidations, len(self._pending))

    def close(self) -> None:
        self._closed.set()
        retrier = self._retrier
        if retrier is not None:
            retrier.join(timeout=5)
        self._redis.close()

    # --- inside --------------------------------------------------------------

    def _entry_key(self, key: SearchKey) -> str:
        canonical = json.dumps([KEY_SCHEMA, *astuple(key)], separators=(",", ":"))
        digest = hmac.new(self._mac_key, canonical.encode(), "sha256").hexdigest()
        # The collection id in braces: a Redis Cluster keeps a collection's keys on one node.
        return f"{self.prefix}{{{key.collection_id}}}:r:{digest}"

    def _version_key(self, collection_id: str) -> str:
        return f"{self.prefix}{{{collection_id}}}:v"

    def _sign(self, entry_key: str, body: bytes) -> bytes:
        # The key is signed with the body, so a genuine entry copied under another key (another
        # tenant's search) does not verify.
        return (
            hmac.new(self._mac_key, entry_key.encode() + b"\0" + body, "sha256")
            .hexdigest()
            .encode()
        )

    def _decode(self, entry_key: str, raw: bytes, version: str) -> list[Hit] | None:
        mac, body = raw[:64], raw[64:]
        if not hmac.compare_digest(mac, self._sign(entry_key, body)):
            return None
        try:
            value = json.loads(body)
            if value["v"] != version:
                return None
            return [Hit(str(i), float(score), payload) for i, score, payload in value["hits"]]
        except (ValueError, KeyError, TypeError):  # signed but unreadable: an older release's
            return None

    def _start_version(self, version_key: str) -> str:
        """The collection's version, made now if it has none (new, evicted, or Redis restarted)."""
        token = secrets.token_hex(8)
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(version_key, token, nx=True, ex=VERSION_TTL_S)
        pipe.get(version_key)
        _, current = pipe.execute()
        return current.decode() if current else token

    def _bump(self, collection_id: str) -> None:
        self._redis.set(self._version_key(collection_id), secrets.token_hex(8), ex=VERSION_TTL_S)
        with self._lock:
            self._invalidations += 1

    def _flush_pending(self) -> None:
        """Send the bumps that failed; raises if Redis still fails (nothing may be read then)."""
        if not self._pending:  # read without the lock: the common case costs nothing
            return
        with self._lock:
            owed = dict(self._pending)
        for collection_id, generation in owed.items():
            self._bump(collection_id)
            with self._lock:
                if self._pending.get(collection_id) == generation:
                    del self._pending[collection_id]

    def _retry_pending(self) -> None:
        while not self._closed.wait(RETRY_S):
            try:
                self._flush_pending()
            except self._errors as exc:
                self._failed(exc)
                continue
            with self._lock:
                if not self._pending:
                    self._retrier = None
                    return

    def _usable(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._down_until = now + RETRY_S
        if now - self._last_warning >= WARN_EVERY_S:
            self._last_warning = now
            log.warning("search cache at %s failed, searching uncached: %s", self.location, exc)

    def _count(self, result: CacheResult) -> None:
        with self._lock:
            self._counts[result] += 1


class InvalidatingIndex(VectorIndex):
    """A `VectorIndex` that retires a collection's cached searches after every write to it.

    Writes bump the version even when they fail: a failed batch may have written part of itself.
    Everything else goes to the wrapped engine as it is.
    """

    def __init__(self, inner: VectorIndex, cache: SearchCache) -> None:
        self.inner = inner
        self.cache = cache

    def create_collection(
        self,
        collection: str,
        vectors: Sequence[VectorSpec],
        settings: IndexSettings,
        payload_indexes: Mapping[str, PayloadType],
    ) -> None:
        try:
            self.inner.create_collection(collection, vectors, settings, payload_indexes)
        finally:
            self.cache.invalidate(collection)

    def drop_collection(self, collection: str) -> None:
        try:
            self.inner.drop_collection(collection)
        finally:
            self.cache.invalidate(collection)

    def upsert(self, collection: str, points: Sequence[Point]) -> None:
        try:
            self.inner.upsert(collection, points)
        finally:
            self.cache.invalidate(collection)

    def set_payload(self, collection: str, ids: Sequence[str], payload: Mapping[str, Any]) -> None:
        try:
            self.inner.set_payload(collection, ids, payload)
        finally:
            self.cache.invalidate(collection)

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        try:
            self.inner.delete(collection, ids)
        finally:
            self.cache.invalidate(collection)

    def has_collection(self, collection: str) -> bool:
        return self.inner.has_collection(collection)

    def vector_specs(self, collection: str) -> list[VectorSpec]:
        return self.inner.vector_specs(collection)

    def retrieve(
        self, collection: str, ids: Sequence[str], *, with_vectors: bool = False
    ) -> list[Point]:
        return self.inner.retrieve(collection, ids, with_vectors=with_vectors)

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
        return self.inner.search(
            collection,
            vector_name,
            query,
            limit=limit,
            offset=offset,
            query_filter=query_filter,
            score_threshold=score_threshold,
            ef=ef,
            with_payload=with_payload,
            exact=exact,
        )

    def count(self, collection: str, query_filter: Filter | None = None) -> int:
        return self.inner.count(collection, query_filter)

    def scroll(
        self,
        collection: str,
        *,
        query_filter: Filter | None = None,
        limit: int = 256,
        offset: str | None = None,
        with_vectors: bool = False,
    ) -> tuple[list[Point], str | None]:
        return self.inner.scroll(
            collection,
            query_filter=query_filter,
            limit=limit,
            offset=offset,
            with_vectors=with_vectors,
        )

    def iter_points(
        self, collection: str, *, query_filter: Filter | None = None, with_vectors: bool = False
    ) -> Iterator[Point]:
        return self.inner.iter_points(
            collection, query_filter=query_filter, with_vectors=with_vectors
        )

    def build_index(self, collection: str, *, wait: bool = False) -> None:
        self.inner.build_index(collection, wait=wait)

    def maybe_build_index(self, collection: str) -> bool:
        return self.inner.maybe_build_index(collection)

    def status(self, collection: str) -> IndexStatus:
        return self.inner.status(collection)

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            self.cache.close()


def with_search_cache(vectors: VectorIndex, settings: Settings) -> VectorIndex:
    """`vectors` behind an `InvalidatingIndex` when `settings.cache_url` names a Redis, else
    `vectors` itself (no cache, no cost)."""
    if not settings.cache_url:
        return vectors
    try:
        import redis  # noqa: F401
    except ImportError:
        raise Misconfigured(
            "LOOKALIKE_CACHE_URL is set but the Redis client is not installed; "
            "run `pip install 'lookalike[redis]'`"
        ) from None
    from lookalike.auth.tokens import secret_key

    cache = SearchCache(
        settings.cache_url,
        prefix=f"{settings.redis_key_prefix}search:",
        secret=secret_key(settings),
        ttl_s=settings.cache_ttl_s,
        max_entry_bytes=settings.cache_max_entry_bytes,
    )
    return InvalidatingIndex(vectors, cache)


def search_cache_of(vectors: VectorIndex) -> SearchCache | None:
    """The cache behind which `vectors` sits, if any. The cache is reached only through the
    index that invalidates it, so no search can read entries that some write went around."""
    return vectors.cache if isinstance(vectors, InvalidatingIndex) else None
