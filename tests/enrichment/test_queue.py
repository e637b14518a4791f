"""The stage queue on the real catalog: claims never overlap, leases expire, failures retry."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lookalike.catalog import Catalog, Collection, Image, ImageStage, Record, new_id
from lookalike.enrichment.queue import StageQueue


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    catalog.migrate()
    yield catalog
    catalog.close()


def add_images(catalog: Catalog, n: int, stages: tuple[str, ...] = ("a", "b")) -> list[str]:
    with catalog.session() as session:
        collection = Collection(
            tenant="t", name=new_id(), model="m", model_id="m@1", vector_name="v", dim=4
        )
        session.add(collection)
        session.flush()
        record = Record(collection_id=collection.id, name="r", owner="o")
        session.add(record)
        session.flush()
        ids = [new_id() for _ in range(n)]
        for i, image_id in enumerate(ids):
            session.add(
                Image(
                    id=image_id,
                    record_id=record.id,
                    collection_id=collection.id,
                    sha256=f"{i:064x}",
                    width=1,
                    height=1,
                    mime="image/png",
                    bytes=1,
                    source="test",
                    status="embedded",
                )
            )
        session.flush()
        for image_id in ids:
            StageQueue.enqueue(session.connection(), image_id, collection.id, stages)
    return ids


def test_claims_from_many_threads_never_overlap_and_cover_everything(catalog: Catalog) -> None:
    ids = add_images(catalog, 120)
    queues = [StageQueue(catalog) for _ in range(4)]
    got: list[tuple[str, str]] = []
    lock = threading.Lock()

    def work(queue: StageQueue) -> None:
        while claimed := queue.claim(["a", "b"], 7):
            for c in claimed:
                with lock:
                    got.extend((c.image_id, stage) for stage in c.stages)
                for stage in c.stages:
                    queue.finish(stage, done=[c.image_id])

    threads = [threading.Thread(target=work, args=(q,)) for q in queues]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == sorted((i, s) for i in ids for s in ("a", "b"))  # each exactly once
    assert queues[0].outstanding() == 0
    assert queues[0].counts() == {"a": {"done": 120}, "b": {"done": 120}}


def test_claim_takes_the_oldest_images_and_only_the_stages_asked_for(catalog: Catalog) -> None:
    ids = add_images(catalog, 5)
    queue = StageQueue(catalog)
    claimed = queue.claim(["b"], 2)
    assert [c.image_id for c in claimed] == ids[:2]
    assert all(c.stages == {"b"} for c in claimed)
    assert queue.of_image(ids[0]) == {"a": "pending", "b": "running"}


def test_a_dead_workers_claim_is_taken_over_when_its_lease_runs_out(catalog: Catalog) -> None:
    ids = add_images(catalog, 3, stages=("a",))
    dead = StageQueue(catalog, lease_s=0.3)
    assert len(dead.claim(["a"], 10)) == 3
    alive = StageQueue(catalog, lease_s=0.3)
    assert alive.claim(["a"], 10) == []  # leased
    time.sleep(0.4)
    taken = alive.claim(["a"], 10)
    assert [c.image_id for c in taken] == ids
    assert all(c.attempts == 2 for c in taken)
    # The dead worker coming back cannot overwrite what is now someone else's.
    dead.finish("a", failed={ids[0]: "late"})
    alive.finish("a", done=ids)
    assert {alive.of_image(i)["a"] for i in ids} == {"done"}


def test_a_failure_is_retried_then_final_with_its_reason(catalog: Catalog) -> None:
    [image_id] = add_images(catalog, 1, stages=("a",))
    queue = StageQueue(catalog, max_attempts=2)
    for _ in range(2):
        [claimed] = queue.claim(["a"], 10)
        queue.finish("a", failed={claimed.image_id: "broken"})
    assert queue.claim(["a"], 10) == []
    with catalog.session() as session:
        row = session.get(ImageStage, (image_id, "a"))
        assert row is not None
        assert (row.status, row.attempts, row.error) == ("failed", 2, "broken")
    assert queue.unfinished(row.collection_id, "a") == 1


def test_release_hands_unfinished_claims_back(catalog: Catalog) -> None:
    add_images(catalog, 2, stages=("a",))
    queue = StageQueue(catalog)
    queue.claim(["a"], 10)
    queue.release()
    again = StageQueue(catalog).claim(["a"], 10)
    assert len(again) == 2
    assert all(c.attempts == 1 for c in again)  # a clean stop does not count as a try


def test_deleting_an_image_deletes_its_stages(catalog: Catalog) -> None:
    ids = add_images(catalog, 2)
    with catalog.session() as session:
        image = session.get(Image, ids[0])
        session.delete(image)
    assert StageQueue(catalog).of_image(ids[0]) == {}
    assert StageQueue(catalog).outstanding() == 2


def test_claims_of_a_dead_process_on_this_host_are_taken_over_at_once(catalog: Catalog) -> None:
    add_images(catalog, 2, stages=("a",))
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    queue = StageQueue(catalog)
    queue.worker = f"{queue.worker.split(':')[0]}:{gone.stdout.strip()}:dead"
    queue.claim(["a"], 10)
    live = StageQueue(catalog)
    live.claim(["a"], 10)  # nothing: the first claim holds everything
    assert live.reclaim_from_dead_processes() == 2
    assert len(live.claim(["a"], 10)) == 2
    # A live process's claims stay where they are.
    assert live.reclaim_from_dead_processes() == 0
