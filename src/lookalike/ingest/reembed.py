"""The re-embed queue of fallback chains (`embedding.fallback`).

An image that a fallback model embedded (its collection's own model was down) gets a
`reembed_task` row in the same transaction that marks it embedded, so the queue survives a
restart. `Reembedder` offers the due tasks to the collection's own model every
`reembed_poll_s`: while the model stays down each task backs off (exponential, jittered, at most
`reembed_backoff_max_s`); once it answers, the image is embedded from its stored original into
that model's named vector, its point loses the fallback's vector (a point holds one model's
vector, `image.model_id` says which), its enrichment stages are queued afresh, and the task goes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import Connection, delete, func, insert, select, update

from lookalike.catalog import Catalog, Collection, Image, ImageStage, utcnow
from lookalike.catalog.models import ReembedTask
from lookalike.core.backoff import jittered_backoff
from lookalike.core.config import Settings
from lookalike.core.errors import ModelUnavailable
from lookalike.embedding.base import Embedder
from lookalike.embedding.fallback import ChainCollection, has_chain
from lookalike.embedding.models import Models
from lookalike.enrichment.queue import StageQueue
from lookalike.enrichment.runner import EnrichmentRunner
from lookalike.ingest.prepare import DecodeLimits, prepare_pixels
from lookalike.storage.base import BlobStore
from lookalike.vectors.base import Point, VectorIndex

log = logging.getLogger(__name__)


def reembed_target(collection: ChainCollection, embedder: Embedder) -> str | None:
    """The model an image embedded by `embedder` waits for: the collection's own, when
    `embedder` is one of its fallbacks; else None."""
    if embedder.model_id == collection.model_id or not has_chain(collection):
        return None
    return collection.model_id


def enqueue_reembed(
    conn: Connection, image_id: str, collection_id: str, from_model_id: str, to_model_id: str
) -> None:
    """Queue one image, in the caller's transaction (replacing a task it had already)."""
    conn.execute(delete(ReembedTask).where(ReembedTask.image_id == image_id))
    now = utcnow()
    conn.execute(
        insert(ReembedTask).values(
            image_id=image_id,
            collection_id=collection_id,
            from_model_id=from_model_id,
            to_model_id=to_model_id,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )


@dataclass(frozen=True)
class ReembedStep:
    """What one `Reembedder.run_once` did."""

    moved: int = 0
    deferred: int = 0
    dropped: int = 0


class Reembedder:
    """Moves images embedded by fallback models to their collection's own model. `start()`
    runs `run_once` on a thread every `reembed_poll_s`; `stop()` ends it."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        blobs: BlobStore,
        vectors: VectorIndex,
        models: Models,
        enrichment: EnrichmentRunner | None = None,
    ) -> None:
        self.settings = settings
        # The stages that read an image's vector ran while it was in the fallback's: they run
        # again once it has moved, as after any re-embed.
        self.enrichment = enrichment
        self.catalog = catalog
        self.blobs = blobs
        self.vectors = vectors
        self.models = models
        self._limits = DecodeLimits(
            settings.max_image_bytes, settings.max_image_pixels, settings.max_aspect_ratio
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="reembed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    def pending(self, collection_id: str | None = None) -> int:
        """Images still waiting for their collection's own model."""
        query = select(func.count()).select_from(ReembedTask)
        if collection_id is not None:
            query = query.where(ReembedTask.collection_id == collection_id)
        with self.catalog.session() as session:
            return int(session.scalar(query) or 0)

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.reembed_poll_s):
            try:
                self.run_once()
            except Exception:
                log.exception("the re-embed step failed; retrying later")

    def run_once(self) -> ReembedStep:
        """Offer the due tasks (at most `reembed_batch`) to their collections' own models."""
        now = utcnow()
        with self.catalog.session() as session:
            due = session.execute(
                select(ReembedTask.image_id, ReembedTask.collection_id, ReembedTask.attempts)
                .where(ReembedTask.next_attempt_at <= now)
                .order_by(ReembedTask.next_attempt_at, ReembedTask.image_id)
                .limit(self.settings.reembed_batch)
            ).all()
        by_collection: dict[str, list[tuple[str, int]]] = {}
        for image_id, collection_id, attempts in due:
            by_collection.setdefault(collection_id, []).append((image_id, attempts))
        total = ReembedStep()
        for collection_id, tasks in by_collection.items():
            step = self._run_collection(collection_id, tasks)
            total = ReembedStep(
                total.moved + step.moved,
                total.deferred + step.deferred,
                total.dropped + step.dropped,
            )
        return total

    def _run_collection(self, collection_id: str, tasks: list[tuple[str, int]]) -> ReembedStep:
        with self.catalog.session() as session:
            collection = session.get(Collection, collection_id)
            if collection is None:
                return ReembedStep()
            session.expunge(collection)
            rows = {
                row.id: row.blob_key
                for row in session.execute(
                    select(Image.id, Image.blob_key).where(Image.id.in_([t[0] for t in tasks]))
                )
            }
        try:
            embedder = self.models.for_collection(collection)
        except ModelUnavailable as exc:
            self._defer(tasks, exc)
            return ReembedStep(deferred=len(tasks))
        ids: list[str] = []
        tensors = []
        dropped: list[str] = []
        for image_id, _ in tasks:
            try:
                blob_key = rows.get(image_id)
                if blob_key is None:
                    raise LookupError("its original is not stored")
                data = self.blobs.get(blob_key)
                limits = DecodeLimits(
                    max(self._limits.max_bytes, len(data)),
                    self._limits.max_pixels,
                    self._limits.max_aspect_ratio,
                )
                decoded = prepare_pixels(
                    data, limits, embedder.input_size, embedder.preprocess_config, embedder.name
                )
            except Exception as exc:
                # It stays searchable by the fallback's vector; nothing better can be done.
                log.warning("image %s cannot be re-embedded: %s", image_id, exc)
                dropped.append(image_id)
                continue
            ids.append(image_id)
            tensors.append(decoded.tensor)
        if dropped:
            self._delete(dropped)
        if not ids:
            return ReembedStep(dropped=len(dropped))
        step = self.settings.embed_batch_size
        stacked = np.stack(tensors)
        try:
            vectors = np.concatenate(
                [
                    embedder.embed_preprocessed(stacked[start : start + step])
                    for start in range(0, len(stacked), step)
                ]
            )
        except ModelUnavailable as exc:
            waiting = [t for t in tasks if t[0] in set(ids)]
            self._defer(waiting, exc)
            return ReembedStep(deferred=len(waiting), dropped=len(dropped))
        by_id = dict(zip(ids, vectors, strict=True))
        points = self.vectors.retrieve(collection_id, ids)  # deleted images are skipped
        # The point is replaced whole: the model's vector only, so no named vector holds an
        # image twice and `image.model_id` stays the one truth of where it is.
        self.vectors.upsert(
            collection_id,
            [
                Point(
                    id=p.id,
                    vectors={embedder.vector_name: by_id[p.id]},
                    payload={**p.payload, "model": embedder.model_id},
                )
                for p in points
            ],
        )
        moved = [p.id for p in points]
        stages = self.enrichment.stage_names if self.enrichment is not None else []
        with self.catalog.engine.begin() as conn:
            conn.execute(
                update(Image).where(Image.id.in_(moved)).values(model_id=embedder.model_id)
            )
            conn.execute(delete(ReembedTask).where(ReembedTask.image_id.in_(ids)))
            if stages:
                conn.execute(delete(ImageStage).where(ImageStage.image_id.in_(moved)))
                for image_id in moved:
                    StageQueue.enqueue(conn, image_id, collection_id, stages)
        if self.enrichment is not None and stages:
            self.enrichment.wake()
        log.info("re-embedded %d images of %s with %s", len(moved), collection.name, embedder.name)
        return ReembedStep(moved=len(moved), dropped=len(dropped))

    def _defer(self, tasks: Sequence[tuple[str, int]], exc: Exception) -> None:
        now = utcnow()
        with self.catalog.engine.begin() as conn:
            for image_id, attempts in tasks:
                conn.execute(
                    update(ReembedTask)
                    .where(ReembedTask.image_id == image_id)
                    .values(
                        attempts=attempts + 1,
                        next_attempt_at=self._next_attempt(now, attempts + 1),
                        error=str(exc)[:2000],
                    )
                )

    def _next_attempt(self, now: datetime, attempts: int) -> datetime:
        """Exponential from `reembed_poll_s`, capped, half of it random."""
        wait = jittered_backoff(
            attempts, self.settings.reembed_poll_s, self.settings.reembed_backoff_max_s
        )
        return now + timedelta(seconds=wait)

    def _delete(self, image_ids: Sequence[str]) -> None:
        with self.catalog.engine.begin() as conn:
            conn.execute(delete(ReembedTask).where(ReembedTask.image_id.in_(list(image_ids))))
