"""Durable background jobs other than embedding: dedup sweeps, anomaly recomputes.

A job is a `job` row (kind, collection, params). `JobRunner` runs queued jobs of the kinds
registered with it, one at a time on one thread, oldest first; a restart puts the jobs that were
running back in the queue. A job's answer is kept in `params["result"]`, so `GET /api/jobs/{id}`
shows it. `every()` adds a periodic job per collection (the scheduled full recomputes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from lookalike.catalog import Catalog, Collection, Job, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobContext:
    """What a job function is given."""

    job_id: str
    collection_id: str
    params: dict[str, Any]


JobFunction = Callable[[JobContext], dict[str, Any] | None]


@dataclass
class _Periodic:
    kind: str
    every_s: float
    next_at: float


class JobRunner:
    """Runs registered kinds of jobs on one background thread. `start()`, then `stop()`."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._functions: dict[str, JobFunction] = {}
        self._periodic: list[_Periodic] = []
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def register(self, kind: str, function: JobFunction) -> None:
        self._functions[kind] = function

    def every(self, kind: str, seconds: float) -> None:
        """Queue a `kind` job for every collection each `seconds` (0 turns it off)."""
        if seconds > 0:
            self._periodic.append(_Periodic(kind, seconds, time.monotonic() + seconds))

    def submit(self, kind: str, collection_id: str, params: dict[str, Any] | None = None) -> str:
        """Queue a job and return its id. An identical job already queued is reused."""
        if kind not in self._functions:
            raise ValueError(f"no job function registered for {kind!r}")
        params = dict(params or {})
        with self.catalog.session() as session:
            waiting = session.scalars(
                select(Job).where(
                    Job.kind == kind, Job.collection_id == collection_id, Job.status == "queued"
                )
            ).all()
            for job in waiting:
                if job.params == params:
                    return job.id
            job = Job(kind=kind, collection_id=collection_id, params=params)
            session.add(job)
            session.flush()
            job_id = job.id
        with self._wake:
            self._wake.notify_all()
        return job_id

    def start(self) -> None:
        if self._thread is not None:
            return
        with self.catalog.session() as session:
            # A job that was running when the process died runs again from the start.
            session.execute(
                update(Job)
                .where(Job.status == "running", Job.kind.in_(list(self._functions)))
                .values(status="queued")
            )
        self._thread = threading.Thread(target=self._loop, name="jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    def run_pending(self) -> int:
        """Run every queued job now, on this thread (for the CLI and tests); returns how many."""
        count = 0
        while self._run_one():
            count += 1
        return count

    # --- the loop -----------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._wake:
                if self._stopping:
                    return
            self._queue_periodic()
            try:
                ran = self._run_one()
            except Exception:
                log.exception("the job runner failed; retrying in a moment")
                ran = False
            if not ran:
                with self._wake:
                    if not self._stopping:
                        self._wake.wait(timeout=self._idle_timeout())

    def _idle_timeout(self) -> float:
        if not self._periodic:
            return 60.0
        return max(0.05, min(p.next_at for p in self._periodic) - time.monotonic())

    def _queue_periodic(self) -> None:
        now = time.monotonic()
        for periodic in self._periodic:
            if now < periodic.next_at:
                continue
            periodic.next_at = now + periodic.every_s
            with self.catalog.session() as session:
                ids = session.scalars(select(Collection.id)).all()
            for collection_id in ids:
                self.submit(periodic.kind, collection_id, {"scheduled": True})

    def _claim(self) -> Job | None:
        with self.catalog.session() as session:
            candidates = session.scalars(
                select(Job)
                .where(Job.status == "queued", Job.kind.in_(list(self._functions)))
                .order_by(Job.created_at, Job.id)
                .limit(5)
            ).all()
            for job in candidates:
                # The status condition makes the claim safe against another runner.
                claimed = session.execute(
                    update(Job)
                    .where(Job.id == job.id, Job.status == "queued")
                    .values(status="running", attempts=Job.attempts + 1, updated_at=utcnow())
                )
                if claimed.rowcount == 1:  # type: ignore[attr-defined]
                    session.refresh(job)
                    return job
        return None

    def _run_one(self) -> bool:
        job = self._claim()
        if job is None:
            return False
        function = self._functions[job.kind]
        context = JobContext(job.id, job.collection_id or "", dict(job.params or {}))
        started = time.perf_counter()
        try:
            result = function(context)
        except Exception as exc:
            log.exception("job %s (%s) failed", job.id, job.kind)
            self._finish(job.id, "failed", error=str(exc) or type(exc).__name__)
        else:
            log.info("job %s (%s) done in %.2f s", job.id, job.kind, time.perf_counter() - started)
            self._finish(job.id, "done", result=result)
        return True

    def _finish(
        self, job_id: str, status: str, *, error: str | None = None, result: Any = None
    ) -> None:
        with self.catalog.session() as session:
            job = session.get(Job, job_id)
            if job is None:  # its collection was deleted meanwhile
                return
            job.status = status
            job.error = error
            if result is not None:
                job.params = {**(job.params or {}), "result": result}
