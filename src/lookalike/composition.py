"""`Lookalike`: the one object that wires settings, catalog, blobs, models, vectors and ingest.

The API server, the CLI and the tests all open one of these on a data directory.
"""

from __future__ import annotations

import logging
import os
from types import TracebackType
from typing import IO

from lookalike.anomalies.queue import AnomalyScorer
from lookalike.catalog import Catalog
from lookalike.core.config import Settings
from lookalike.core.datadir import lock_directory
from lookalike.dedup.evidence import PhotoEvidence
from lookalike.dedup.sweep import SWEEP_JOB, sweep_job
from lookalike.dedup.verdicts import DuplicateStage
from lookalike.embedding import Models
from lookalike.enrichment.runner import EnrichmentRunner
from lookalike.ingest.pipeline import IngestPipeline
from lookalike.ingest.prepare import processes_for
from lookalike.ingest.reembed import Reembedder
from lookalike.jobs.runner import JobRunner
from lookalike.quality.nsfw import shared_detector
from lookalike.quality.stages import NsfwStage, QualityStage
from lookalike.rag.chat import ChatModel, open_chat_model
from lookalike.rag.ocr import OcrStage
from lookalike.records.service import CollectionCache
from lookalike.records.thumbnails import ThumbnailStage
from lookalike.search.cache import with_search_cache
from lookalike.storage import BlobStore, open_blob_store
from lookalike.vectors import open_vector_index
from lookalike.vectors.base import VectorIndex

log = logging.getLogger(__name__)


class Lookalike:
    """An open data directory. Only one process may hold it (the vector engine locks it)."""

    def __init__(self, settings: Settings | None = None, *, start: bool = True) -> None:
        self.settings = settings or Settings()
        self.settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # One process per data directory while anything in it is single-writer (the embedded
        # vector engine, whose own lock this is, or a SQLite catalog): take the lock first so a
        # second process fails before touching anything else.
        self._lock: IO[str] | None = None
        if self.settings.vectors != "edge" and self.settings.catalog_url.startswith("sqlite"):
            self._lock = lock_directory(self.settings.data_dir, "the data directory")
        try:
            self.vectors: VectorIndex = open_vector_index(self.settings)
        except BaseException:
            self._release_lock()
            raise
        try:
            # With LOOKALIKE_CACHE_URL, every write to the vectors retires the cached searches.
            self.vectors = with_search_cache(self.vectors, self.settings)
            self.catalog = Catalog(self.settings.catalog_url)
            self.catalog.migrate()
            self.blobs: BlobStore = open_blob_store(self.settings)
            self.models = Models(_share_cores(self.settings))
            self.collection_cache = CollectionCache()
            # What happens to an image after it is searchable, stage by stage, in this order.
            self.enrichment = EnrichmentRunner(
                self.settings,
                self.catalog,
                self.blobs,
                self.vectors,
                busy=lambda: self.ingest.in_flight > 0,
            )
            self.ingest = IngestPipeline(
                self.settings,
                self.catalog,
                self.blobs,
                self.vectors,
                # With a fallback chain, the first of its models that answers.
                self.models.for_ingest,
                self.enrichment,
            )
            # Images a fallback model embedded go to their collection's own model when it is back.
            self.reembed = Reembedder(
                self.settings, self.catalog, self.blobs, self.vectors, self.models, self.enrichment
            )
            # Background work besides ingest; each feature registers its stages and its kinds
            # of jobs here.
            self.jobs = JobRunner(self.catalog)
            self.enrichment.register(ThumbnailStage(self.settings, self.catalog, self.blobs))
            self.enrichment.register(QualityStage(self.catalog, self.vectors))
            if self.settings.nsfw:
                detector = shared_detector(self.settings.nsfw_threads)
                self.enrichment.register(
                    NsfwStage(
                        self.catalog,
                        self.vectors,
                        self.models,
                        detector,
                        cache_dir=self.settings.models_dir / ".prompts",
                    )
                )
            self.evidence = PhotoEvidence(self.settings, self.catalog, self.blobs)
            self.enrichment.register(DuplicateStage(self.catalog, self.vectors, self.evidence))
            self.jobs.register(SWEEP_JOB, sweep_job(self))
            # Anomaly scores: a stage for new images, recomputed in full on a schedule.
            self.anomalies = AnomalyScorer(self.settings, self.catalog, self.vectors)
            self.anomalies.attach(self.enrichment, self.jobs)
            # Last: the slowest stage, and the only one that reads originals at full size.
            self.enrichment.register(OcrStage(self.settings, self.catalog, self.blobs))
            # The model that answers questions (None: `ask` returns the retrieval alone).
            self.chat: ChatModel | None = open_chat_model(self.settings)
        except BaseException:
            self.vectors.close()
            self._release_lock()
            raise
        if start:
            self.ingest.start()
            self.reembed.start()
            self.jobs.start()
            if self.settings.enrichment:
                self.enrichment.start()

    # --- life cycle ----------------------------------------------------------

    def close(self) -> None:
        self.jobs.stop()
        self.reembed.stop()
        self.ingest.stop()
        self.enrichment.stop()
        self.models.close()
        if self.chat is not None:
            self.chat.close()
        self.vectors.close()
        self.catalog.close()
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the descriptor releases the flock
            self._lock = None

    def __enter__(self) -> Lookalike:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _share_cores(settings: Settings) -> Settings:
    """With ingest worker processes, the model's threads take the remaining cores rather than
    all of them (ONNX Runtime's default), so the two do not fight over the same ones."""
    processes = processes_for(settings.ingest_processes)
    if not processes or settings.embed_threads:
        return settings
    cores = os.cpu_count() or 1
    return settings.model_copy(update={"embed_threads": max(1, cores - processes)})
