"""`EnrichmentRunner`: claims batches of images with pending stages and runs the stages.

Each stage declares what it needs of an image: its pixels (the stored original, decoded once per
batch at the largest size any claimed stage asks for), its vectors (read back from the vector
engine), or neither. A stage's failure on one image is that image's and that stage's alone: the
other stages and images of the batch go on, and the failed row is retried up to
`enrichment_max_attempts` times. The runner is niced and stands back while the ingest pipeline is
busy (up to `enrichment_defer_s`), so searchable-first ingest keeps the cores; it needs only the
catalog, the blobs, the vectors and the models, so it can run in any process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select

from lookalike.catalog import Catalog, Collection, Image
from lookalike.core.config import Settings
from lookalike.core.errors import StoreUnavailable
from lookalike.core.timing import timed
from lookalike.enrichment.queue import Claimed, StageQueue
from lookalike.imaging import DecodedImage, decode_stored
from lookalike.storage.base import BlobStore
from lookalike.vectors.base import VectorIndex

log = logging.getLogger(__name__)

# While a store (vector server, S3) is down, the runner waits this long between tries.
_OUTAGE_PAUSE_S = 5.0

ENRICH_NICENESS = 15


@dataclass
class StageItem:
    """One claimed image as a stage sees it."""

    image: Image
    pixels: DecodedImage | None = None
    vector: NDArray[np.float32] | None = None


@dataclass
class StageBatch:
    """The claimed images of one collection that are due for one stage."""

    collection: Collection
    items: list[StageItem] = field(default_factory=list)
    skipped: set[str] = field(default_factory=set)

    @property
    def image_ids(self) -> list[str]:
        return [item.image.id for item in self.items]

    def skip(self, image_id: str) -> None:
        """Nothing to do for this image here (the stage cannot run in this installation, say):
        its state says `skipped`, not `done`."""
        self.skipped.add(image_id)


class Stage(Protocol):
    """One kind of enrichment. `run` returns an error message per image it could not do (the
    others are done); raising fails the whole batch for this stage."""

    name: str

    def pixels_for(self, collection: Collection) -> int | None:
        """The shorter side the stage needs the image decoded at, or None for no pixels."""

    def needs_vector(self, collection: Collection) -> bool: ...

    def run(self, batch: StageBatch) -> Mapping[str, str]: ...


class EnrichmentRunner:
    """Runs registered stages in registration order. `start()`, `stop()`, `wait_idle()`."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        blobs: BlobStore,
        vectors: VectorIndex,
        *,
        busy: Callable[[], bool] = lambda: False,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.blobs = blobs
        self.vectors = vectors
        self.queue = StageQueue(
            catalog,
            lease_s=settings.enrichment_lease_s,
            max_attempts=settings.enrichment_max_attempts,
        )
        self.busy = busy
        self.stages: list[Stage] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._working = False

    def register(self, stage: Stage) -> None:
        self.stages.append(stage)

    @property
    def stage_names(self) -> list[str]:
        return [s.name for s in self.stages]

    # --- life cycle -----------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None or not self.stages:
            return
        self._stop.clear()
        reclaimed = self.queue.reclaim_from_dead_processes()
        if reclaimed:
            log.info("took over %d enrichment stages of a process that is gone", reclaimed)
        self._thread = threading.Thread(target=self._loop, name="enrich", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Finish the batch in hand, hand back the rest of the claim, stop."""
        if self._thread is None:
            return
        self._stop.set()
        self._wake.set()
        self._thread.join()
        self._thread = None
        self.queue.release()

    def wake(self) -> None:
        """New work was queued (the ingest pipeline calls this after a write)."""
        self._wake.set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no stage row is pending or running; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.queue.outstanding():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self.wake()
            time.sleep(0.05)
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None

    def drain(self) -> int:
        """Run every claimable stage now, in the calling thread; the images it held."""
        total = 0
        while count := self.run_once():
            total += count
        return total

    # --- the loop -----------------------------------------------------------------

    def _loop(self) -> None:
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), ENRICH_NICENESS)
        deferred_since: float | None = None
        while not self._stop.is_set():
            if self.busy():
                # Searchable first: the ingest pipeline has the cores, unless it has had them
                # for so long that enrichment would never run.
                deferred_since = deferred_since or time.monotonic()
                if time.monotonic() - deferred_since < self.settings.enrichment_defer_s:
                    self._wake.wait(0.05)
                    self._wake.clear()
                    continue
            deferred_since = None
            try:
                worked = self.run_once()
            except Exception:  # the catalog is unreachable, say: try again in a moment
                log.exception("claiming enrichment work failed; retrying in a moment")
                worked = False
                self._stop.wait(1.0)
            if not worked:
                self._wake.wait(self.settings.enrichment_poll_s)
                self._wake.clear()

    def run_now(
        self, image_ids: Sequence[str], stages: Sequence[str], *, timeout: float = 30.0
    ) -> bool:
        """Run `stages` of these images now, in the calling thread, for a caller that waits for
        them (the duplicate verdict of an upload answered with `wait`). What another worker
        holds already is waited for. False when that did not finish within `timeout`."""
        wanted = [name for name in self.stage_names if name in stages]
        if not image_ids or not wanted:
            return True
        deadline = time.monotonic() + timeout
        while True:
            self._run_claimed(self.queue.claim(wanted, len(image_ids), image_ids=image_ids))
            if not self.queue.waiting(image_ids, wanted):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def run_once(self, limit: int | None = None) -> int:
        """Claim and run one batch; the number of images it held (0: nothing to do)."""
        return self._run_claimed(
            self.queue.claim(self.stage_names, limit or self.settings.enrichment_batch)
        )

    def _run_claimed(self, claimed: Sequence[Claimed]) -> int:
        if not claimed:
            return 0
        by_collection: dict[str, list[Claimed]] = {}
        for c in claimed:
            by_collection.setdefault(c.collection_id, []).append(c)
        for collection_id, group in by_collection.items():
            try:
                self._run_collection(collection_id, group)
            except StoreUnavailable as exc:
                # An outage is nobody's fault: the images wait, their attempts untouched.
                log.warning("enrichment waits for a store that is down: %s", exc)
                self.queue.postpone(c.image_id for c in group)
                self._stop.wait(_OUTAGE_PAUSE_S)
            except Exception as exc:
                if self._gone(collection_id):
                    continue  # deleted while its batch ran: its stage rows went with it
                # Not this batch's images' fault, as far as anyone can tell: each of its stages
                # counts one attempt and goes back to the queue (or fails, after the last).
                log.exception("enrichment of %d images failed", len(group))
                reason = f"{type(exc).__name__}: {exc}"
                for stage in {name for c in group for name in c.stages}:
                    due = {c.image_id: reason for c in group if stage in c.stages}
                    self.queue.finish(stage, failed=due)
        return len(claimed)

    def _gone(self, collection_id: str) -> bool:
        with self.catalog.session() as session:
            return session.get(Collection, collection_id) is None

    def _run_collection(self, collection_id: str, claimed: Sequence[Claimed]) -> None:
        with self.catalog.session() as session:
            collection = session.get(Collection, collection_id)
            images = {
                i.id: i
                for i in session.scalars(
                    select(Image).where(Image.id.in_([c.image_id for c in claimed]))
                )
            }
            session.expunge_all()
        if collection is None:
            return  # deleted meanwhile: its rows went with it
        stages = [s for s in self.stages if any(s.name in c.stages for c in claimed)]
        items = {
            image_id: StageItem(image)
            for image_id, image in images.items()
            if image.status == "embedded"
        }
        pixel_errors: dict[str, str] = {}
        vector_errors: dict[str, str] = {}
        self._load_pixels(collection, claimed, stages, items, pixel_errors)
        self._load_vectors(collection, claimed, stages, items, vector_errors)
        for stage in stages:
            due = [c.image_id for c in claimed if stage.name in c.stages]
            # An image that is gone or failed to embed has nothing to enrich.
            skipped = [i for i in due if i not in items]
            errors = {
                **(pixel_errors if stage.pixels_for(collection) else {}),
                **(vector_errors if stage.needs_vector(collection) else {}),
            }
            failed = {i: errors[i] for i in due if i in errors}
            ready = [i for i in due if i in items and i not in failed]
            batch = StageBatch(collection, [items[i] for i in ready])
            if ready:
                try:
                    with timed("enrich", stage.name):
                        failed.update(stage.run(batch))
                except StoreUnavailable:
                    raise
                except Exception as exc:
                    if self._gone(collection.id):
                        return
                    log.exception("enrichment stage %s failed on %d images", stage.name, len(ready))
                    failed.update({i: f"{type(exc).__name__}: {exc}" for i in ready})
            self.queue.finish(
                stage.name,
                done=[i for i in ready if i not in failed and i not in batch.skipped],
                failed=failed,
                skipped=[*skipped, *(i for i in ready if i in batch.skipped)],
            )

    def _load_pixels(
        self,
        collection: Collection,
        claimed: Sequence[Claimed],
        stages: Sequence[Stage],
        items: dict[str, StageItem],
        errors: dict[str, str],
    ) -> None:
        sizes = {s.name: s.pixels_for(collection) for s in stages}
        for c in claimed:
            item = items.get(c.image_id)
            wanted = [size for name, size in sizes.items() if name in c.stages and size]
            if item is None or not wanted:
                continue
            image = item.image
            try:
                with timed("enrich", "decode"):
                    data = self.blobs.get(image.blob_key or "")
                    item.pixels = decode_stored(data, self.settings, reduce_for=max(wanted))
            except StoreUnavailable:
                raise
            except Exception as exc:
                errors[c.image_id] = f"cannot read the stored original: {exc}"

    def _load_vectors(
        self,
        collection: Collection,
        claimed: Sequence[Claimed],
        stages: Sequence[Stage],
        items: dict[str, StageItem],
        errors: dict[str, str],
    ) -> None:
        wanting = {s.name for s in stages if s.needs_vector(collection)}
        ids = [c.image_id for c in claimed if c.stages & wanting and c.image_id in items]
        if not ids:
            return
        with timed("enrich", "read_vectors"):
            points = self.vectors.retrieve(collection.id, ids, with_vectors=True)
        for point in points:
            vector = (point.vectors or {}).get(collection.vector_name)
            if vector is not None:
                items[point.id].vector = np.asarray(vector, dtype=np.float32)
        for image_id in ids:
            if items[image_id].vector is None:
                errors[image_id] = "the image's vector is not in the vector engine"
