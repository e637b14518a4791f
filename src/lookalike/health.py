"""Which stores this deployment uses and whether each one answers: `/readyz` and
`lookalike doctor` both report these checks.

Locations are shown without secrets (a password in a database URL, an API key), so a check can
go into a log or a support ticket as it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy.engine import make_url

from lookalike.catalog import Catalog
from lookalike.core.config import Settings
from lookalike.core.errors import DataDirLocked
from lookalike.storage import BlobStore, open_blob_store
from lookalike.vectors import VectorIndex, engine_name, open_vector_index

# A key no blob has (the blob store answers "not there"), to ask the store something cheap.
_PROBE_SHA256 = "0" * 64


@dataclass(frozen=True)
class StoreCheck:
    """One store: what it is for, which engine, where, and whether it answered."""

    role: str  # catalog | vectors | blobs | cache
    engine: str
    location: str
    ok: bool
    detail: str  # "ok", or what went wrong
    latency_ms: float
    # False for the search cache: without it searches still work (uncached), so a cache that is
    # down must not take the server out of service.
    required: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_stores(
    settings: Settings, catalog: Catalog, vectors: VectorIndex, blobs: BlobStore
) -> list[StoreCheck]:
    """Ask each open store one cheap question (the running server's readiness)."""
    return [
        _check("catalog", *_catalog_where(settings), catalog.ping),
        _check("vectors", *_vectors_where(settings), lambda: vectors.has_collection("readyz")),
        _check("blobs", *_blobs_where(settings), lambda: _probe_blobs(blobs)),
        *_cache_checks(settings),
    ]


def probe_stores(settings: Settings) -> list[StoreCheck]:
    """Open each store the settings name, ask it one question and close it (`lookalike
    doctor`: works beside a running server)."""

    def catalog() -> None:
        opened = Catalog(settings.catalog_url)
        try:
            opened.ping()
        finally:
            opened.close()

    def vectors() -> str | None:
        try:
            index = open_vector_index(settings)
        except DataDirLocked as exc:
            # The embedded engine is held by a running server: it is there, and in use.
            return f"in use: {exc}"
        try:
            index.has_collection("readyz")
        finally:
            index.close()
        return None

    return [
        _check("catalog", *_catalog_where(settings), catalog),
        _check("vectors", *_vectors_where(settings), vectors),
        _check("blobs", *_blobs_where(settings), lambda: _probe_blobs(open_blob_store(settings))),
        *_cache_checks(settings),
    ]


def _check(
    role: str, engine: str, location: str, probe: Callable[[], object], *, required: bool = True
) -> StoreCheck:
    started = time.perf_counter()
    try:
        said = probe()
    except Exception as exc:
        detail, ok = f"error: {exc}", False
    else:
        detail, ok = (said if isinstance(said, str) else "ok"), True
    elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
    return StoreCheck(role, engine, location, ok, detail, elapsed_ms, required)


def _probe_blobs(blobs: BlobStore) -> None:
    blobs.exists(blobs.key_for(_PROBE_SHA256))


def _cache_checks(settings: Settings) -> list[StoreCheck]:
    if settings.cache_url is None:
        return []

    def ping() -> None:
        import redis

        client = redis.Redis.from_url(settings.cache_url or "", socket_timeout=2.0)
        try:
            client.ping()
        finally:
            client.close()

    return [_check("cache", "redis", _hide_password(settings.cache_url), ping, required=False)]


def _catalog_where(settings: Settings) -> tuple[str, str]:
    url = make_url(settings.catalog_url)
    return url.get_backend_name(), _hide_password(settings.catalog_url)


def _vectors_where(settings: Settings) -> tuple[str, str]:
    engine = engine_name(settings.vectors)
    if engine == "edge":
        return engine, str(settings.vectors_dir)
    return engine, f"{_hide_password(settings.vectors)} (namespace {settings.vectors_namespace})"


def _blobs_where(settings: Settings) -> tuple[str, str]:
    if settings.blobs_s3 is None:
        return "local", str(settings.blobs_dir)
    endpoint = settings.s3_endpoint or "AWS"
    return "s3", f"{settings.blobs} at {endpoint}"


def _hide_password(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        # Not an URL SQLAlchemy reads (milvus://, redis://): drop any user info.
        scheme, sep, rest = url.partition("://")
        return scheme + sep + rest.rpartition("@")[2] if sep else url
