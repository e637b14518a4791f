"""Qdrant Edge: the vector index inside the server's own process, one shard per collection.

Layout of `root_dir`::

    .lock                      fcntl lock: one process per data directory
    <collection>/
        collection.json        vector specs, index settings, payload indexes, live shard name
        shard-000001/          the live Qdrant Edge shard
        shard-000002/          while a build runs: the copy being indexed

Index builds never run in this process. `EdgeShard.optimize()` holds the GIL for the whole HNSW
build (about 70 s at 100k 512-d vectors), which would freeze every other thread of the API
server. A build instead copies the live shard (writes wait for the copy, reads do not), indexes
the copy in a child process (`lookalike.vectors._edge_build`), then loads it here, replays the
writes that arrived meanwhile from an in-memory log, points `collection.json` at it and swaps
it in. Searches keep going to the live shard throughout (an exact scan of its unindexed points).

When builds happen: `maybe_build_index` (called by ingest after each burst) starts one once
`IndexSettings.indexing_threshold` points have been written since the last build; a build that
ends with that many new points already waiting starts the next one itself.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe
from numpy.typing import NDArray

from lookalike.core.datadir import lock_directory
from lookalike.core.errors import (
    CollectionNotFound,
    Conflict,
    InvalidInput,
    StorageError,
)
from lookalike.vectors._common import (
    NAME,
    as_uuid,
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

log = logging.getLogger(__name__)

# The engine's point id type (the stub's `PointId`, which exists only for type checkers).
_EdgeId = int | uuid.UUID | str

_FORMAT = 1
_META = "collection.json"
_SHARD = re.compile(r"^shard-(\d{6})$")
# One `update` call holds the GIL; small chunks let searches run between them.
_UPSERT_CHUNK = 256
# A filtered search whose matches fit in this many vectors scans them exactly (payload index
# first) instead of walking a filtered HNSW graph: exact results at a few ms.
_FULL_SCAN_POINTS = 10_000
# Segments the optimizer keeps. With the engine's default (2 on this machine) every build
# merged everything into one segment, rebuilding the whole graph for a few new points; with 4
# a build indexes the new points and merges only the smallest segments.
_SEGMENTS = 4
# After a failed build, automatic builds wait this long before trying again.
_RETRY_AFTER_S = 60.0
# A deleted point keeps its storage until the shard is rebuilt (the build's optimize drops it):
# once this many deletes, and at least as many as live points, came since the last build, the
# next write or delete starts one, so a collection that churns stays the size of what it holds.
_VACUUM_AFTER_DELETES = 1000
_INT8_OVERSAMPLING = 2.0

_DISTANCES = {"cosine": qe.Distance.Cosine, "dot": qe.Distance.Dot, "euclid": qe.Distance.Euclid}
_SCHEMAS: dict[str, qe.PayloadSchemaType] = {
    "keyword": qe.PayloadSchemaType.Keyword,
    "integer": qe.PayloadSchemaType.Integer,
    "float": qe.PayloadSchemaType.Float,
    "datetime": qe.PayloadSchemaType.Datetime,
    "bool": qe.PayloadSchemaType.Bool,
}


class QdrantEdgeIndex(VectorIndex):
    """`VectorIndex` on Qdrant Edge shards under `root_dir`; safe to call from many threads.

    Opening takes an exclusive lock on `root_dir`: a second process (or a second instance in
    this one) gets `DataDirLocked`. Collections open lazily on first use.

    `build_niceness` is the `nice` increment of the index-build child process.
    `full_scan_points` applies to collections created by this instance: a segment (or the
    matches of a filter) holding fewer vectors than this is scanned exactly instead of walked
    through the HNSW graph.
    """

    def __init__(
        self,
        root_dir: Path,
        *,
        build_niceness: int = 10,
        full_scan_points: int = _FULL_SCAN_POINTS,
    ) -> None:
        self._root = Path(root_dir)
        self._root.mkdir(parents=True, exist_ok=True)
        self._lock_file = lock_directory(self._root, "the vector data")
        self._build_niceness = build_niceness
        self._full_scan_points = full_scan_points
        self._registry = threading.Lock()
        self._collections: dict[str, _Collection] = {}
        self._dropping: set[str] = set()
        self._closed = False

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
            if kind not in _SCHEMAS:
                raise InvalidInput(f"payload index {key!r}: unknown type {kind!r}")
        with self._registry:
            self._check_open()
            meta = self._read_meta(collection)
            if meta is not None:
                if meta.vectors != specs:
                    raise Conflict(
                        f"collection {collection!r} exists with other vectors "
                        f"({describe(meta.vectors)}); drop it or use another name"
                    )
                return
            path = self._root / collection
            if path.exists():  # a create that died before writing its metadata
                shutil.rmtree(path)
            path.mkdir(parents=True)
            meta = _Meta(
                vectors=specs,
                settings=settings,
                payload_indexes=dict(payload_indexes),
                shard=_shard_name(1),
            )
            try:
                shard = qe.EdgeShard.create(
                    str(path / meta.shard), _edge_config(meta, self._full_scan_points)
                )
                for key, kind in payload_indexes.items():
                    shard.update(qe.UpdateOperation.create_field_index(key, _SCHEMAS[kind]))
                shard.flush()
            except Exception as exc:
                shutil.rmtree(path, ignore_errors=True)
                raise StorageError(f"cannot create collection {collection!r}: {exc}") from exc
            _write_meta(path, meta)
            self._collections[collection] = _Collection(collection, path, meta, shard, 0)

    def drop_collection(self, collection: str) -> None:
        """Remove the collection, its points and any build in progress; absent is not an error."""
        if not NAME.match(collection):
            return
        with self._registry:
            self._check_open()
            coll = self._collections.pop(collection, None)
            # Until its directory is out of sight, no other thread may open it again from disk
            # (it would hold a shard whose files are about to go).
            self._dropping.add(collection)
        try:
            if coll is not None:
                self._close_collection(coll)
            with self._registry:
                path = self._root / collection
                if not path.exists():
                    return
                # Out of sight first, so a half-deleted directory never reads as a collection.
                trash = self._root / f".dropped-{uuid.uuid4().hex}"
                path.rename(trash)
        finally:
            with self._registry:
                self._dropping.discard(collection)
        shutil.rmtree(trash, ignore_errors=True)

    def has_collection(self, collection: str) -> bool:
        if not NAME.match(collection):
            return False
        with self._registry:
            self._check_open()
            if collection in self._dropping:
                return False
            return collection in self._collections or (self._root / collection / _META).exists()

    def vector_specs(self, collection: str) -> list[VectorSpec]:
        """The named vectors the collection was created with."""
        return list(self._get(collection).meta.vectors)

    def index_settings(self, collection: str) -> IndexSettings:
        """The index settings the collection was created with."""
        return self._get(collection).meta.settings

    def payload_indexes(self, collection: str) -> dict[str, PayloadType]:
        """The payload fields the collection indexes, and their types."""
        return dict(self._get(collection).meta.payload_indexes)

    # --- writes -----------------------------------------------------------------

    def upsert(self, collection: str, points: Sequence[Point]) -> None:
        """Insert or replace points. Every vector is checked before anything is written: a wrong
        dimension raises `DimensionMismatch`, an unknown vector name or a bad id `InvalidInput`."""
        coll = self._get(collection)
        converted = [_edge_point(coll.specs, p) for p in points]
        ops = [
            qe.UpdateOperation.upsert_points(converted[i : i + _UPSERT_CHUNK])
            for i in range(0, len(converted), _UPSERT_CHUNK)
        ]
        self._apply(coll, ops, new_points=len(converted))

    def set_payload(self, collection: str, ids: Sequence[str], payload: Mapping[str, Any]) -> None:
        """Merge `payload` keys into the points among `ids` that exist (others are skipped)."""
        coll = self._get(collection)
        wanted: list[_EdgeId] = [to_uuid(i) for i in ids]
        if not wanted or not payload:
            return
        body = payload_in(payload)
        with coll.write_lock:
            shard = coll.live()
            # Qdrant rejects the whole call if one id is missing.
            found = [r.id for r in shard.retrieve(wanted, with_payload=False, with_vector=False)]
            if found:
                self._apply_locked(coll, [qe.UpdateOperation.set_payload(found, body)])

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        """Remove the points among `ids`; missing ids are not an error."""
        coll = self._get(collection)
        wanted: list[_EdgeId] = [to_uuid(i) for i in ids]
        if wanted:
            self._apply(
                coll, [qe.UpdateOperation.delete_points(wanted)], new_points=0, deleted=len(wanted)
            )
            self._maybe_build(coll)

    # --- reads ------------------------------------------------------------------

    def retrieve(
        self, collection: str, ids: Sequence[str], *, with_vectors: bool = False
    ) -> list[Point]:
        """The points that exist among `ids`, in the order given (each once). Cosine vectors
        come back unit-length: the engine stores them normalised."""
        coll = self._get(collection)
        wanted = list(dict.fromkeys(to_uuid(i) for i in ids))
        if not wanted:
            return []
        with coll.reading() as shard:
            records = shard.retrieve(list(wanted), with_payload=True, with_vector=with_vectors)
        by_id = {as_uuid(r.id): r for r in records}
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
        coll = self._get(collection)
        spec = coll.specs.get(vector_name)
        if spec is None:
            raise InvalidInput(
                f"collection {collection!r} has no vector {vector_name!r} "
                f"(it has {describe(coll.meta.vectors)})"
            )
        if offset < 0:
            raise InvalidInput("offset must be >= 0")
        if ef is not None and ef < 1:
            raise InvalidInput("ef must be >= 1")
        vector = query_vector(spec, query)
        if limit <= 0:
            return []
        quantization = None
        if coll.meta.settings.quantization == "int8":
            quantization = qe.QuantizationSearchParams(
                ignore=exact, rescore=True, oversampling=_INT8_OVERSAMPLING
            )
        request = qe.QueryRequest(
            limit=limit,
            offset=offset or None,
            query=qe.Query.Nearest(vector, using=vector_name),
            filter=_edge_filter(query_filter) if query_filter is not None else None,
            score_threshold=score_threshold,
            with_payload=with_payload,
            with_vector=False,
            params=qe.SearchParams(hnsw_ef=ef, exact=exact, quantization=quantization),
        )
        with coll.reading() as shard:
            found = shard.query(request)
        return [
            Hit(
                id=to_ulid(p.id),
                score=float(p.score),
                payload=(p.payload or {}) if with_payload else None,
            )
            for p in found
        ]

    def count(self, collection: str, query_filter: Filter | None = None) -> int:
        """Exact number of points matching the filter."""
        coll = self._get(collection)
        request = qe.CountRequest(
            exact=True, filter=_edge_filter(query_filter) if query_filter is not None else None
        )
        with coll.reading() as shard:
            return int(shard.count(request))

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
        coll = self._get(collection)
        request = qe.ScrollRequest(
            offset=to_uuid(offset) if offset is not None else None,
            limit=limit,
            filter=_edge_filter(query_filter) if query_filter is not None else None,
            with_payload=True,
            with_vector=with_vectors,
        )
        with coll.reading() as shard:
            records, next_id = shard.scroll(request)
        page = [_point_out(r, with_vectors) for r in records]
        return page, (to_ulid(next_id) if next_id is not None else None)

    # --- index builds -------------------------------------------------------------

    def build_index(self, collection: str, *, wait: bool = False) -> None:
        """Start an HNSW build of every unindexed point (one at a time per collection; a call
        during a build joins it). With `wait`, return once a build that covers every write made
        before the call is live. Searches keep being answered throughout."""
        coll = self._get(collection)
        while True:
            build, started = self._start_build(coll)
            if not wait:
                return
            build.done.wait()
            if build.error is not None:
                raise StorageError(f"index build of {collection!r} failed: {build.error}")
            if build.cancelled:
                raise CollectionNotFound(f"collection {collection!r} was closed or dropped")
            if started:
                return
            # We joined a build that began before our call: run one more for what came since.

    def maybe_build_index(self, collection: str) -> bool:
        """Start a build when `indexing_threshold` points have been written since the last one
        (and none runs, and no build failed in the last minute). Costs a few attribute reads:
        call it after every ingest batch. True if a build started."""
        return self._maybe_build(self._get(collection))

    def status(self, collection: str) -> IndexStatus:
        coll = self._get(collection)
        with coll.reading() as shard:
            info = shard.info()
        return IndexStatus(
            points=int(info.points_count),
            indexed_vectors=int(info.indexed_vectors_count),
            building=coll.build is not None,
            last_build_error=coll.last_build_error,
        )

    # --- life cycle -----------------------------------------------------------------

    def close(self) -> None:
        """Stop builds, flush and close every collection, and release the directory lock."""
        with self._registry:
            if self._closed:
                return
            self._closed = True
            colls = list(self._collections.values())
            self._collections.clear()
        try:
            for coll in colls:
                self._close_collection(coll)
        finally:
            self._lock_file.close()  # closing the descriptor releases the flock

    def __enter__(self) -> QdrantEdgeIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the vector index is closed")

    def _read_meta(self, collection: str) -> _Meta | None:
        path = self._root / collection / _META
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StorageError(f"cannot read {path}: {exc}") from exc
        return _Meta.from_json(raw, path)

    def _get(self, collection: str) -> _Collection:
        with self._registry:
            self._check_open()
            coll = self._collections.get(collection)
            if coll is not None:
                return coll
            if not NAME.match(collection) or collection in self._dropping:
                raise CollectionNotFound(f"no collection {collection!r}")
            meta = self._read_meta(collection)
            if meta is None:
                raise CollectionNotFound(f"no collection {collection!r}")
            coll = self._open_collection(collection, meta)
            self._collections[collection] = coll
            return coll

    def _open_collection(self, collection: str, meta: _Meta) -> _Collection:
        path = self._root / collection
        # Anything but the live shard is a build or an old shard a crash left behind.
        for child in path.iterdir():
            if _SHARD.match(child.name) and child.name != meta.shard:
                log.info("removing stale shard %s", child)
                shutil.rmtree(child, ignore_errors=True)
        try:
            shard = qe.EdgeShard.load(str(path / meta.shard))
            info = shard.info()
        except Exception as exc:
            raise StorageError(f"cannot open collection {collection!r}: {exc}") from exc
        # Estimate of the points waiting for a build; exact when there is one dense vector.
        per_point = max(1, len(meta.vectors))
        unindexed = max(0, int(info.points_count) - int(info.indexed_vectors_count) // per_point)
        return _Collection(collection, path, meta, shard, unindexed)

    def _close_collection(self, coll: _Collection) -> None:
        with coll.write_lock:
            coll.closing = True  # no new build may start
        self._cancel_build(coll)
        with coll.write_lock, coll.gate.exclusive():
            if coll.closed:
                return
            coll.closed = True
            try:
                coll.shard.flush()
            finally:
                coll.shard.close()

    def _apply(
        self, coll: _Collection, ops: list[qe.UpdateOperation], *, new_points: int, deleted: int = 0
    ) -> None:
        with coll.write_lock:
            self._apply_locked(coll, ops)
            coll.unindexed += new_points
            coll.deleted += deleted

    def _apply_locked(self, coll: _Collection, ops: list[qe.UpdateOperation]) -> None:
        shard = coll.live()
        build = coll.build
        for op in ops:
            try:
                shard.update(op)
            except Exception as exc:
                raise StorageError(f"write to collection {coll.name!r} failed: {exc}") from exc
            # Writes after the build's copy must reach the built shard too.
            if build is not None and build.log is not None:
                build.log.append(op)

    def _maybe_build(self, coll: _Collection) -> bool:
        threshold = max(1, coll.meta.settings.indexing_threshold)
        if coll.build is not None or coll.closing:
            return False
        if coll.unindexed < threshold and not self._needs_vacuum(coll):
            return False
        if time.monotonic() - coll.failed_at < _RETRY_AFTER_S:
            return False
        _, started = self._start_build(coll)
        return started

    @staticmethod
    def _needs_vacuum(coll: _Collection) -> bool:
        if coll.deleted < _VACUUM_AFTER_DELETES:
            return False
        with coll.reading() as shard:
            return coll.deleted >= int(shard.info().points_count)

    def _start_build(self, coll: _Collection) -> tuple[_Build, bool]:
        with coll.write_lock:
            if coll.closing:
                raise CollectionNotFound(f"collection {coll.name!r} was closed or dropped")
            if coll.build is not None:
                return coll.build, False
            number = _shard_number(coll.meta.shard) + 1
            while (coll.path / _shard_name(number)).exists():
                number += 1
            build = _Build(shard_dir=coll.path / _shard_name(number))
            coll.build = build
        thread = threading.Thread(
            target=self._run_build, args=(coll, build), name=f"index-build-{coll.name}", daemon=True
        )
        thread.start()
        return build, True

    def _run_build(self, coll: _Collection, build: _Build) -> None:
        started = time.monotonic()
        covered = reclaimed = 0
        new_shard: qe.EdgeShard | None = None
        old_shard: qe.EdgeShard | None = None
        old_dir: Path | None = None
        try:
            with coll.write_lock:
                if build.cancelled:
                    return
                coll.shard.flush()
                # Writes wait for the copy (a flushed shard is consistent on disk); reads don't.
                _copy_shard(coll.path / coll.meta.shard, build.shard_dir)
                build.log = []
                covered, coll.unindexed = coll.unindexed, 0
                reclaimed, coll.deleted = coll.deleted, 0
            copied = time.monotonic()
            self._run_build_process(build)
            if build.cancelled:
                return
            built = time.monotonic()
            with coll.write_lock:
                if build.cancelled:
                    return
                new_shard = qe.EdgeShard.load(str(build.shard_dir))
                # No flush: like any write, the replayed ones are durable in the shard's WAL, and
                # flushing here would hold the GIL (0.2 s at 100k) while searches wait.
                for op in build.log:
                    new_shard.update(op)
                meta = replace(coll.meta, shard=build.shard_dir.name)
                # The pointer moves only once the new shard holds every write.
                _write_meta(coll.path, meta)
                with coll.gate.exclusive():
                    old_shard, coll.shard = coll.shard, new_shard
                    old_dir, coll.meta = coll.path / coll.meta.shard, meta
                new_shard = None
                build.swapped = True
                replayed = len(build.log)
                build.log = None
                coll.last_build_error = None
            log.info(
                "index of %s built: %d new points, copy %.1f s, build %.1f s, "
                "swap %.2f s with %d writes replayed",
                coll.name,
                covered,
                copied - started,
                built - copied,
                time.monotonic() - built,
                replayed,
            )
        except Exception as exc:
            build.error = str(exc)
            log.exception("index build of %s failed", coll.name)
            with coll.write_lock:
                coll.unindexed += covered
                coll.deleted += reclaimed
                coll.failed_at = time.monotonic()
                coll.last_build_error = build.error
        finally:
            try:
                _discard(new_shard, None if build.swapped else build.shard_dir)
                _discard(old_shard, old_dir)
            finally:
                with coll.write_lock:
                    build.log = None
                    coll.build = None
                build.done.set()
        if build.error is None and not build.cancelled:
            # Points that came during this build may already call for the next one.
            with contextlib.suppress(Exception):  # the next batch's call retries
                self._maybe_build(coll)

    def _run_build_process(self, build: _Build) -> None:
        env = dict(os.environ)
        # The child must import this very package, installed or not.
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        command = [
            sys.executable,
            "-m",
            "lookalike.vectors._edge_build",
            str(build.shard_dir),
            str(self._build_niceness),
            str(os.getpid()),
        ]
        with build.lock:
            if build.cancelled:
                return
            build.process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
            )
        # Waiting on the pipe releases the GIL: this thread costs the server nothing meanwhile.
        _, stderr = build.process.communicate()
        if build.process.returncode != 0 and not build.cancelled:
            tail = stderr.decode("utf-8", "replace").strip().splitlines()[-5:]
            raise StorageError(
                f"index build process exited with {build.process.returncode}: " + " | ".join(tail)
            )

    def _cancel_build(self, coll: _Collection) -> None:
        build = coll.build
        if build is None:
            return
        with build.lock:
            build.cancelled = True
            if build.process is not None and build.process.poll() is None:
                build.process.terminate()
        build.done.wait()


# --- per-collection state ------------------------------------------------------------------


@dataclass(frozen=True)
class _Meta:
    vectors: list[VectorSpec]
    settings: IndexSettings
    payload_indexes: dict[str, PayloadType]
    shard: str

    def to_json(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "vectors": [asdict(v) for v in self.vectors],
            "settings": asdict(self.settings),
            "payload_indexes": self.payload_indexes,
            "shard": self.shard,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any], path: Path) -> _Meta:
        if raw.get("format") != _FORMAT:
            raise StorageError(
                f"{path} has format {raw.get('format')!r}; this version reads format {_FORMAT}"
            )
        return cls(
            vectors=[VectorSpec(**v) for v in raw["vectors"]],
            settings=IndexSettings(**raw["settings"]),
            payload_indexes=dict(raw["payload_indexes"]),
            shard=str(raw["shard"]),
        )


@dataclass
class _Build:
    shard_dir: Path
    # Writes made after the copy was taken; None before the copy and after the swap.
    log: list[qe.UpdateOperation] | None = None
    process: subprocess.Popen[bytes] | None = None
    cancelled: bool = False
    swapped: bool = False
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Event = field(default_factory=threading.Event)


class _Collection:
    """One open collection. `write_lock` orders writes against a build's copy and swap;
    `gate` lets reads share the live shard and lets the swap wait for them."""

    def __init__(
        self, name: str, path: Path, meta: _Meta, shard: qe.EdgeShard, unindexed: int
    ) -> None:
        self.name = name
        self.path = path
        self.meta = meta
        self.specs = {v.name: v for v in meta.vectors}
        self.shard = shard
        self.unindexed = unindexed
        self.deleted = 0  # points deleted since the last build's copy (their storage remains)
        self.write_lock = threading.Lock()
        self.gate = _ReadGate()
        self.build: _Build | None = None
        self.failed_at = -math.inf
        self.last_build_error: str | None = None
        self.closing = False
        self.closed = False

    def live(self) -> qe.EdgeShard:
        """The live shard; call with `write_lock` held."""
        if self.closed:
            raise CollectionNotFound(f"collection {self.name!r} was closed or dropped")
        return self.shard

    @contextlib.contextmanager
    def reading(self) -> Iterator[qe.EdgeShard]:
        with self.gate.shared():
            if self.closed:
                raise CollectionNotFound(f"collection {self.name!r} was closed or dropped")
            try:
                yield self.shard
            except (InvalidInput, CollectionNotFound):
                raise
            except Exception as exc:
                raise StorageError(f"read of collection {self.name!r} failed: {exc}") from exc


class _ReadGate:
    """Many readers or one exclusive holder; a waiting exclusive holder blocks new readers."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._exclusive = False

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._exclusive = True
            while self._readers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


# --- files -----------------------------------------------------------------------------------


def _discard(shard: qe.EdgeShard | None, directory: Path | None) -> None:
    """Close a shard nobody uses any more and delete its directory; failures only log."""
    if shard is not None:
        try:
            shard.close()
        except Exception:
            log.exception("closing a retired shard failed")
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


def _write_meta(path: Path, meta: _Meta) -> None:
    tmp = path / f"{_META}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(meta.to_json(), f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path / _META)


def _copy_shard(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, copy_function=_copy_sparse)


def _copy_sparse(src: str, dst: str) -> None:
    """Copy only the data regions: the engine preallocates 32 MB write-ahead-log files that are
    mostly holes, and a plain copy would write every zero."""
    if not hasattr(os, "SEEK_DATA"):
        shutil.copy2(src, dst)
        return
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        size = os.fstat(fin.fileno()).st_size
        pos = 0
        try:
            while pos < size:
                start = os.lseek(fin.fileno(), pos, os.SEEK_DATA)
                end = os.lseek(fin.fileno(), start, os.SEEK_HOLE)
                _copy_range(fin.fileno(), fout.fileno(), start, end)
                pos = end
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no data after pos, only a trailing hole
                fout.seek(0)
                fout.truncate()
                fin.seek(0)
                shutil.copyfileobj(fin, fout, 1 << 20)
        fout.truncate(size)
    shutil.copystat(src, dst)


def _copy_range(fd_in: int, fd_out: int, start: int, end: int) -> None:
    while start < end:
        chunk = os.pread(fd_in, min(end - start, 1 << 20), start)
        if not chunk:
            return
        os.pwrite(fd_out, chunk, start)
        start += len(chunk)


def _shard_name(number: int) -> str:
    return f"shard-{number:06d}"


def _shard_number(name: str) -> int:
    match = _SHARD.match(name)
    if match is None:
        raise StorageError(f"unexpected shard directory name {name!r}")
    return int(match.group(1))


def _edge_config(meta: _Meta, full_scan_points: int) -> qe.EdgeConfig:
    settings = meta.settings
    widest = max(v.dim for v in meta.vectors)
    quantization = (
        qe.ScalarQuantizationConfig(qe.ScalarType.Int8, quantile=0.99, always_ram=True)
        if settings.quantization == "int8"
        else None
    )
    return qe.EdgeConfig(
        vectors={
            v.name: qe.EdgeVectorParams(
                size=v.dim,
                distance=_DISTANCES[v.distance],
                multivector_config=(
                    qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim) if v.multivector else None
                ),
            )
            for v in meta.vectors
        },
        hnsw_config=qe.HnswIndexConfig(
            m=settings.hnsw_m,
            ef_construct=settings.hnsw_ef_construct,
            full_scan_threshold=max(1, full_scan_points * widest * 4 // 1024),
        ),
        quantization_config=quantization,
        # We decide when to build (maybe_build_index); a build then indexes every segment.
        optimizers=qe.EdgeOptimizersConfig(indexing_threshold=1, default_segment_number=_SEGMENTS),
    )


# --- validation and conversion ---------------------------------------------------------------


def _edge_point(specs: Mapping[str, VectorSpec], point: Point) -> qe.Point:
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
        return qe.Point(uid, vectors, payload_in(point.payload))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"point {point.id}: payload is not JSON-like: {exc}") from None


def _point_out(record: Any, with_vectors: bool) -> Point:
    vectors: dict[str, NDArray[np.float32]] = {}
    if with_vectors and isinstance(record.vector, dict):
        vectors = {name: np.asarray(v, dtype=np.float32) for name, v in record.vector.items()}
    return Point(id=to_ulid(record.id), vectors=vectors, payload=dict(record.payload or {}))


def _edge_filter(query_filter: Filter) -> qe.Filter:
    return qe.Filter(
        must=[_edge_condition(c) for c in query_filter.must] or None,
        should=[_edge_condition(c) for c in query_filter.should] or None,
        must_not=[_edge_condition(c) for c in query_filter.must_not] or None,
    )


def _edge_condition(condition: Condition) -> Any:
    if isinstance(condition, Filter):
        return _edge_filter(condition)
    if isinstance(condition, MatchValue):
        value: Any = condition.value
        if isinstance(value, bool):
            # 0.9 reads a Python bool as the integer 0/1, which never matches a bool field;
            # numpy's bool reaches the engine as a bool.
            value = np.bool_(value)
        return qe.FieldCondition(condition.key, match=qe.MatchValue(value))
    if isinstance(condition, MatchAny):
        return _match_any(condition)
    if isinstance(condition, Range):
        return qe.FieldCondition(
            condition.key,
            range=qe.RangeFloat(
                gte=condition.gte, gt=condition.gt, lte=condition.lte, lt=condition.lt
            ),
        )
    if isinstance(condition, DatetimeRange):
        return qe.FieldCondition(condition.key, range=qe.RangeDateTime(**iso_bounds(condition)))
    if isinstance(condition, HasId):
        return qe.HasIdCondition({to_uuid(i) for i in condition.ids})
    if isinstance(condition, IsEmpty):
        return qe.IsEmptyCondition(condition.key)
    raise InvalidInput(f"unsupported filter condition: {condition!r}")


def _match_any(condition: MatchAny) -> Any:
    strings = [v for v in condition.values if isinstance(v, str)]
    numbers = [v for v in condition.values if not isinstance(v, str)]
    # The engine takes one value type per condition: a mixed list becomes an OR of two.
    parts: list[qe.ConditionType] = []
    if strings:
        parts.append(qe.FieldCondition(condition.key, match=qe.MatchAny(strings)))
    if numbers:
        parts.append(qe.FieldCondition(condition.key, match=qe.MatchAny(numbers)))
    if len(parts) == 1:
        return parts[0]
    if not parts:  # no values matches nothing, as an empty MatchAny does
        return qe.FieldCondition(condition.key, match=qe.MatchAny([]))
    return qe.Filter(should=parts)
