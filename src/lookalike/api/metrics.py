"""Prometheus metrics of one app: HTTP requests, stage timings, ingest, models, vectors and the
search cache.

Each app has its own registry (not prometheus-client's global one), so several apps can live in
one process (tests) without their series colliding.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import select

from lookalike.catalog import Collection
from lookalike.composition import Lookalike
from lookalike.search.cache import search_cache_of

log = logging.getLogger(__name__)

_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The totals read at most this many collections' index status: a scrape must stay cheap.
MAX_COLLECTION_STATUS = 1000


class Metrics:
    """The app's registry and the series the middleware and the stage timers feed."""

    def __init__(self, runtime: Callable[[], Lookalike | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("method", "route", "status")
        self.requests = Counter(
            "lookalike_http_requests",
            "HTTP requests by route template and status class.",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "lookalike_http_request_duration_seconds",
            "Time from the request's arrival to the end of its response.",
            labels,
            buckets=_HTTP_BUCKETS,
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "lookalike_http_requests_in_progress",
            "Requests being handled now.",
            registry=self.registry,
        )
        self.stages = Histogram(
            "lookalike_stage_duration_seconds",
            "Time spent in one stage of a search or an ingest (decode, embed, vector search, ...).",
            ("operation", "stage"),
            buckets=_STAGE_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_RuntimeCollector(runtime))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = (method if method in _METHODS else "other", route, f"{status // 100}xx")
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def observe_stage(
        self, operation: str, stage: str, seconds: float, cpu_seconds: float | None = None
    ) -> None:
        self.stages.labels(operation, stage).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _RuntimeCollector(Collector):
    """Gauges read from the runtime at scrape time."""

    def __init__(self, runtime: Callable[[], Lookalike | None]) -> None:
        self._runtime = runtime

    def describe(self) -> Iterator[Metric]:
        # Nothing up front: the families depend on what the runtime holds at scrape time.
        return iter(())

    def collect(self) -> Iterator[Metric]:
        rt = self._runtime()
        if rt is None:
            return
        queue = GaugeMetricFamily(
            "lookalike_ingest_queue_depth", "Prepared images waiting for the embed thread."
        )
        queue.add_metric([], rt.ingest.queue_depth)
        yield queue
        in_flight = GaugeMetricFamily(
            "lookalike_ingest_in_flight", "Images accepted and not yet embedded or rejected."
        )
        in_flight.add_metric([], rt.ingest.in_flight)
        yield in_flight

        model = GaugeMetricFamily(
            "lookalike_model_loaded",
            "1 once the default model is loaded; `model` is the configured one, `model_id` the "
            "weights in use (another model's when it fell back to the offline one).",
            labels=("model", "model_id"),
        )
        embedder = rt.models.loaded_default
        model.add_metric(
            [rt.settings.model, embedder.model_id if embedder else ""], 1 if embedder else 0
        )
        yield model
        yield from self._vector_status(rt)
        yield from self._search_cache(rt)

    @staticmethod
    def _search_cache(rt: Lookalike) -> Iterator[Metric]:
        """The search cache's counts, kept by the cache itself (searches run outside any app);
        no series at all when no cache is configured."""
        cache = search_cache_of(rt.vectors)
        if cache is None:
            return
        stats = cache.stats()
        requests = CounterMetricFamily(
            "lookalike_search_cache_requests",
            "Searches that asked the search cache: hit, miss, or error (Redis failed or is "
            "being left alone after a failure; the search ran uncached).",
            labels=("result",),
        )
        for result, count in stats.requests.items():
            requests.add_metric([result], count)
        yield requests
        invalidations = CounterMetricFamily(
            "lookalike_search_cache_invalidations",
            "Collection versions bumped after writes to their vectors (each retires the "
            "collection's cached searches).",
        )
        invalidations.add_metric([], stats.invalidations)
        yield invalidations
        pending = GaugeMetricFamily(
            "lookalike_search_cache_pending_invalidations",
            "Collections whose version bump failed and waits for Redis; their cached searches "
            "are not read meanwhile.",
        )
        pending.add_metric([], stats.pending_invalidations)
        yield pending

    @staticmethod
    def _vector_status(rt: Lookalike) -> Iterator[Metric]:
        """Totals over every collection. /metrics is unauthenticated and shared by all tenants,
        so no series names a collection (its id, name or size is a tenant's business); a
        tenant reads its own collections' figures from the API."""
        collections = GaugeMetricFamily("lookalike_collections", "Collections, all tenants.")
        points = GaugeMetricFamily(
            "lookalike_vector_points", "Points in all vector indexes together."
        )
        indexed = GaugeMetricFamily(
            "lookalike_vector_indexed_vectors",
            "Vectors in HNSW indexes (the rest are searched by exact scan), all collections.",
        )
        building = GaugeMetricFamily(
            "lookalike_vector_index_builds_running", "Collections whose index build runs now."
        )
        failed = GaugeMetricFamily(
            "lookalike_vector_index_builds_failed", "Collections whose last index build failed."
        )
        totals = [0, 0, 0, 0, 0]
        try:
            with rt.catalog.session() as session:
                ids = session.scalars(
                    select(Collection.id)
                    .order_by(Collection.created_at)
                    .limit(MAX_COLLECTION_STATUS)
                ).all()
            for collection_id in ids:
                if not rt.vectors.has_collection(collection_id):
                    continue
                status = rt.vectors.status(collection_id)
                for i, value in enumerate(
                    (
                        1,
                        status.points,
                        status.indexed_vectors,
                        status.building,
                        status.last_build_error is not None,
                    )
                ):
                    totals[i] += int(value)
        except Exception:  # a scrape must answer even when the catalog or an index does not
            log.exception("reading vector index status for metrics failed")
        for family, total in zip(
            (collections, points, indexed, building, failed), totals, strict=True
        ):
            family.add_metric([], total)
            yield family
