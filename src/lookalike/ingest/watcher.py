"""Folder watch: images that appear or change in a directory are ingested as they settle.

Each file is one record, named after the file's stem and remembering its path. A changed file
gets its new image added to that record and the old one removed, so search reflects the file as
it is now.

A PDF is one record too, with an image per page (`IngestPipeline.add_document`). A changed PDF
replaces its record as a whole, once the new version has opened: its pages may be others.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from lookalike.catalog import Collection, Record
from lookalike.core.errors import LookalikeError
from lookalike.ingest.pdf import is_pdf_path, open_pdf
from lookalike.ingest.pipeline import (
    DOCUMENT_SUFFIXES,
    IMAGE_SUFFIXES,
    IngestFile,
    IngestResult,
    NewRecord,
)
from lookalike.records.service import Services, delete_images, delete_record

log = logging.getLogger(__name__)


class FolderWatcher:
    """Watches `root` recursively; call `start()`, later `stop()`.

    A file is ingested once its size and mtime have stayed the same for `settle_s`, so a copy
    still being written is not read half-way.
    """

    def __init__(
        self,
        rt: Services,
        collection: Collection,
        root: Path,
        *,
        owner: str,
        settle_s: float = 0.5,
        on_result: Callable[[Path, IngestResult], None] | None = None,
    ) -> None:
        self.rt = rt
        self.collection = collection
        self.root = root.resolve()
        self.owner = owner
        self.settle_s = settle_s
        self.on_result = on_result
        self._pending: dict[
            Path, tuple[float, int, float]
        ] = {}  # path -> (first seen, size, mtime)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._observer = Observer()
        self._thread = threading.Thread(target=self._settle_loop, name="watch-settle", daemon=True)

    def start(self) -> None:
        if not self.root.is_dir():
            raise NotADirectoryError(f"not a directory: {self.root}")
        handler = _Handler(self._seen)
        self._observer.schedule(handler, str(self.root), recursive=True)
        self._observer.start()
        self._thread.start()
        # Files already there count as new on start; ingest is idempotent, so re-runs are cheap.
        for path in sorted(self.root.rglob("*")):
            self._seen(path)

    def stop(self) -> None:
        self._stop.set()
        self._observer.stop()
        self._observer.join()
        self._thread.join()

    def _seen(self, path: Path) -> None:
        suffix = path.suffix.lower()
        if suffix not in IMAGE_SUFFIXES | DOCUMENT_SUFFIXES or path.name.startswith("."):
            return
        with self._lock:
            self._pending[path] = (time.monotonic(), -1, -1.0)

    def _settle_loop(self) -> None:
        while not self._stop.wait(min(0.2, self.settle_s)):
            ready: list[Path] = []
            now = time.monotonic()
            with self._lock:
                for path, (since, size, mtime) in list(self._pending.items()):
                    try:
                        st = path.stat()
                    except FileNotFoundError:
                        del self._pending[path]
                        continue
                    if (st.st_size, st.st_mtime) != (size, mtime):
                        self._pending[path] = (now, st.st_size, st.st_mtime)
                    elif now - since >= self.settle_s and st.st_size > 0:
                        ready.append(path)
                        del self._pending[path]
            for path in ready:
                try:
                    self.ingest_file(path)
                except Exception:
                    log.exception("watch: ingest of %s failed", path)

    def ingest_file(self, path: Path) -> IngestResult:
        """Ingest one file now, replacing the image of its record if the file changed."""
        key = str(path.resolve())
        with self.rt.catalog.session() as session:
            record = session.scalars(
                select(Record).where(
                    Record.collection_id == self.collection.id,
                    Record.extra["path"].as_string() == key,
                )
            ).first()
            old_ids = [i.id for i in record.images] if record else []
            record_id = record.id if record else None
            old_sha = record.extra.get("sha256") if record else None
        if is_pdf_path(path):
            result = self._ingest_document(path, key, record_id, old_sha)
            if self.on_result is not None:
                self.on_result(path, result)
            return result
        data = path.read_bytes()
        target = record_id or NewRecord(name=path.stem, owner=self.owner, extra={"path": key})
        (result,) = self.rt.ingest.add(
            self.collection, target, [IngestFile(data, filename=key, source="watch")], wait=True
        )
        if result.status == "added" and old_ids:
            delete_images(self.rt, self.collection.id, old_ids)
        if self.on_result is not None:
            self.on_result(path, result)
        return result

    def _ingest_document(
        self, path: Path, key: str, old_record: str | None, old_sha: str | None
    ) -> IngestResult:
        """One result for the whole PDF: `added` with the record when a page was added."""
        sha = _file_sha256(path)
        if old_record is not None and sha == old_sha:
            # Unchanged (a restart sees every file again): nothing to render.
            return IngestResult(key, "duplicate", record_id=old_record)
        try:
            document = open_pdf(path, self.rt.settings, name=path.name)
        except LookalikeError as exc:
            return IngestResult(key, "rejected", error_code=exc.code, reason=exc.message)
        if old_record is not None:
            # The pages of the new version may be others: the record is made afresh.
            delete_record(self.rt, self.collection.tenant, old_record)
        record = NewRecord(name=path.stem, owner=self.owner, extra={"path": key, "sha256": sha})
        results = self.rt.ingest.add_document(
            self.collection, record, document, source="watch", wait=True
        )
        added = [r for r in results if r.status == "added"]
        pages = f"{len(added)} of {len(results)} pages added"
        if added:
            return IngestResult(key, "added", record_id=added[0].record_id, reason=pages)
        first = results[0]
        return IngestResult(
            key, first.status, first.image_id, first.record_id, first.error_code, pages
        )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class _Handler(FileSystemEventHandler):
    def __init__(self, seen: Callable[[Path], None]) -> None:
        self._seen = seen

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type not in ("created", "modified", "moved", "closed"):
            return
        dest = getattr(event, "dest_path", "") or event.src_path
        self._seen(Path(str(dest)))
