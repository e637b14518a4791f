"""The state of every image's enrichment stages, in the catalog (`image_stage`).

A stage row is written in the same transaction as its image, so an image is never stored
without the work it still needs. Workers claim rows in batches with a lease: a `running` row
whose lease ran out belongs to a worker that died, and is claimable again. The claim is one
conditional UPDATE stamped with a token unique to that claim, then a SELECT of that token, so
two workers (threads or processes, on any of the catalog's databases) never run one row twice.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Connection, and_, func, insert, or_, select, update

from lookalike.catalog import Catalog, ImageStage, new_id, utcnow

PENDING, RUNNING, DONE, FAILED, SKIPPED = "pending", "running", "done", "failed", "skipped"


@dataclass(frozen=True)
class Claimed:
    """The stages of one image that a claim got."""

    image_id: str
    collection_id: str
    stages: frozenset[str]
    attempts: int


def worker_name() -> str:
    """Who holds a claim: host, process and a random part (a restarted process is a new one)."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{new_id()[-8:]}"


class StageQueue:
    """Enqueue, claim, finish and count enrichment stages."""

    def __init__(self, catalog: Catalog, *, lease_s: float = 300.0, max_attempts: int = 3) -> None:
        self.catalog = catalog
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.worker = worker_name()
        self._claims = 0
        self._lock = threading.Lock()

    # --- writing ------------------------------------------------------------------

    @staticmethod
    def enqueue(conn: Connection, image_id: str, collection_id: str, stages: Iterable[str]) -> None:
        """Pending rows for `stages` of a new image, in the caller's transaction."""
        now = utcnow()
        rows = [
            {
                "image_id": image_id,
                "stage": stage,
                "collection_id": collection_id,
                "status": PENDING,
                "attempts": 0,
                "updated_at": now,
            }
            for stage in stages
        ]
        if rows:
            conn.execute(insert(ImageStage), rows)

    def claim(
        self, stages: Sequence[str], limit: int, *, image_ids: Sequence[str] | None = None
    ) -> list[Claimed]:
        """Up to `limit` images (oldest first; among `image_ids` when given) with claimable rows
        among `stages`, with all of their claimable rows among `stages`, leased to this worker."""
        now = utcnow()
        claimable = and_(
            ImageStage.stage.in_(stages),
            or_(
                ImageStage.status == PENDING,
                and_(ImageStage.status == RUNNING, ImageStage.lease_until < now),
            ),
        )
        if image_ids is not None:
            claimable = and_(claimable, ImageStage.image_id.in_(image_ids))
        with self._lock:
            self._claims += 1
            token = f"{self.worker}:{self._claims}"
        with self.catalog.engine.begin() as conn:
            chosen = list(
                conn.scalars(
                    select(ImageStage.image_id)
                    .where(claimable)
                    .group_by(ImageStage.image_id)
                    .order_by(ImageStage.image_id)
                    .limit(limit)
                )
            )
            if not chosen:
                return []
            conn.execute(
                update(ImageStage)
                .where(claimable, ImageStage.image_id.in_(chosen))
                .values(
                    status=RUNNING,
                    claimed_by=token,
                    lease_until=now + timedelta(seconds=self.lease_s),
                    attempts=ImageStage.attempts + 1,
                    updated_at=now,
                )
            )
        with self.catalog.engine.connect() as conn:
            rows = conn.execute(
                select(
                    ImageStage.image_id,
                    ImageStage.collection_id,
                    ImageStage.stage,
                    ImageStage.attempts,
                ).where(ImageStage.claimed_by == token, ImageStage.status == RUNNING)
            ).all()
        found: dict[str, tuple[str, set[str], int]] = {}
        for image_id, collection_id, stage, attempts in rows:
            entry = found.setdefault(image_id, (collection_id, set(), 0))
            entry[1].add(stage)
            found[image_id] = (collection_id, entry[1], max(entry[2], attempts))
        return [
            Claimed(image_id, collection_id, frozenset(stages_), attempts)
            for image_id, (collection_id, stages_, attempts) in sorted(found.items())
        ]

    def finish(
        self,
        stage: str,
        done: Iterable[str] = (),
        failed: Mapping[str, str] | None = None,
        skipped: Iterable[str] = (),
    ) -> None:
        """Record the outcome of `stage` for images this worker claimed. A failure goes back to
        pending until it has been tried `max_attempts` times."""
        now = utcnow()
        mine = ImageStage.claimed_by.like(f"{self.worker}:%")
        with self.catalog.engine.begin() as conn:
            for status, ids in ((DONE, list(done)), (SKIPPED, list(skipped))):
                if ids:
                    conn.execute(
                        update(ImageStage)
                        .where(ImageStage.stage == stage, ImageStage.image_id.in_(ids), mine)
                        .values(status=status, error=None, lease_until=None, updated_at=now)
                    )
            for image_id, error in (failed or {}).items():
                row = (ImageStage.stage == stage) & (ImageStage.image_id == image_id) & mine
                conn.execute(
                    update(ImageStage)
                    .where(row)
                    .values(
                        status=FAILED,
                        error=error[:2000],
                        lease_until=None,
                        updated_at=now,
                    )
                    .where(ImageStage.attempts >= self.max_attempts)
                )
                conn.execute(
                    update(ImageStage)
                    .where(row, ImageStage.attempts < self.max_attempts)
                    .values(status=PENDING, error=error[:2000], lease_until=None, updated_at=now)
                )

    def postpone(self, image_ids: Iterable[str]) -> None:
        """Hand claims of these images back untried (a store they need is down): the attempt
        does not count."""
        ids = list(image_ids)
        if not ids:
            return
        with self.catalog.engine.begin() as conn:
            conn.execute(
                update(ImageStage)
                .where(
                    ImageStage.claimed_by.like(f"{self.worker}:%"),
                    ImageStage.status == RUNNING,
                    ImageStage.image_id.in_(ids),
                )
                .values(
                    status=PENDING,
                    attempts=ImageStage.attempts - 1,
                    lease_until=None,
                    updated_at=utcnow(),
                )
            )

    def release(self) -> None:
        """Hand this worker's unfinished claims back (a clean stop)."""
        with self.catalog.engine.begin() as conn:
            conn.execute(
                update(ImageStage)
                .where(ImageStage.claimed_by.like(f"{self.worker}:%"), ImageStage.status == RUNNING)
                .values(
                    status=PENDING,
                    attempts=ImageStage.attempts - 1,
                    lease_until=None,
                    updated_at=utcnow(),
                )
            )

    def reclaim_from_dead_processes(self) -> int:
        """Hand back the claims of processes of this host that are gone (a crash, a kill):
        they need not wait for their leases. Claims from other hosts wait for their lease."""
        host = f"{socket.gethostname()[:32]}:"
        with self.catalog.engine.connect() as conn:
            holders = conn.scalars(
                select(ImageStage.claimed_by)
                .where(ImageStage.status == RUNNING, ImageStage.claimed_by.like(f"{host}%"))
                .distinct()
            ).all()
        dead = [h for h in holders if h is not None and not _alive(h.split(":")[1])]
        if not dead:
            return 0
        with self.catalog.engine.begin() as conn:
            result = conn.execute(
                update(ImageStage)
                .where(ImageStage.status == RUNNING, ImageStage.claimed_by.in_(dead))
                .values(status=PENDING, lease_until=None, updated_at=utcnow())
            )
        return int(result.rowcount or 0)

    @staticmethod
    def mark(conn: Connection, image_id: str, stage: str, status: str) -> None:
        """Set one row's state outside a claim (a thumbnail made on first request)."""
        conn.execute(
            update(ImageStage)
            .where(ImageStage.image_id == image_id, ImageStage.stage == stage)
            .values(status=status, error=None, lease_until=None, updated_at=utcnow())
        )

    # --- reading ------------------------------------------------------------------

    def outstanding(self, collection_id: str | None = None) -> int:
        """Stage rows still to run (pending or running), in one collection or all."""
        query = select(func.count()).where(ImageStage.status.in_((PENDING, RUNNING)))
        if collection_id is not None:
            query = query.where(ImageStage.collection_id == collection_id)
        with self.catalog.engine.connect() as conn:
            return int(conn.scalar(query) or 0)

    def images_outstanding(self, collection_id: str | None = None) -> int:
        """Images with a stage still to run, in one collection or all."""
        query = select(func.count(func.distinct(ImageStage.image_id))).where(
            ImageStage.status.in_((PENDING, RUNNING))
        )
        if collection_id is not None:
            query = query.where(ImageStage.collection_id == collection_id)
        with self.catalog.engine.connect() as conn:
            return int(conn.scalar(query) or 0)

    def counts(self, collection_id: str | None = None) -> dict[str, dict[str, int]]:
        """{stage: {status: rows}}."""
        query = select(ImageStage.stage, ImageStage.status, func.count()).group_by(
            ImageStage.stage, ImageStage.status
        )
        if collection_id is not None:
            query = query.where(ImageStage.collection_id == collection_id)
        out: dict[str, dict[str, int]] = {}
        with self.catalog.engine.connect() as conn:
            for stage, status, count in conn.execute(query):
                out.setdefault(stage, {})[status] = int(count)
        return out

    def unfinished(self, collection_id: str, stage: str) -> int:
        """Images of a collection whose `stage` has not produced its result (yet or ever)."""
        with self.catalog.engine.connect() as conn:
            return int(
                conn.scalar(
                    select(func.count()).where(
                        ImageStage.collection_id == collection_id,
                        ImageStage.stage == stage,
                        ImageStage.status.in_((PENDING, RUNNING, FAILED)),
                    )
                )
                or 0
            )

    def waiting(self, image_ids: Sequence[str], stages: Sequence[str]) -> int:
        """Rows of these images and stages still pending or running."""
        with self.catalog.engine.connect() as conn:
            return int(
                conn.scalar(
                    select(func.count()).where(
                        ImageStage.image_id.in_(image_ids),
                        ImageStage.stage.in_(stages),
                        ImageStage.status.in_((PENDING, RUNNING)),
                    )
                )
                or 0
            )

    def of_image(self, image_id: str) -> dict[str, str]:
        """{stage: status} of one image."""
        with self.catalog.engine.connect() as conn:
            return {
                stage: status
                for stage, status in conn.execute(
                    select(ImageStage.stage, ImageStage.status).where(
                        ImageStage.image_id == image_id
                    )
                )
            }


def _alive(pid: str) -> bool:
    """Whether process `pid` of this host still runs (when unsure: yes)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError, OSError):
        return True
    return True
