"""Qdrant Edge only: what an embedded engine must do for itself that a server does on its own."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import numpy as np

from lookalike.core.errors import CollectionNotFound
from lookalike.ingest.payload import PAYLOAD_INDEXES
from lookalike.vectors.base import IndexSettings, Point, VectorSpec
from lookalike.vectors.qdrant_edge import QdrantEdgeIndex

from .test_contract import ulids, unit, wait_until

DIM = 64  # wide enough that vectors, not headers, decide the shard size


def _size(path: Path) -> int:
    """Bytes on disk (the engine preallocates sparse files: their length says little). A build
    may be writing and removing files meanwhile: what is gone before it is read counts 0 (and
    `os.walk` skips directories that vanish)."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(folder, name)).st_blocks * 512
    return total


def test_a_collection_that_churns_stays_the_size_of_what_it_holds(tmp_path: Path) -> None:
    """Deleted points keep their storage until a rebuild: enough deletes start one."""
    with QdrantEdgeIndex(tmp_path / "vectors") as index:
        index.create_collection(
            "c", [VectorSpec("img", DIM)], IndexSettings(indexing_threshold=10**9), PAYLOAD_INDEXES
        )
        keep = ulids(100)
        index.upsert("c", [Point(i, {"img": v}) for i, v in zip(keep, unit(100, DIM), strict=True)])
        grown = 0
        for round_ in range(16):
            batch = ulids(500, start=10_000 * (round_ + 1))
            vectors = unit(500, DIM, seed=round_ + 1)
            index.upsert("c", [Point(i, {"img": v}) for i, v in zip(batch, vectors, strict=True)])
            grown = max(grown, _size(tmp_path / "vectors" / "c"))
            index.delete("c", batch)
        wait_until(lambda: not index.status("c").building)
        assert index.status("c").points == 100
        # The rebuild dropped the deleted points' storage (8000 went through, 100 stay).
        assert _size(tmp_path / "vectors" / "c") < grown / 2
        assert index.status("c").indexed_vectors == 100
        probe = unit(100, DIM)[7]
        assert index.search("c", "img", np.asarray(probe), limit=1)[0].id == keep[7]


def test_a_collection_read_while_it_is_dropped_is_not_opened_again(tmp_path: Path) -> None:
    """Readers and writers racing a drop get "not found", never a collection opened again from
    files that are about to go (its close would then fail on the missing files)."""
    index = QdrantEdgeIndex(tmp_path)
    failures: list[BaseException] = []
    for round_ in range(20):
        name = ulids(1, start=round_)[0]
        index.create_collection(name, [VectorSpec("v", DIM)], IndexSettings(), PAYLOAD_INDEXES)
        ids = ulids(20, start=1000)
        index.upsert(name, [Point(i, {"v": v}) for i, v in zip(ids, unit(20, DIM), strict=True)])
        stop = threading.Event()

        def hammer(name: str = name, ids: list[str] = ids, stop: threading.Event = stop) -> None:
            while not stop.is_set():
                try:
                    index.set_payload(name, ids[:3], {"nsfw": 0.5})
                    index.retrieve(name, ids[:3])
                except CollectionNotFound:
                    pass
                except BaseException as exc:  # anything else is the bug
                    failures.append(exc)
                    return

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for t in threads:
            t.start()
        index.drop_collection(name)
        stop.set()
        for t in threads:
            t.join()
        assert not index.has_collection(name)
    index.close()  # flushes whatever is open: nothing half-deleted
    assert not failures, failures
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == []
