"""`Lookalike`: the one object that wires settings, catalog, blobs, models, vectors and ingest.

The API server, the CLI and the tests all open one of these on a data directory.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from lookalike.anomalies.queue import AnomalyScorer
from lookalike.catalog import Catalog, Collection
from lookalike.core.config import Settings
from lookalike.core.errors import ModelUnavailable
from lookalike.dedup.sweep import SWEEP_JOB, sweep_job
from lookalike.dedup.verdicts import IngestVerdicts
from lookalike.embedding import Embedder, load_embedder, resolve_default_embedder
from lookalike.embedding.batching import QueryBatcher
from lookalike.ingest.pipeline import IngestPipeline
from lookalike.jobs.runner import JobRunner
from lookalike.records.service import CollectionCache
from lookalike.storage.base import BlobStore
from lookalike.storage.local import LocalBlobStore
from lookalike.vectors.base import VectorIndex
from lookalike.vectors.qdrant_edge import QdrantEdgeIndex

log = logging.getLogger(__name__)


class Lookalike:
    """An open data directory. Only one process may hold it (the vector engine locks it)."""

    def __init__(self, settings: Settings | None = None, *, start: bool = True) -> None:
        self.settings = settings or Settings()
        self.settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The vector engine takes the data-dir lock: open it first so a second process fails
        # before touching anything else.
        self.vectors: VectorIndex = QdrantEdgeIndex(self.settings.vectors_dir)
        try:
            self.catalog = Catalog(self.settings.catalog_url)
            self.catalog.migrate()
            self.blobs: BlobStore = LocalBlobStore(self.settings.blobs_dir)
            self._default_embedder: Embedder | None = None
            self._embedder_lock = threading.Lock()
            self._batchers: dict[str, QueryBatcher] = {}
            self.collection_cache = CollectionCache()
            self.ingest = IngestPipeline(
                self.settings, self.catalog, self.blobs, self.vectors, self.embedder_for
            )
            # Background work besides embedding; each feature registers its kinds of jobs and
            # its after-ingest steps here.
            self.jobs = JobRunner(self.catalog)
            self.ingest.after_write.append(IngestVerdicts(self))
            self.jobs.register(SWEEP_JOB, sweep_job(self))
            # Anomaly scores: updated after each ingest batch, recomputed in full on a schedule.
            self.anomalies = AnomalyScorer(self.settings, self.catalog, self.vectors)
            self.anomalies.attach(self.ingest, self.jobs)
        except BaseException:
            self.vectors.close()
            raise
        if start:
            self.ingest.start()
            self.jobs.start()

    # --- models -------------------------------------------------------------

    def default_embedder(self) -> Embedder:
        """The model new collections get: the configured one, or the offline fallback."""
        with self._embedder_lock:
            if self._default_embedder is None:
                self._default_embedder = resolve_default_embedder(self.settings)
            return self._default_embedder

    @property
    def loaded_default_embedder(self) -> Embedder | None:
        """The default model if it is loaded already; never loads it (for health and metrics)."""
        return self._default_embedder

    def embedder_for(self, collection: Collection) -> Embedder:
        """The model a collection was built with; never a different one under the same name."""
        embedder = load_embedder(self.settings, collection.model)
        if embedder.model_id != collection.model_id:
            raise ModelUnavailable(
                f"collection {collection.name!r} was embedded with {collection.model_id} but "
                f"{embedder.model_id} is installed; restore that model or re-embed the collection"
            )
        return embedder

    def query_batcher(self, collection: Collection) -> QueryBatcher:
        """Embeds search queries for `collection`, batching concurrent ones into one call."""
        embedder = self.embedder_for(collection)
        with self._embedder_lock:
            batcher = self._batchers.get(embedder.model_id)
            if batcher is None or batcher.embedder is not embedder:
                batcher = self._batchers[embedder.model_id] = QueryBatcher(
                    embedder, max_batch=self.settings.embed_batch_size
                )
            return batcher

    # --- life cycle ----------------------------------------------------------

    def close(self) -> None:
        for batcher in self._batchers.values():
            batcher.close()
        self.jobs.stop()
        self.ingest.stop()
        self.vectors.close()
        self.catalog.close()

    def __enter__(self) -> Lookalike:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
