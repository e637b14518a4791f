"""The ingest pipeline: the searchable path. It validates, stores and embeds images, overlapping
CPU work with inference, and does nothing that search does not need.

Three stages run at once:

1. *prepare*, in a small thread pool: size check, sha256, duplicate check, virus scan (with
   `LOOKALIKE_CLAMD_URL`), one decode at the model's size (validates the bytes), pHash and the
   model's input tensor; then the catalog row (pending) and its job, then the original into the
   blob store.
2. *embed*, one thread: takes prepared tensors from a bounded queue in batches and runs the model.
3. *write*, one thread: upserts a batch's vectors with their payload, then, in one catalog
   transaction, marks the images embedded and queues their enrichment stages (thumbnail,
   quality, NSFW, duplicate verdict, anomaly scores: `lookalike.enrichment`), which run later.

Decoding, hashing and writes of the next images overlap with inference of the current batch.
The catalog row and job are written before anything else, so a crash leaves a pending image whose
job a restart (`resume`) picks up again from the stored original; an image is marked embedded
together with its enrichment stages, so a crash never leaves one searchable and unqueued.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from PIL.Image import Image as PILImage
from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from lookalike.catalog import Catalog, Collection, Image, ImageStage, Job, Record, new_id, utcnow
from lookalike.catalog.models import ImageText
from lookalike.catalog.record_fields import check_record_fields
from lookalike.catalog.repository import find_image_by_sha256
from lookalike.core.config import Settings
from lookalike.core.errors import (
    BlobStoreUnavailable,
    Busy,
    ImageTooLarge,
    Infected,
    LookalikeError,
    ModelUnavailable,
    NotFound,
    VectorStoreUnavailable,
    VirusScannerUnavailable,
)
from lookalike.core.timing import timed
from lookalike.embedding.base import Embedder, Vectors
from lookalike.embedding.crops import crop_tensors, crops_vector_name, uses_crops
from lookalike.embedding.fallback import has_chain
from lookalike.embedding.late_interaction import patches_vector_for
from lookalike.enrichment.queue import StageQueue
from lookalike.enrichment.runner import EnrichmentRunner
from lookalike.imaging import sha256_hex
from lookalike.ingest.payload import image_payload
from lookalike.ingest.pdf import PageText, PdfDocument, is_pdf_path, open_pdf
from lookalike.ingest.prepare import (
    DecodeLimits,
    Prepared,
    PreparePool,
    prepare_pixels,
    processes_for,
)
from lookalike.ingest.reembed import enqueue_reembed, reembed_target
from lookalike.ingest.virus import ClamdScanner, quarantine, quarantine_dir
from lookalike.storage.base import BlobStore
from lookalike.vectors.base import Point, VectorIndex

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".gif", ".heic", ".heif", ".avif", ".bmp", ".tif", ".tiff"}
)
# Documents: each becomes one record with an image per page (`add_document`).
DOCUMENT_SUFFIXES = frozenset({".pdf"})

EmbedderFor = Callable[[Collection], Embedder]
PREPARE_NICENESS = 10


@dataclass(frozen=True)
class IngestFile:
    """Bytes to ingest and where they came from."""

    data: bytes
    filename: str | None = None
    source: str = "upload"
    # A page of a document: its 1-based number and its text layer (stored with the image row).
    page: int | None = None
    page_text: PageText | None = None


@dataclass(frozen=True)
class NewRecord:
    """Create a record for the image (unless the image turns out to be a duplicate).

    Files given the same `NewRecord` (the same `key`) share one record, made with the first of
    them that is added. Each `NewRecord` gets a fresh key unless the caller passes one.
    """

    name: str
    owner: str
    description: str = ""
    tags: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    key: str = field(default_factory=new_id)

    def __post_init__(self) -> None:
        check_record_fields(
            name=self.name,
            description=self.description,
            owner=self.owner,
            tags=self.tags,
            metadata=self.extra,
        )


RecordTarget = str | NewRecord  # an existing record id, or a record to create


@dataclass(frozen=True)
class DuplicateOf:
    """The stored image an ingested one is a copy of, or similar to, and its record."""

    tier: str  # exact | near_exact | similar
    image_id: str
    score: float
    record_id: str
    record_name: str | None = None


@dataclass(frozen=True)
class IngestResult:
    filename: str | None
    status: Literal["added", "duplicate", "rejected"]
    image_id: str | None = None
    record_id: str | None = None
    error_code: str | None = None
    reason: str | None = None
    # The embed job of an added image: its status says when the image is searchable.
    job_id: str | None = None
    # Its duplicate verdict, where the caller waited for it (`dedup.verdicts.with_verdicts`).
    duplicate_of: DuplicateOf | None = None


# Rejections that say nothing about the file, only that the service cannot take files now.
_UNAVAILABLE: dict[str, type[LookalikeError]] = {
    BlobStoreUnavailable.code: BlobStoreUnavailable,
    Busy.code: Busy,
    VirusScannerUnavailable.code: VirusScannerUnavailable,
}


def raise_if_unavailable(results: Sequence[IngestResult]) -> None:
    """Raise the service's own error when every file was refused for the same passing reason
    (a full queue, a scanner that is down): the request as a whole gets a 503 to retry."""
    codes = {r.error_code for r in results}
    if results and len(codes) == 1 and all(r.status == "rejected" for r in results):
        error = _UNAVAILABLE.get(next(iter(codes)) or "")
        if error is not None:
            raise error(results[0].reason or "the service cannot take files now; retry later")


@dataclass
class _Prepared:
    image_id: str
    collection_id: str
    vector_name: str
    model_id: str
    embedder: Embedder
    tensor: NDArray[np.float32]
    payload: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    # Collections with `use_crops`: the crops' model inputs (n, C, H, W), and after inference
    # their vectors, stored as the multivector `crops_vector`. The inputs wait in the queue as
    # float16 (1.8 MB an image instead of 3.6; rounding moves a pixel by under 1/15 grey level).
    crops: NDArray[np.float16] | None = None
    crops_vector: str | None = None
    crop_vectors: Vectors | None = None
    # Late-interaction models: the multivector the patch vectors go to, and after inference
    # the image's (P, dim) patch vectors; the global vector is then their pooled mean.
    patches_vector: str | None = None
    patch_vectors: Vectors | None = None
    # Embedded by a fallback model of the collection's chain: the model id it waits for.
    reembed_to: str | None = None


class _RecordTargets:
    """The records of one `add_many` call: a `NewRecord` is inserted with its first added file,
    and its other files find that record by `NewRecord.key`.

    The key is an explicit string that is never reused. Keying by the object's id() was the
    cause of images filed under another file's record: once a `NewRecord` was freed, a later
    one could get the same id() and inherit the earlier record.
    """

    def __init__(self) -> None:
        # Held from the lookup to the commit, so two files of one new record make it once.
        self.lock = threading.Lock()
        self._created: dict[str, str] = {}

    def resolve(
        self, conn: Connection, collection: Collection, target: RecordTarget
    ) -> dict[str, Any]:
        """The record's id, owner and tags, inserting a `NewRecord` met for the first time.

        Call under `lock`, in the transaction that adds the image; `created` after it commits.
        """
        record_id = target if isinstance(target, str) else self._created.get(target.key)
        if record_id is not None:
            found = conn.execute(
                select(Record.id, Record.owner, Record.tags, Record.extra.label("extra")).where(
                    Record.id == record_id, Record.collection_id == collection.id
                )
            ).first()
            if found is None:
                raise NotFound(f"no record {record_id!r} in collection {collection.name!r}")
            return {"id": found.id, "owner": found.owner, "tags": found.tags, "extra": found.extra}
        assert isinstance(target, NewRecord)
        now = utcnow()
        values = {
            "id": new_id(),
            "collection_id": collection.id,
            "name": target.name,
            "description": target.description,
            "tags": list(target.tags),
            "extra": dict(target.extra),
            "owner": target.owner,
            "created_at": now,
            "updated_at": now,
        }
        conn.execute(insert(Record).values(values))
        return values

    def created(self, target: RecordTarget, record_id: str) -> None:
        if isinstance(target, NewRecord):
            self._created.setdefault(target.key, record_id)

    def discard(self, conn: Connection, target: RecordTarget, record_id: str) -> bool:
        """Delete the record `target` made, if it holds no image (its only one was taken back);
        True if so, and then call `forget`. Call under `lock`."""
        if not isinstance(target, NewRecord) or self._created.get(target.key) != record_id:
            return False  # an existing record, or not one this call made
        if conn.execute(select(Image.id).where(Image.record_id == record_id).limit(1)).first():
            return False
        conn.execute(delete(Record).where(Record.id == record_id))
        return True

    def forget(self, target: RecordTarget) -> None:
        if isinstance(target, NewRecord):
            self._created.pop(target.key, None)


_STOP = object()
# Back-off of the retries of writes the vector store refused while down.
_OUTAGE_RETRY_FIRST_S = 2.0
_OUTAGE_RETRY_MAX_S = 60.0


class IngestPipeline:
    """Owns the prepare pool and the embed thread. `start()` before use, `stop()` at the end."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        blobs: BlobStore,
        vectors: VectorIndex,
        embedder_for: EmbedderFor,
        enrichment: EnrichmentRunner | None = None,
    ) -> None:
        self.settings = settings
        # Where the images' later stages are queued; None: no enrichment (tests of this path).
        self.enrichment = enrichment
        self.catalog = catalog
        self.blobs = blobs
        self.vectors = vectors
        self.embedder_for = embedder_for
        # None when LOOKALIKE_CLAMD_URL is unset: no virus scan.
        self.virus_scanner = ClamdScanner.from_settings(settings)
        self._limits = DecodeLimits(
            settings.max_image_bytes, settings.max_image_pixels, settings.max_aspect_ratio
        )
        # Bulk mode on a machine with cores to spare: decode and prepare in worker processes.
        processes = processes_for(settings.ingest_processes)
        self._processes = PreparePool(processes) if processes else None
        self._queue: queue.Queue[_Prepared | object] = queue.Queue(maxsize=settings.queue_size)
        self._pool = ThreadPoolExecutor(
            settings.ingest_workers, thread_name_prefix="ingest", initializer=_yield_to_model
        )
        self._embed_thread: threading.Thread | None = None
        self._write_thread: threading.Thread | None = None
        # At most two inferred batches wait for the writer: the model may run ahead, not away.
        self._written: queue.Queue[Any] = queue.Queue(maxsize=2)
        self._in_flight = 0
        self._lock = threading.Condition()
        self._touched: set[str] = set()
        self._unpaused = threading.Event()
        self._unpaused.set()
        # Images whose vectors the vector store refused while it was down (image id ->
        # collection id): their embed jobs stay queued in the catalog, and a timer re-prepares
        # them from their stored originals, backing off while the store stays down.
        self._waiting: dict[str, str] = {}
        self._retry_delay_s = _OUTAGE_RETRY_FIRST_S
        self._retry_timer: threading.Timer | None = None

    # --- life cycle ---------------------------------------------------------

    def start(self, *, resume: bool = True) -> None:
        if self._embed_thread is not None:
            return
        self._embed_thread = threading.Thread(target=self._embed_loop, name="embed", daemon=True)
        self._write_thread = threading.Thread(
            target=self._write_loop, name="ingest-write", daemon=True
        )
        self._embed_thread.start()
        self._write_thread.start()
        if resume:
            threading.Thread(target=self.resume, name="ingest-resume", daemon=True).start()

    def stop(self) -> None:
        """Finish what is queued, then stop the threads."""
        if self._embed_thread is None:
            return
        with self._lock:
            if self._retry_timer is not None:
                self._retry_timer.cancel()
                self._retry_timer = None
        self.wait_idle()
        self._queue.put(_STOP)
        self._embed_thread.join()
        if self._write_thread is not None:
            self._write_thread.join()
        self._embed_thread = self._write_thread = None
        self._pool.shutdown(wait=True)
        if self._processes is not None:
            self._processes.close()

    def pause(self) -> None:
        """Stop embedding after the current batch; work is accepted until the queue is full."""
        self._unpaused.clear()

    def unpause(self) -> None:
        self._unpaused.set()

    @property
    def prepare_processes(self) -> int:
        """Worker processes that decode and prepare images (0: the prepare threads do)."""
        return self._processes.processes if self._processes is not None else 0

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    @property
    def in_flight(self) -> int:
        """Images accepted but not yet embedded or rejected (being prepared, queued, embedding)."""
        return self._in_flight

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is being prepared or embedded. False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._in_flight:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._lock.wait(remaining)
        return True

    # --- public entry points -----------------------------------------------

    def add(
        self,
        collection: Collection,
        target: RecordTarget,
        files: Iterable[IngestFile],
        *,
        wait: bool = False,
        on_result: Callable[[IngestResult], None] | None = None,
        block: bool = True,
    ) -> list[IngestResult]:
        """Ingest `files` into one record (an id, or a `NewRecord` made on the first added image).

        With `block=False` a full queue raises `Busy` instead of waiting. With `wait`, returns
        once the added images are embedded (or failed).
        """
        return self.add_many(
            collection, [(target, f) for f in files], wait=wait, on_result=on_result, block=block
        )

    def add_many(
        self,
        collection: Collection,
        items: Iterable[tuple[RecordTarget, IngestFile]],
        *,
        wait: bool = False,
        on_result: Callable[[IngestResult], None] | None = None,
        block: bool = True,
    ) -> list[IngestResult]:
        """Ingest each file into its own target; results come back in input order."""
        if self._embed_thread is None:
            raise RuntimeError("IngestPipeline.start() was not called")
        embedder = self.embedder_for(collection)
        records = _RecordTargets()
        futures: list[Future[tuple[IngestResult, _Prepared | None]]] = []
        window = max(2, self.settings.ingest_workers * 2)
        results: list[IngestResult] = []
        # Only the items' events: an item holds its model input until it is written, and a
        # long stream (a 300-page PDF) must not keep every one of them alive to the end.
        prepared: list[threading.Event] = []

        def collect(fut: Future[tuple[IngestResult, _Prepared | None]]) -> None:
            result, item = fut.result()
            results.append(result)
            if item is not None:
                prepared.append(item.done)
            if on_result is not None:
                on_result(result)

        if not block and self._queue.full():
            # Refuse the whole request up front rather than half of it.
            raise Busy("the ingest queue is full; retry later", retry_after_s=5)
        for target, file in items:
            self._begin()
            futures.append(
                self._pool.submit(
                    self._prepare_one,
                    collection,
                    embedder,
                    target,
                    file,
                    records,
                    block,
                )
            )
            # Bounded look-ahead keeps memory flat for huge directories.
            while len(futures) >= window:
                collect(futures.pop(0))
        for fut in futures:
            collect(fut)
        if wait:
            for done in prepared:
                done.wait()
        return results

    def add_document(
        self,
        collection: Collection,
        record: NewRecord,
        document: PdfDocument,
        *,
        source: str = "upload",
        wait: bool = False,
        on_result: Callable[[IngestResult], None] | None = None,
        block: bool = True,
    ) -> list[IngestResult]:
        """Ingest an opened PDF (`ingest.pdf.open_pdf`) as one new record, an image per page;
        closes it. Results come in page order, one per page.

        The record gets `page_count` and the document's metadata (`document`) beside the
        caller's own in its `extra`. A page whose rendering is stored already (a blank page, a
        cover shared with another document) is reported `duplicate` and stays that image: the
        record lists such pages in `extra["duplicate_pages"]` (page -> image id), so the
        document is still whole. When every page is stored already, no record is made.
        """
        with document:
            target = replace(
                record,
                extra={
                    **record.extra,
                    "page_count": document.page_count,
                    "document": {"filename": document.name, **document.metadata},
                },
            )
            check_record_fields(
                name=target.name,
                description=target.description,
                owner=target.owner,
                tags=target.tags,
                metadata=target.extra,
            )

            def pages() -> Iterable[tuple[RecordTarget, IngestFile]]:
                # Rendered as the pipeline's look-ahead asks for them, not all at once.
                for page in document.pages():
                    yield (
                        target,
                        IngestFile(
                            page.data,
                            filename=f"{document.name}#page={page.number}",
                            source=source,
                            page=page.number,
                            page_text=page.text,
                        ),
                    )

            if not block and self._queue.full():
                raise Busy("the ingest queue is full; retry later", retry_after_s=5)
            # Refused up front or not at all: pages outrun the model, so a document waits for
            # room in the queue rather than losing its later pages to a full one.
            results = self.add_many(collection, pages(), wait=wait, on_result=on_result)
        record_id = next((r.record_id for r in results if r.status == "added"), None)
        duplicates = {
            str(page): r.image_id
            for page, r in enumerate(results, start=1)
            if r.status == "duplicate" and r.image_id is not None
        }
        if record_id is not None and duplicates:
            with self.catalog.session() as session:
                row = session.get(Record, record_id)
                if row is not None:
                    row.extra = {**row.extra, "duplicate_pages": duplicates}
        return results

    def add_paths(
        self,
        collection: Collection,
        paths: Sequence[Path],
        *,
        owner: str,
        record_name: str | None = None,
        tags: Sequence[str] = (),
        source: str = "batch",
        wait: bool = True,
        on_result: Callable[[IngestResult], None] | None = None,
    ) -> list[IngestResult]:
        """Files and directories (recursive): one record per file named after its stem, or all
        images in one record named `record_name`. A PDF is always a record of its own (named
        after its stem), with a result per page; one that cannot be opened is one rejection."""
        found = list(iter_image_files(paths))
        files = [p for p in found if not is_pdf_path(p)]
        shared = NewRecord(name=record_name, owner=owner, tags=tuple(tags)) if record_name else None

        def items() -> Iterable[tuple[RecordTarget, IngestFile]]:
            for path in files:
                target: RecordTarget = shared or NewRecord(
                    name=path.stem, owner=owner, tags=tuple(tags), extra={"path": str(path)}
                )
                yield target, self._read_file(path, source)

        results = self.add_many(collection, items(), wait=wait, on_result=on_result)
        for path in (p for p in found if is_pdf_path(p)):
            record = NewRecord(
                name=path.stem, owner=owner, tags=tuple(tags), extra={"path": str(path)}
            )
            results += self.add_path_document(
                collection, record, path, source=source, wait=wait, on_result=on_result
            )
        return results

    def add_path_document(
        self,
        collection: Collection,
        record: NewRecord,
        path: Path,
        *,
        source: str = "batch",
        wait: bool = True,
        on_result: Callable[[IngestResult], None] | None = None,
    ) -> list[IngestResult]:
        """`add_document` for the PDF at `path`, read as PDFium needs it; a PDF that cannot be
        ingested at all comes back as one rejected result, with nothing stored."""
        try:
            document = open_pdf(path, self.settings, name=path.name)
        except LookalikeError as exc:
            result = IngestResult(str(path), "rejected", error_code=exc.code, reason=exc.message)
            if on_result is not None:
                on_result(result)
            return [result]
        return self.add_document(
            collection, record, document, source=source, wait=wait, on_result=on_result
        )

    def _read_file(self, path: Path, source: str) -> IngestFile:
        size = path.stat().st_size
        if size > self.settings.max_image_bytes:
            # Do not read a huge file into memory only to reject it.
            return IngestFile(b"", filename=str(path), source=f"oversize:{size}")
        return IngestFile(path.read_bytes(), filename=str(path), source=source)

    # --- stage 1: prepare --------------------------------------------------

    def _begin(self) -> None:
        with self._lock:
            self._in_flight += 1

    def _end(self) -> None:
        with self._lock:
            self._in_flight -= 1
            if not self._in_flight:
                self._lock.notify_all()

    def _prepare_one(
        self,
        collection: Collection,
        embedder: Embedder,
        target: RecordTarget,
        file: IngestFile,
        records: _RecordTargets,
        block: bool,
    ) -> tuple[IngestResult, _Prepared | None]:
        handed_off = False
        try:
            result, item = self._prepare(collection, embedder, target, file, records)
            if item is not None:
                try:
                    self._queue.put(item, block=block)
                except queue.Full:
                    self._fail_images([item.image_id], "the ingest queue was full")
                    raise Busy("the ingest queue is full; retry later", retry_after_s=5) from None
                handed_off = True
            return result, item
        except LookalikeError as exc:
            return (
                IngestResult(file.filename, "rejected", error_code=exc.code, reason=exc.message),
                None,
            )
        except Exception as exc:  # a bug or an I/O error must not kill the whole batch
            log.exception("ingest of %s failed", file.filename)
            return IngestResult(
                file.filename, "rejected", error_code="internal", reason=str(exc)
            ), None
        finally:
            if not handed_off:
                self._end()

    def _prepare(
        self,
        collection: Collection,
        embedder: Embedder,
        target: RecordTarget,
        file: IngestFile,
        records: _RecordTargets | None = None,
    ) -> tuple[IngestResult, _Prepared | None]:
        """Stage 1 for one file; `records` is shared by the files of one `add_many` call."""
        settings = self.settings
        records = records or _RecordTargets()
        if file.source.startswith("oversize:"):
            size = int(file.source.split(":", 1)[1])
            raise ImageTooLarge(
                f"{size} bytes is over the limit of {settings.max_image_bytes} bytes "
                "(LOOKALIKE_MAX_IMAGE_BYTES)"
            )
        with timed("ingest", "sha256"):
            sha = sha256_hex(file.data)
        with timed("ingest", "duplicate_check"), self.catalog.engine.begin() as conn:
            existing = conn.execute(
                select(Image.id, Image.record_id, Image.status).where(
                    Image.collection_id == collection.id, Image.sha256 == sha
                )
            ).first()
            if existing is not None and existing.status == "failed":
                # An earlier attempt failed: this upload is the retry.
                conn.execute(delete(Image).where(Image.id == existing.id))
        if existing is not None and existing.status != "failed":
            return IngestResult(file.filename, "duplicate", existing.id, existing.record_id), None
        self._scan_for_viruses(file, sha)

        decoded = self._prepare_pixels(file.data, collection, embedder)
        phash, tensor = decoded.phash, decoded.tensor
        crops = (
            self._crops(collection, embedder, decoded.image) if decoded.image is not None else None
        )

        image_id = new_id()
        job_id = new_id()
        blob_key = self.blobs.key_for(sha)
        row = {
            "id": image_id,
            "collection_id": collection.id,
            "sha256": sha,
            "phash": phash,
            "width": decoded.width,
            "height": decoded.height,
            "mime": decoded.mime,
            "bytes": len(file.data),
            "source": file.source,
            "filename": Path(file.filename).name if file.filename else None,
            "page": file.page,
            "blob_key": blob_key,
            "status": "pending",
            "created_at": utcnow(),
        }
        with records.lock:
            # The row and its job first, in one transaction: if we die after this, a restart
            # finds a pending job (and fails it clearly if the original never reached the store).
            # Core statements rather than ORM units of work: this runs once per image.
            try:
                with timed("ingest", "catalog_row"), self.catalog.engine.begin() as conn:
                    record = records.resolve(conn, collection, target)
                    row["record_id"] = record["id"]
                    conn.execute(insert(Image).values(row))
                    conn.execute(
                        insert(Job).values(
                            id=job_id,
                            kind="embed",
                            collection_id=collection.id,
                            image_id=image_id,
                            status="queued",
                            attempts=0,
                            params={},
                        )
                    )
                    if file.page_text is not None:
                        # With the image row, so keyword search never sees a page without text.
                        conn.execute(
                            insert(ImageText).values(
                                image_id=image_id,
                                source="text_layer",
                                collection_id=collection.id,
                                text=file.page_text.text,
                                words=file.page_text.words,
                                created_at=row["created_at"],
                            )
                        )
            except IntegrityError:
                # The same bytes were added concurrently: that one wins.
                with self.catalog.session() as session:
                    winner = find_image_by_sha256(session, collection.id, sha)
                if winner is None:
                    raise
                return IngestResult(file.filename, "duplicate", winner.id, winner.record_id), None
            records.created(target, record["id"])
        record_id = str(record["id"])
        payload = image_payload(
            collection,
            Record(id=record_id, owner=record["owner"], tags=record["tags"], extra=record["extra"]),
            Image(**row),
        )

        try:
            with timed("ingest", "blob_store"):
                self.blobs.put(file.data, content_type=decoded.mime)
        except Exception:
            # Refused as a whole (S3 is down, say): take back the row, its job, and a record
            # made for it alone, so that nothing waits on an original that is not there and
            # sending the file again is a new upload, not a `duplicate` of a pending image.
            self._take_back(image_id, target, record_id, records)
            raise
        item = _Prepared(
            image_id=image_id,
            collection_id=collection.id,
            # The model's own vector: with a fallback chain, not always the collection's.
            vector_name=embedder.vector_name,
            model_id=embedder.model_id,
            reembed_to=reembed_target(collection, embedder),
            embedder=embedder,
            tensor=tensor,
            payload={**payload, "model": embedder.model_id},
            crops=crops,
            crops_vector=crops_vector_name(collection.vector_name) if crops is not None else None,
            patches_vector=_patches_vector(collection, embedder),
        )
        return IngestResult(file.filename, "added", image_id, record_id, job_id=job_id), item

    def _take_back(
        self, image_id: str, target: RecordTarget, record_id: str, records: _RecordTargets
    ) -> None:
        """Undo `_prepare`'s catalog writes for an image whose original could not be stored.
        Should that fail too, the pending job stays, and `resume` fails it at the next start."""
        try:
            with records.lock:
                with self.catalog.engine.begin() as conn:
                    conn.execute(delete(Job).where(Job.image_id == image_id))
                    conn.execute(delete(ImageText).where(ImageText.image_id == image_id))
                    conn.execute(delete(Image).where(Image.id == image_id))
                    discarded = records.discard(conn, target, record_id)
                if discarded:
                    records.forget(target)
        except Exception:
            log.exception("could not take back image %s after its original was refused", image_id)

    def _scan_for_viruses(self, file: IngestFile, sha: str) -> None:
        """Refuse an infected file, and quarantine it, before the decoder or any store sees it.

        Raises `VirusScannerUnavailable` when a scan is configured but cannot be done.
        """
        if self.virus_scanner is None or not 0 < len(file.data) <= self.settings.max_image_bytes:
            return  # no scanner; or bytes the decoder refuses next without reading them
        with timed("ingest", "virus_scan"):
            signature = self.virus_scanner.scan(file.data)
        if signature is None:
            return
        path = quarantine(
            quarantine_dir(self.settings),
            file.data,
            sha,
            filename=file.filename,
            signature=signature,
            source=file.source,
        )
        log.warning("refused %s: clamd found %s; quarantined as %s", file.filename, signature, path)
        raise Infected(
            f"the file contains malware ({signature}, found by the virus scanner); it was refused "
            "and quarantined, and nothing was stored",
            signature=signature,
        )

    def _prepare_pixels(self, data: bytes, collection: Collection, embedder: Embedder) -> Prepared:
        """Decode, pHash and model input: in a worker process when there is a pool (and the
        collection needs no crops, which need the decoded image here), else in this thread."""
        with_crops = uses_crops(collection.vector_settings)
        args = (
            data,
            self._limits,
            self._working_size(embedder, collection),
            embedder.preprocess_config,
            embedder.name,
        )
        if self._processes is not None and not with_crops:
            with timed("ingest", "prepare_in_process"):
                return self._processes.prepare(*args)
        return prepare_pixels(*args, keep_image=with_crops)

    def _working_size(self, embedder: Embedder, collection: Collection) -> int:
        """Decode JPEGs only as large as the model input needs (shorter side >= its size).

        The decoder then scales by 1/2..1/8 itself, which is most of the decode cost saved; the
        pHash loses nothing from that size. Crops (a grid cell is 60% of the image) need twice
        that for the model to see them at about its own resolution.
        """
        if uses_crops(collection.vector_settings):
            return embedder.input_size * 2
        return embedder.input_size

    @staticmethod
    def _crops(
        collection: Collection, embedder: Embedder, image: PILImage
    ) -> NDArray[np.float16] | None:
        if not uses_crops(collection.vector_settings):
            return None
        with timed("ingest", "crops"):
            return crop_tensors(embedder, image).astype(np.float16)

    # --- stage 2: embed ----------------------------------------------------

    def _embed_loop(self) -> None:
        batch_size = self.settings.embed_batch_size
        while True:
            first = self._queue.get()
            if first is _STOP:
                self._written.put(_STOP)
                return
            self._unpaused.wait()
            batch: list[_Prepared] = [first]  # type: ignore[list-item]
            stop_after = False
            # Take what is already waiting, and give the preparers a moment to fill the batch.
            deadline = time.monotonic() + 0.02
            while len(batch) < batch_size:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop_after = True
                    break
                batch.append(nxt)  # type: ignore[arg-type]
            # Writing the results is handed to the writer thread, so the model starts on the
            # next batch at once instead of waiting for the vector engine and the catalog.
            self._written.put(self._infer(batch))
            if stop_after:
                self._written.put(_STOP)
                return

    def _infer(self, batch: list[_Prepared]) -> list[tuple[list[_Prepared], Vectors | Exception]]:
        groups: dict[tuple[str, str], list[_Prepared]] = {}
        for item in batch:
            groups.setdefault((item.collection_id, item.vector_name), []).append(item)
        out: list[tuple[list[_Prepared], Vectors | Exception]] = []
        for items in groups.values():
            # The crops ride in the same model calls as the images, in chunks of the usual size.
            inputs = [i.tensor[None] for i in items]
            inputs += [i.crops.astype(np.float32) for i in items if i.crops is not None]
            try:
                with timed("ingest", "embed"):
                    stacked = np.concatenate(inputs)
                    step = self.settings.embed_batch_size
                    if items[0].patches_vector is not None:
                        vectors = _embed_patches(items, stacked, step)
                    else:
                        vectors = np.concatenate(
                            [
                                items[0].embedder.embed_preprocessed(stacked[start : start + step])
                                for start in range(0, len(stacked), step)
                            ]
                        )
            except Exception as exc:
                fallen = self._fall_back(items, exc)
                if fallen is not None:
                    out.extend(fallen)
                    continue
                log.exception("embedding %d images failed", len(items))
                out.append((items, exc))
                continue
            start = len(items)
            for item in items:
                if item.crops is not None:
                    item.crop_vectors = vectors[start : start + len(item.crops)]
                    start += len(item.crops)
            out.append((items, vectors[: len(items)]))
        return out

    def _fall_back(
        self, items: list[_Prepared], exc: Exception
    ) -> list[tuple[list[_Prepared], Vectors | Exception]] | None:
        """The model of a collection with a fallback chain (`embedding.fallback`) failed: the
        images are prepared again, from their stored originals, for the next model of the
        chain that answers, and embedded now, into that model's own named vector. None when
        the collection has no chain or the failure is not the model's."""
        if not isinstance(exc, ModelUnavailable):
            return None
        with self.catalog.session() as session:
            collection = session.get(Collection, items[0].collection_id)
        if collection is None or not has_chain(collection):
            return None
        tried = {items[0].model_id}
        out: list[tuple[list[_Prepared], Vectors | Exception]] = []
        pending, error = items, exc
        while pending:
            log.warning(
                "%s failed for %d images (%s); trying the next model of the chain",
                pending[0].model_id,
                len(pending),
                error,
            )
            fresh: list[_Prepared] = []
            for item in pending:
                try:
                    again = self._reprepare(item.image_id, item.collection_id)
                except Exception as reason:
                    out.append(([item], reason))
                    continue
                if again is None or again.model_id in tried:
                    out.append(([item], error))  # deleted meanwhile, or no model left
                    continue
                again.done = item.done
                fresh.append(again)
            if not fresh:
                break
            tried.add(fresh[0].model_id)
            step = self.settings.embed_batch_size
            stacked = np.stack([i.tensor for i in fresh])
            try:
                with timed("ingest", "embed_fallback"):
                    vectors = np.concatenate(
                        [
                            fresh[0].embedder.embed_preprocessed(stacked[start : start + step])
                            for start in range(0, len(stacked), step)
                        ]
                    )
            except ModelUnavailable as failed:
                pending, error = fresh, failed
                continue
            except Exception as failed:
                out.append((fresh, failed))
                break
            out.append((fresh, vectors))
            break
        return out

    def _write_loop(self) -> None:
        while True:
            done = self._written.get()
            if done is _STOP:
                return
            try:
                for items, result in done:
                    try:
                        self._write(items, result)
                    except Exception as exc:
                        # The writer must outlive any one batch: a dead writer would leave
                        # every later upload waiting for ever.
                        log.exception("writing %d embedded images failed", len(items))
                        with contextlib.suppress(Exception):
                            self._fail_images([i.image_id for i in items], f"writing failed: {exc}")
            finally:
                for items, _ in done:
                    for item in items:
                        item.done.set()
                        self._end()
            if self._queue.empty() and self._written.empty():
                self._after_burst()

    def _write(self, items: list[_Prepared], result: Vectors | Exception) -> None:
        ids = [i.image_id for i in items]
        collection_id = items[0].collection_id
        if isinstance(result, Exception):
            self._fail_images(ids, f"embedding failed: {result}")
            return
        try:
            with timed("ingest", "vector_upsert"):
                self.vectors.upsert(
                    collection_id,
                    [
                        Point(id=i.image_id, vectors=_vectors_of(i, vec), payload=i.payload)
                        for i, vec in zip(items, result, strict=True)
                    ],
                )
        except VectorStoreUnavailable as exc:
            self._wait_for_vector_store(items, exc)
            return
        except Exception as exc:
            log.exception("storing %d vectors failed", len(items))
            self._fail_images(ids, f"storing the vector failed: {exc}")
            return
        self._retry_delay_s = _OUTAGE_RETRY_FIRST_S
        now = utcnow()
        stages = self.enrichment.stage_names if self.enrichment is not None else []
        with timed("ingest", "catalog_embedded"), self.catalog.engine.begin() as conn:
            conn.execute(
                update(Image)
                .where(Image.id.in_(ids))
                .values(status="embedded", error=None, model_id=items[0].model_id, embedded_at=now)
            )
            conn.execute(
                update(Job)
                .where(Job.image_id.in_(ids), Job.kind == "embed")
                .values(status="done", updated_at=now)
            )
            # A resumed image may have had its stages queued already: queue them afresh, for
            # the images that still exist (one deleted meanwhile has nothing to enrich, and
            # its stage rows would break the foreign key). The UPDATE above holds their rows.
            conn.execute(delete(ImageStage).where(ImageStage.image_id.in_(ids)))
            alive = set(conn.scalars(select(Image.id).where(Image.id.in_(ids))))
            for image_id in ids:
                if image_id in alive:
                    StageQueue.enqueue(conn, image_id, collection_id, stages)
            for item in items:
                if item.reembed_to is not None and item.image_id in alive:
                    enqueue_reembed(
                        conn, item.image_id, collection_id, item.model_id, item.reembed_to
                    )
        gone = [i for i in ids if i not in alive]
        if gone:
            # Deleted while they were being embedded: their vectors must not outlive them.
            with contextlib.suppress(Exception):
                self.vectors.delete(collection_id, gone)
        self._touched.add(collection_id)
        if self.enrichment is not None:
            self.enrichment.wake()

    def _after_burst(self) -> None:
        """The queue ran dry: a good moment for index maintenance."""
        touched, self._touched = self._touched, set()
        for collection_id in touched:
            try:
                self.vectors.maybe_build_index(collection_id)
            except Exception:
                log.exception("index maintenance of %s failed", collection_id)

    def _fail_images(self, ids: Sequence[str], error: str) -> None:
        now = utcnow()
        with self.catalog.session() as session:
            session.execute(
                update(Image).where(Image.id.in_(ids)).values(status="failed", error=error)
            )
            session.execute(
                update(Job)
                .where(Job.image_id.in_(ids), Job.kind == "embed")
                .values(status="failed", error=error, updated_at=now)
            )

    # --- vector store outages ------------------------------------------------

    def _wait_for_vector_store(self, items: list[_Prepared], exc: VectorStoreUnavailable) -> None:
        """The vector store is down: nothing is lost. The images stay pending with their embed
        jobs queued in the catalog (a restart's `resume` would pick them up), and are retried
        from their stored originals once the back-off has passed."""
        ids = [i.image_id for i in items]
        log.warning("vector store down; %d images wait for it: %s", len(ids), exc)
        with self.catalog.session() as session:
            session.execute(
                update(Image)
                .where(Image.id.in_(ids))
                .values(error=f"waiting for the vector store: {exc}")
            )
            session.execute(
                update(Job)
                .where(Job.image_id.in_(ids), Job.kind == "embed")
                .values(status="queued", error=str(exc), attempts=Job.attempts + 1)
            )
        with self._lock:
            self._waiting.update((i.image_id, i.collection_id) for i in items)
            if self._retry_timer is None and self._embed_thread is not None:
                self._retry_timer = threading.Timer(self._retry_delay_s, self._retry_waiting)
                self._retry_timer.daemon = True
                self._retry_timer.start()
                self._retry_delay_s = min(self._retry_delay_s * 2, _OUTAGE_RETRY_MAX_S)

    def _retry_waiting(self) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, {}
            self._retry_timer = None
        self._requeue(waiting.items())

    @property
    def waiting_for_vector_store(self) -> int:
        """Images stored and embedded once, waiting for the vector store to come back."""
        with self._lock:
            return len(self._waiting)

    # --- restart ------------------------------------------------------------

    def resume(self) -> int:
        """Re-queue embed jobs left queued or running by an earlier process. Returns their count."""
        with self.catalog.session() as session:
            rows = session.execute(
                select(Job.image_id, Job.collection_id).where(
                    Job.kind == "embed", Job.status.in_(("queued", "running"))
                )
            ).all()
        count = self._requeue(
            (image_id, collection_id)
            for image_id, collection_id in rows
            if image_id is not None and collection_id is not None
        )
        if count:
            log.info("resumed %d pending images", count)
        return count

    def _requeue(self, jobs: Iterable[tuple[str, str]]) -> int:
        """Prepare (image id, collection id) pairs again from their stored originals and queue
        them for embedding; returns how many were queued."""
        count = 0
        for image_id, collection_id in jobs:
            self._begin()
            try:
                item = self._reprepare(image_id, collection_id)
            except Exception as exc:
                log.warning("cannot resume image %s: %s", image_id, exc)
                self._fail_images([image_id], f"could not resume: {exc}")
                self._end()
                continue
            if item is None:
                self._end()
                continue
            self._queue.put(item)
            count += 1
        return count

    def _reprepare(self, image_id: str, collection_id: str) -> _Prepared | None:
        with self.catalog.session() as session:
            image = session.get(Image, image_id)
            collection = session.get(Collection, collection_id)
            if image is None or collection is None:
                return None
            record = session.get(Record, image.record_id)
            assert record is not None
            if image.blob_key is None or not self.blobs.exists(image.blob_key):
                raise NotFound("the original was never stored; upload the image again")
            data = self.blobs.get(image.blob_key)
            payload = image_payload(collection, record, image)
        embedder = self.embedder_for(collection)
        decoded = prepare_pixels(
            data,
            # It was accepted once; the size limit may have changed since.
            replace(self._limits, max_bytes=max(self._limits.max_bytes, len(data))),
            self._working_size(embedder, collection),
            embedder.preprocess_config,
            embedder.name,
            keep_image=uses_crops(collection.vector_settings),
        )
        crops = (
            self._crops(collection, embedder, decoded.image) if decoded.image is not None else None
        )
        return _Prepared(
            image_id=image_id,
            collection_id=collection_id,
            # The model's own vector: with a fallback chain, not always the collection's.
            vector_name=embedder.vector_name,
            model_id=embedder.model_id,
            reembed_to=reembed_target(collection, embedder),
            embedder=embedder,
            tensor=decoded.tensor,
            payload={**payload, "model": embedder.model_id},
            crops=crops,
            crops_vector=crops_vector_name(collection.vector_name) if crops is not None else None,
            patches_vector=_patches_vector(collection, embedder),
        )


def _vectors_of(item: _Prepared, vector: NDArray[np.float32]) -> dict[str, NDArray[np.float32]]:
    """The named vectors of one point: the global one, and the crops' multivector if any."""
    vectors = {item.vector_name: vector}
    if item.crops_vector is not None and item.crop_vectors is not None:
        vectors[item.crops_vector] = item.crop_vectors
    if item.patches_vector is not None and item.patch_vectors is not None:
        vectors[item.patches_vector] = item.patch_vectors
    return vectors


def _patches_vector(collection: Collection, embedder: Embedder) -> str | None:
    """Where an image's patch vectors go: a late-interaction collection's multivector, when its
    own model embeds it (not a one-vector model standing in for it); else None."""
    if not embedder.multivector or embedder.vector_name != collection.vector_name:
        return None
    return patches_vector_for(collection.vector_name, collection.vector_settings)


def _embed_patches(items: list[_Prepared], stacked: NDArray[np.float32], step: int) -> Vectors:
    """A late-interaction model's pooled vectors of `items` (one input each: such collections
    have no crops), each item's patch vectors set aside on it."""
    pooled: list[Vectors] = []
    for start in range(0, len(stacked), step):
        vectors, patches = items[0].embedder.embed_patches(stacked[start : start + step])
        pooled.append(vectors)
        for item, rows in zip(items[start : start + step], patches, strict=True):
            item.patch_vectors = rows
    return np.concatenate(pooled)


def _yield_to_model() -> None:
    """Lower this prepare thread's scheduling priority (Linux: threads are tasks).

    The model's inference threads work in lock-step: when one is pre-empted by a prepare thread,
    the others wait for it. Niced, the prepare work fills the gaps between inference instead.
    """
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PREPARE_NICENESS)


def iter_image_files(paths: Iterable[Path]) -> Iterable[Path]:
    """Image files and documents (PDFs) among `paths`, directories walked recursively in name
    order.

    The suffix only picks candidates; the content is what gets validated.
    """
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES | DOCUMENT_SUFFIXES:
                    yield child
        elif path.is_file():
            yield path
        else:
            raise NotFound(f"no such file or directory: {path}")
