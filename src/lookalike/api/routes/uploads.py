"""Presigned uploads, ingest by key, batch upload, and the status of ingest jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from pydantic import AliasPath, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from lookalike.api.deps import Caller, Runtime
from lookalike.api.forms import (
    FILES_SCHEMA,
    openapi_body,
    read_form_in_memory,
    read_uploads,
    split_tags,
)
from lookalike.api.schemas import IngestResultOut, RecordCreate, Strict
from lookalike.catalog import Collection
from lookalike.catalog.repository import get_job
from lookalike.catalog.repository import list_jobs as list_jobs_of
from lookalike.core.errors import InvalidInput, NotFound
from lookalike.dedup.verdicts import with_verdicts
from lookalike.ingest.pdf import is_pdf, open_pdf
from lookalike.ingest.pipeline import (
    IngestFile,
    IngestResult,
    NewRecord,
    RecordTarget,
    raise_if_unavailable,
)
from lookalike.ingest.uploads import discard_upload, presign_upload, receive_upload, take_upload
from lookalike.records import service as svc
from lookalike.serving.bodies import is_multipart

router = APIRouter(tags=["uploads"])


class PresignRequest(Strict):
    collection: str = Field(description="Collection id or name the upload is for.")
    filename: str | None = Field(default=None, max_length=1024)
    size: int | None = Field(
        default=None,
        ge=1,
        description="The number of bytes that will be sent. An image over the limit is refused "
        "now (413), and the URL then takes exactly this many bytes.",
    )


class PresignOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    key: str
    url: str
    method: str
    expires_at: datetime
    max_bytes: int
    headers: dict[str, str] = Field(
        default_factory=dict, description="Headers to send with the upload, besides its body's."
    )


class IngestRequest(Strict):
    key: str = Field(description="The key /api/images/presign returned.")
    record_id: str | None = Field(default=None, description="Add the image to this record...")
    record: RecordCreate | None = Field(
        default=None,
        description="...or create this record. A PDF is always a new record, an image per "
        "page: named after the upload's filename unless `record` names it.",
    )


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    kind: str
    status: str
    error: str | None
    image_id: str | None
    collection_id: str | None
    created_at: datetime
    updated_at: datetime
    result: dict[str, Any] | None = Field(
        default=None,
        validation_alias=AliasPath("params", "result"),
        description="What a finished background job (a sweep, a recompute) found.",
    )


@router.post("/api/images/presign", status_code=status.HTTP_201_CREATED)
def presign(body: PresignRequest, rt: Runtime, caller: Caller) -> PresignOut:
    """A signed, expiring URL to PUT one image to; then POST /api/images/ingest with its key.

    With blobs on S3 the URL is S3's own: the bytes go straight to the bucket."""
    collection = svc.find_collection(rt, caller.tenant, body.collection)
    presigned = presign_upload(
        rt.settings, rt.blobs, caller, collection.id, filename=body.filename, size=body.size
    )
    return PresignOut.model_validate(presigned)


@router.put(
    "/api/uploads/{token}",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=openapi_body(binary=True),
)
async def upload(token: str, request: Request, rt: Runtime) -> dict[str, str]:
    """The target of a presigned URL: the signature in the path is the authorisation."""
    key = await receive_upload(rt.settings, rt.blobs, token, request.stream())
    return {"key": key}


def _results(
    rt: Runtime, collection: Collection, items: list[tuple[RecordTarget, IngestFile]]
) -> list[IngestResult]:
    results = rt.ingest.add_many(collection, items, block=False)
    raise_if_unavailable(results)
    # Not waited for: a re-upload names the record it is in; an added image's verdict comes on
    # the image once its duplicate stage has run.
    return with_verdicts(rt.enrichment, rt.catalog, results, run=False)


@router.post("/api/images/ingest", status_code=status.HTTP_202_ACCEPTED)
def ingest(body: IngestRequest, rt: Runtime, caller: Caller) -> IngestResultOut:
    """Ingest an uploaded image. Validation is immediate; embedding runs in the background
    (follow `job_id` at GET /api/jobs/{id})."""
    staged = take_upload(rt.settings, rt.blobs, caller.tenant, body.key)
    with rt.catalog.session() as session:
        collection = session.get(Collection, staged.collection_id)
    if collection is None or collection.tenant != caller.tenant:
        raise NotFound("the collection of this upload no longer exists")
    if is_pdf(staged.data):
        result = _ingest_document(rt, caller, collection, body, staged.data, staged.filename)
        discard_upload(rt.settings, rt.blobs, body.key)
        return IngestResultOut.model_validate(result)
    if (body.record_id is None) == (body.record is None):
        raise InvalidInput("give exactly one of record_id or record")
    target: RecordTarget
    if body.record_id is not None:
        target = svc.find_record(rt, caller.tenant, body.record_id).id
    else:
        assert body.record is not None
        target = NewRecord(
            name=body.record.name,
            owner=body.record.owner or caller.user,
            description=body.record.description,
            tags=tuple(body.record.tags),
            extra=body.record.metadata,
        )
    # A 503 (queue full, scanner down) leaves the upload staged for the retry.
    (result,) = _results(
        rt, collection, [(target, IngestFile(staged.data, staged.filename, "api"))]
    )
    discard_upload(rt.settings, rt.blobs, body.key)
    return IngestResultOut.model_validate(result)


def _ingest_document(
    rt: Runtime,
    caller: Caller,
    collection: Collection,
    body: IngestRequest,
    data: bytes,
    filename: str | None,
) -> IngestResult:
    """An uploaded PDF as a new record; the result of its first added page (or the first page's
    when none was added) stands for the document: its `record_id` is the record."""
    if body.record_id is not None:
        raise InvalidInput("record_id: a PDF is a record of its own; give `record` or neither")
    name = filename.rsplit("/", 1)[-1] if filename else "document.pdf"
    document = open_pdf(data, rt.settings, name=name)
    spec = body.record or RecordCreate(name=_stem(filename))
    record = NewRecord(
        name=spec.name,
        owner=spec.owner or caller.user,
        description=spec.description,
        tags=tuple(spec.tags),
        extra=spec.metadata,
    )
    results = rt.ingest.add_document(collection, record, document, source="api", block=False)
    raise_if_unavailable(results)
    return next((r for r in results if r.status == "added"), results[0])


@router.post(
    "/api/images/batch",
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra=openapi_body(
        form={
            "collection": {"type": "string"},
            "record_name": {"type": "string", "description": "one record for all the files"},
            "tags": {"type": "string"},
            "images": FILES_SCHEMA,
        },
        required=["collection", "images"],
    ),
)
async def batch(request: Request, rt: Runtime, caller: Caller) -> list[IngestResultOut]:
    """Many images in one request: one record per file (named after it) or one `record_name`."""
    if not is_multipart(request):
        raise InvalidInput("send multipart/form-data with 'collection' and 'images' fields")
    form = await read_form_in_memory(request, max_files=256, max_fields=64)
    try:
        return await _batch(form, rt, caller)
    finally:
        await form.close()


async def _batch(form: FormData, rt: Runtime, caller: Caller) -> list[IngestResultOut]:
    collection_ref = form.get("collection")
    if not isinstance(collection_ref, str) or not collection_ref:
        raise InvalidInput("collection: required")
    files = [f for f in form.getlist("images") if isinstance(f, UploadFile)]
    if not files:
        raise InvalidInput("images: attach at least one file")
    uploads = await read_uploads(files, source="batch")
    tags = tuple(split_tags([str(t) for t in form.getlist("tags")]))
    record_name = form.get("record_name")
    shared = (
        NewRecord(name=record_name, owner=caller.user, tags=tags)
        if isinstance(record_name, str) and record_name.strip()
        else None
    )

    def run() -> list[IngestResult]:
        collection = svc.find_collection(rt, caller.tenant, collection_ref)
        items: list[tuple[RecordTarget, IngestFile]] = [
            (shared or NewRecord(name=_stem(f.filename), owner=caller.user, tags=tags), f)
            for f in uploads
        ]
        return _results(rt, collection, items)

    return [IngestResultOut.model_validate(r) for r in await run_in_threadpool(run)]


def _stem(filename: str | None) -> str:
    if not filename:
        return "untitled"
    name = filename.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] or name


@router.get("/api/jobs/{job_id}")
def read_job(job_id: str, rt: Runtime, caller: Caller) -> JobOut:
    with rt.catalog.session() as session:
        return JobOut.model_validate(get_job(session, caller.tenant, job_id))


@router.get("/api/collections/{collection_id}/jobs")
def list_jobs(
    collection_id: str,
    rt: Runtime,
    caller: Caller,
    status_: Annotated[
        str | None, Query(alias="status", pattern="^(queued|running|done|failed)$")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[JobOut]:
    collection = svc.find_collection(rt, caller.tenant, collection_id)
    with rt.catalog.session() as session:
        jobs = list_jobs_of(session, collection.id, status=status_, limit=limit)
        return [JobOut.model_validate(j) for j in jobs]
