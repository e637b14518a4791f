"""The anomaly review queue: every image's outlier scores, kept in the catalog, and people's
verdicts on the most unusual ones.

The scores (``dnn``, ``density``, ``ood``: see `quality/anomalies.py`) live in the image row,
so the queue is sorted and paged by the database. Two things keep them current:

- **soon after each ingest batch** (the `anomaly` enrichment stage, `AnomalyScorer.score_new`):
  every new image gets its three scores from one search for its ``2k`` nearest others; every image
  already there that is among them and now has a new image nearer than its stored ``dnn`` gets
  that smaller ``dnn``. The ``density`` and ``ood`` of images already there are *not* updated:
  they drift as the collection grows, until
- **the `anomaly_recompute` job** recomputes every score of a collection in one pass (one
  search per image). It runs for every collection each `LOOKALIKE_ANOMALY_RECOMPUTE_INTERVAL_S`
  and on request (`POST /api/qa/anomalies/recompute`, `lookalike anomalies --recompute`).

``ood`` needs the whole collection's mean direction and spread. `AnomalyScorer` keeps running
sums for the collections being ingested into (`OodStats`), read from the vectors once per
process and collection; beyond `_INLINE_STATS_POINTS` points that first read is left to a
recompute job instead of the writer thread, and the images of the batches that come before it
finishes wait for their ``ood`` (the other two scores are there at once).

The queue lists only images that have the chosen score: a pending or failed image, or the only
image of a collection, has nothing to be compared with.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast, get_args

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Table, bindparam, case, func, select, update
from sqlalchemy.orm import Session

from lookalike.anomalies.scores import (
    AnomalyScores,
    OodStats,
    PointScores,
    scan_collection,
    score_new_points,
)
from lookalike.auth.tokens import Principal
from lookalike.catalog import Catalog, Collection, Image, Record, utcnow
from lookalike.catalog.repository import get_image
from lookalike.core.config import Settings
from lookalike.core.errors import CollectionNotFound, InvalidInput
from lookalike.core.timing import timed
from lookalike.embedding.base import Vectors
from lookalike.enrichment.runner import EnrichmentRunner, StageBatch
from lookalike.jobs.runner import JobContext, JobRunner
from lookalike.vectors.base import VectorIndex

log = logging.getLogger(__name__)

RECOMPUTE_JOB = "anomaly_recompute"
Sort = Literal["review", "dnn", "density", "ood"]
ReviewedFilter = Literal["false", "true", "all"]
MAX_LIMIT = 200
MAX_NOTE = 4000

_SCORE_COLUMNS = {
    "dnn": Image.anomaly_dnn,
    "density": Image.anomaly_density,
    "ood": Image.anomaly_ood,
}

# The review priority (sort "review"): the larger of two signals, and an image at or above
# `REVIEW_CUTOFF` "needs review".
# - junk: 1 - the image's weakest quality factor (noise, blank, tiny, heavily compressed, a
#   strip...: `quality.scores`). Embedding outlierness alone misses these: random noise sits
#   *closer* to the collection's mean than most photos do with the offline model.
# - outlier: its `ood` z-score, scaled so that 3 sigma reaches the cut-off.
# Calibrated on the sample photos plus a noise image, a blank, an 8x8 and a quality-6 JPEG: the
# four score 0.92-1.0 and take the top four places; the photos stay under 0.8 (the blurriest,
# a microscope slide, 0.79; the darkest, the Hubble deep field, 0.72): a weakest factor under
# 0.15 is junk, under 0.3 only a poor photo (tests/anomalies/test_queue.py).
REVIEW_CUTOFF = 0.85
_OUTLIER_FROM_SIGMA, _OUTLIER_AT_CUTOFF_SIGMA = 1.0, 3.0
_JUNK = 1.0 - func.coalesce(Image.quality_worst, 1.0)
_OUTLIER = (
    (func.coalesce(Image.anomaly_ood, 0.0) - _OUTLIER_FROM_SIGMA)
    * REVIEW_CUTOFF
    / (_OUTLIER_AT_CUTOFF_SIGMA - _OUTLIER_FROM_SIGMA)
)
_PRIORITY = case((_JUNK > _OUTLIER, _JUNK), else_=_OUTLIER)
_QUALITY_WORDS = {
    "sharpness": "blurry",
    "noise": "noisy",
    "contrast": "blank or flat",
    "exposure": "badly exposed",
    "resolution": "tiny",
    "compression": "heavily compressed",
    "aspect": "extreme shape",
}
# Reading a collection's vectors for its `OodStats` takes ~3 s per 20k points at 1280
# dimensions: fine once on the writer thread, not for a large collection.
_INLINE_STATS_POINTS = 20_000
# Stats that count this share of points more or fewer than the collection holds (deletes, a
# recompute that missed a batch) are read again.
_STATS_DRIFT = 0.01
# Running sums are dim x dim floats (13 MB at 1280 dimensions): keep those of a few collections.
_STATS_KEPT = 8
_UPDATE_CHUNK = 1000
# Core statements for the executemany updates by id (the ORM's bulk update takes no WHERE).
_IMAGES = cast(Table, Image.__table__)


@dataclass(frozen=True)
class AnomalyItem:
    """One image of the review queue."""

    image_id: str
    record_id: str
    name: str
    dnn: float | None
    density: float | None
    ood: float | None
    reviewed_at: datetime | None
    reviewed_by: str | None
    review_note: str | None
    priority: float = 0.0
    reasons: tuple[str, ...] = ()

    @property
    def reviewed(self) -> bool:
        return self.reviewed_at is not None

    @property
    def needs_review(self) -> bool:
        return self.priority >= REVIEW_CUTOFF


def _item(image: Image, name: str) -> AnomalyItem:
    junk = 1.0 - (image.quality_worst if image.quality_worst is not None else 1.0)
    ood = image.anomaly_ood
    outlier = (
        ((ood or 0.0) - _OUTLIER_FROM_SIGMA)
        * REVIEW_CUTOFF
        / (_OUTLIER_AT_CUTOFF_SIGMA - _OUTLIER_FROM_SIGMA)
    )
    reasons = []
    if junk >= REVIEW_CUTOFF:
        words = [_QUALITY_WORDS.get(i, i) for i in image.quality_issues or []]
        reasons.append(f"low quality ({image.quality_score or 0.0:.2f}): {', '.join(words)}")
    if outlier >= REVIEW_CUTOFF and ood is not None:
        reasons.append(f"outlier: {ood:.1f} sigma from the rest of the collection")
    return AnomalyItem(
        image_id=image.id,
        record_id=image.record_id,
        name=name,
        dnn=image.anomaly_dnn,
        density=image.anomaly_density,
        ood=ood,
        reviewed_at=image.reviewed_at,
        reviewed_by=image.reviewed_by,
        review_note=image.review_note,
        priority=round(min(1.0, max(0.0, junk, outlier)), 4),
        reasons=tuple(reasons),
    )


def list_anomalies(
    catalog: Catalog,
    collection: Collection,
    *,
    sort: str = "review",
    reviewed: str = "false",
    needs_review: bool | None = None,
    min_score: float | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[AnomalyItem], int]:
    """A page of `collection`'s images by `sort` score, most in need of a look first, and how
    many match.

    `sort` "review" ranks by the review priority (junk and outliers, see `REVIEW_CUTOFF`);
    `needs_review` keeps only the images at or above the cut-off (True) or below it (False).
    `reviewed` is "false" (the queue: not reviewed yet), "true" or "all". Images without that
    score yet are left out; ties go by image id, so pages are stable.
    """
    if sort not in get_args(Sort):
        raise InvalidInput(f"sort must be one of: {', '.join(get_args(Sort))}")
    if reviewed not in get_args(ReviewedFilter):
        raise InvalidInput("reviewed must be one of: false, true, all")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}")
    if offset < 0:
        raise InvalidInput("offset must be >= 0")
    if min_score is not None and not math.isfinite(min_score):
        raise InvalidInput("min_score must be a finite number")
    score: Any = _PRIORITY if sort == "review" else _SCORE_COLUMNS[sort]
    scored = (
        (Image.anomaly_ood.is_not(None) | Image.quality_worst.is_not(None))
        if sort == "review"
        else score.is_not(None)
    )
    where = [Image.collection_id == collection.id, scored]
    if needs_review is not None:
        where.append(_PRIORITY >= REVIEW_CUTOFF if needs_review else _PRIORITY < REVIEW_CUTOFF)
    if reviewed == "false":
        where.append(Image.reviewed_at.is_(None))
    elif reviewed == "true":
        where.append(Image.reviewed_at.is_not(None))
    if min_score is not None:
        where.append(score >= min_score)
    with catalog.session() as session:
        total = session.scalar(select(func.count()).select_from(Image).where(*where)) or 0
        rows = session.execute(
            select(Image, Record.name)
            .join(Record, Image.record_id == Record.id)
            .where(*where)
            .order_by(score.desc(), Image.id)
            .limit(limit)
            .offset(offset)
        ).all()
    return [_item(image, name) for image, name in rows], int(total)


def review_anomaly(
    catalog: Catalog,
    caller: Principal,
    image_id: str,
    *,
    reviewed: bool,
    note: str | None = None,
) -> AnomalyItem:
    """Mark an image of `caller`'s tenant reviewed by `caller` (or not reviewed again); `note`
    replaces the image's review note."""
    if note is not None and len(note) > MAX_NOTE:
        raise InvalidInput(f"note is at most {MAX_NOTE} characters")
    with catalog.session() as session:
        image = get_image(session, caller.tenant, image_id)
        image.reviewed_at = utcnow() if reviewed else None
        image.reviewed_by = caller.user if reviewed else None
        image.review_note = note
        name = session.scalar(select(Record.name).where(Record.id == image.record_id)) or ""
        return _item(image, name)


def request_recompute(jobs: JobRunner, collection: Collection) -> str:
    """Queue a full recompute of `collection`'s scores; returns the job id (GET /api/jobs/{id})."""
    return jobs.submit(RECOMPUTE_JOB, collection.id)


class AnomalyScorer:
    """Keeps the anomaly scores in the catalog current: see the module doc."""

    def __init__(self, settings: Settings, catalog: Catalog, vectors: VectorIndex) -> None:
        self.settings = settings
        self.catalog = catalog
        self.vectors = vectors
        self.k = settings.anomaly_k
        self._stats: OrderedDict[tuple[str, str], OodStats] = OrderedDict()
        self._lock = threading.Lock()
        self._jobs: JobRunner | None = None
        self._warming: set[str] = set()

    def attach(self, enrichment: EnrichmentRunner, jobs: JobRunner) -> None:
        """Score new images as an enrichment stage; run the recompute job, and on a schedule."""
        self._jobs = jobs
        enrichment.register(AnomalyStage(self))
        jobs.register(RECOMPUTE_JOB, self._run_job)
        jobs.every(RECOMPUTE_JOB, self.settings.anomaly_recompute_interval_s)

    @property
    def _ef(self) -> int:
        return max(self.settings.hnsw_ef, 2 * self.k + 1)

    # --- incremental ----------------------------------------------------------------

    def score_new(
        self, collection_id: str, vector_name: str, image_ids: list[str], vectors: Vectors
    ) -> None:
        """Score the images of a batch just stored, and lower their neighbours' ``dnn``."""
        if not image_ids:
            return
        matrix = np.asarray(vectors, dtype=np.float32)
        with timed("enrich", "anomaly_scores"):
            points = self.vectors.count(collection_id)
            stats = self._stats_with(collection_id, vector_name, matrix, points)
            found = score_new_points(
                self.vectors,
                collection_id,
                vector_name,
                image_ids,
                matrix,
                self.k,
                stats=stats,
                ef=self._ef,
            )
            # Up to 2k + 1 points, every search saw the whole collection: the "estimates" of
            # the other images are their exact scores, and a young collection stays exact.
            complete = points <= 2 * self.k + 1 and stats is not None
            now = utcnow()
            rows = [_score_row(i, s, now) for i, s in found.new.items()]
            nearer: list[dict[str, Any]] = []
            with self.catalog.session() as session:
                others = session.execute(
                    select(Image.id, Image.anomaly_dnn, Image.anomaly_at).where(
                        Image.id.in_(list(found.nearest_new))
                    )
                ).all()
                for image_id, dnn, scored_at in others:
                    estimate = found.estimates[image_id]
                    if complete or scored_at is None:
                        # Exact in a young collection; for an image never scored (the first
                        # of a collection, say) an estimate beats nothing until the recompute.
                        rows.append(_score_row(image_id, estimate, now))
                    elif dnn is None or found.nearest_new[image_id] < dnn:
                        nearer.append({"b_id": image_id, "dnn": found.nearest_new[image_id]})
                _write_scores(session, rows)
                if nearer:
                    session.execute(
                        update(_IMAGES)
                        .where(_IMAGES.c.id == bindparam("b_id"))
                        .values(anomaly_dnn=bindparam("dnn")),
                        nearer,
                    )
        log.debug("anomaly scores: %d written, %d lower dnn", len(rows), len(nearer))

    def _stats_with(
        self, collection_id: str, vector_name: str, vectors: NDArray[np.float32], points: int
    ) -> OodStats | None:
        """The collection's `OodStats` with `vectors` counted in (it holds `points` now); None
        while they are unknown."""
        key = (collection_id, vector_name)
        with self._lock:
            stats = self._stats.pop(key, None)
            if stats is not None:
                stats.add(vectors)
                if abs(stats.count - points) <= _STATS_DRIFT * points:
                    self._keep(key, stats)
                    return stats
        if points > _INLINE_STATS_POINTS:
            self._warm(collection_id)
            return None
        stats = OodStats.of(vectors.shape[1], self._vector_chunks(collection_id, vector_name))
        with self._lock:
            self._keep(key, stats)
        return stats

    def _vector_chunks(
        self, collection_id: str, vector_name: str, size: int = 1024
    ) -> Iterator[NDArray[np.float32]]:
        chunk: list[NDArray[np.float32]] = []
        for point in self.vectors.iter_points(collection_id, with_vectors=True):
            vector = point.vectors.get(vector_name)
            if vector is not None:
                chunk.append(vector)
            if len(chunk) == size:
                yield np.stack(chunk)
                chunk = []
        if chunk:
            yield np.stack(chunk)

    def _keep(self, key: tuple[str, str], stats: OodStats) -> None:
        """Under `_lock`: remember `stats`, forgetting the least recently used beyond a few."""
        self._stats[key] = stats
        self._stats.move_to_end(key)
        while len(self._stats) > _STATS_KEPT:
            self._stats.popitem(last=False)

    def _warm(self, collection_id: str) -> None:
        """Have a recompute read a large collection's stats (once, not once per batch)."""
        with self._lock:
            if self._jobs is None or collection_id in self._warming:
                return
            self._warming.add(collection_id)
        self._jobs.submit(RECOMPUTE_JOB, collection_id)

    # --- full -----------------------------------------------------------------------

    def recompute(self, collection_id: str) -> dict[str, Any]:
        """Recompute every score of a collection in one pass; returns what the job reports."""
        started = time.perf_counter()
        # Whole seconds: MySQL keeps none, and a row scored in this pass must not look older.
        since = utcnow().replace(microsecond=0)
        with self.catalog.session() as session:
            collection = session.get(Collection, collection_id)
        if collection is None:
            raise CollectionNotFound(f"no collection {collection_id!r}")
        scan = scan_collection(
            self.vectors, collection.id, collection.vector_name, self.k, ef=self._ef
        )
        scores = scan.scores(self.k)
        stats = OodStats(collection.dim)
        if scan.ids:
            stats.add(scan.vectors)
        with self._lock:
            self._keep((collection.id, collection.vector_name), stats)
        now = utcnow()
        rows = [_score_row(i, s, now) for i, s in scores.items()]
        with self.catalog.session() as session:
            _write_scores(session, rows)
            # Scored before this pass and not in it (its vector is gone, or it is the only
            # image left): those scores describe a collection that no longer exists.
            cleared = session.execute(
                update(Image)
                .where(Image.collection_id == collection.id, Image.anomaly_at < since)
                .values(anomaly_dnn=None, anomaly_density=None, anomaly_ood=None, anomaly_at=None)
            ).rowcount  # type: ignore[attr-defined]
        return {
            "scored": len(rows),
            "cleared": int(cleared or 0),
            "k": self.k,
            "seconds": round(time.perf_counter() - started, 3),
        }

    def _run_job(self, context: JobContext) -> dict[str, Any]:
        try:
            return self.recompute(context.collection_id)
        finally:
            with self._lock:
                self._warming.discard(context.collection_id)


def _score_row(image_id: str, scores: AnomalyScores | PointScores, at: datetime) -> dict[str, Any]:
    return {
        "b_id": image_id,
        "dnn": scores.dnn,
        "density": scores.density,
        "ood": scores.ood,
        "at": at,
    }


def _write_scores(session: Session, rows: list[dict[str, Any]]) -> None:
    statement = (
        update(_IMAGES)
        .where(_IMAGES.c.id == bindparam("b_id"))
        .values(
            anomaly_dnn=bindparam("dnn"),
            anomaly_density=bindparam("density"),
            anomaly_ood=bindparam("ood"),
            anomaly_at=bindparam("at"),
        )
    )
    for start in range(0, len(rows), _UPDATE_CHUNK):
        session.execute(statement, rows[start : start + _UPDATE_CHUNK])


class AnomalyStage:
    """The enrichment stage: a new image's outlier scores (`AnomalyScorer.score_new`)."""

    name = "anomaly"

    def __init__(self, scorer: AnomalyScorer) -> None:
        self.scorer = scorer

    def pixels_for(self, collection: Collection) -> int | None:
        return None

    def needs_vector(self, collection: Collection) -> bool:
        return True

    def run(self, batch: StageBatch) -> Mapping[str, str]:
        vectors = np.stack([item.vector for item in batch.items if item.vector is not None])
        self.scorer.score_new(
            batch.collection.id, batch.collection.vector_name, batch.image_ids, vectors
        )
        return {}
