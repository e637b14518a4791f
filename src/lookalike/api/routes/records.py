"""Records: a name, a description, tags and several images, in a collection.

A PDF sent as the one file of a new record makes the record the document: an image per page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from lookalike.api.deps import Caller, Runtime
from lookalike.api.forms import (
    FILES_SCHEMA,
    openapi_body,
    read_form_in_memory,
    read_uploads,
    split_tags,
)
from lookalike.api.schemas import (
    MAX_OFFSET,
    IngestResultOut,
    RecordCreate,
    RecordCreated,
    RecordOut,
    RecordPage,
    RecordUpdate,
)
from lookalike.catalog import Collection, Record
from lookalike.core.errors import Conflict, InvalidInput, NoImageAdded
from lookalike.dedup.verdicts import with_verdicts
from lookalike.ingest.pdf import is_pdf, open_pdf
from lookalike.ingest.pipeline import IngestFile, IngestResult, NewRecord, raise_if_unavailable
from lookalike.records import service as svc
from lookalike.serving.bodies import is_multipart, json_body, validate

router = APIRouter(tags=["records"])

_MULTIPART_OR_JSON = openapi_body(
    form={
        "name": {"type": "string"},
        "description": {"type": "string"},
        "tags": {"type": "string", "description": "comma-separated or JSON list"},
        "owner": {"type": "string"},
        "images": FILES_SCHEMA,
    },
    required=["name"],
    json_schema=RecordCreate.model_json_schema(),
)


@router.post(
    "/api/collections/{collection_id}/records",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_MULTIPART_OR_JSON,
)
async def create_record(
    collection_id: str,
    request: Request,
    rt: Runtime,
    caller: Caller,
    wait: Annotated[
        bool,
        Query(
            description="Return once the images are searchable, each with its duplicate "
            "verdict (`duplicate`: near-exact copy of, or similar to, which record's image)."
        ),
    ] = False,
) -> RecordCreated:
    """Create a record, with its images in the same multipart request or added later."""
    collection = await run_in_threadpool(svc.find_collection, rt, caller.tenant, collection_id)
    if is_multipart(request):
        form = await read_form_in_memory(request, max_files=256, max_fields=64)
        files = [f for f in form.getlist("images") if isinstance(f, UploadFile)]
        if not form.get("name"):
            raise InvalidInput("name: a record needs a name")
        body = validate(
            RecordCreate,
            {
                "name": str(form.get("name")),
                "description": str(form.get("description") or ""),
                "tags": split_tags([str(t) for t in form.getlist("tags")]),
                "owner": str(form["owner"]) if form.get("owner") else None,
            },
        )
        uploads = await read_uploads(files)
    else:
        body = await json_body(request, RecordCreate)
        uploads = []
    if any(is_pdf(u.data) for u in uploads):
        if len(uploads) != 1:
            raise InvalidInput(
                "images: a PDF makes the record a document, an image per page; send it as the "
                "record's only file"
            )
        document = NewRecord(
            name=body.name,
            owner=body.owner or caller.user,
            description=body.description,
            tags=tuple(sorted(set(body.tags))),
            extra=body.metadata,
        )
        record, results = await run_in_threadpool(
            _create_document, rt, collection, document, uploads[0], wait
        )
    else:
        record, results = await run_in_threadpool(
            lambda: svc.create_record_with_images(
                rt,
                collection,
                uploads,
                name=body.name,
                owner=body.owner or caller.user,
                description=body.description,
                tags=body.tags,
                extra=body.metadata,
                wait=wait,
            )
        )
    if wait:
        results = await run_in_threadpool(with_verdicts, rt.enrichment, rt.catalog, results)
    return RecordCreated(
        record=RecordOut.model_validate(record),
        results=[IngestResultOut.model_validate(r) for r in results],
    )


def _create_document(
    rt: Runtime, collection: Collection, record: NewRecord, upload: IngestFile, wait: bool
) -> tuple[Record, list[IngestResult]]:
    """The record of an uploaded PDF, made with its first added page; like a record with
    images, none is made when no page can be added."""
    document = open_pdf(upload.data, rt.settings, name=upload.filename or "document.pdf")
    results = rt.ingest.add_document(
        collection, record, document, source=upload.source, wait=wait, block=False
    )
    raise_if_unavailable(results)
    added = next((r for r in results if r.status == "added" and r.record_id), None)
    if added is None or added.record_id is None:
        if all(r.status == "duplicate" for r in results):
            raise Conflict("no record was made: every page of the PDF is in the collection already")
        reasons = "; ".join(f"{r.filename}: {r.reason}" for r in results if r.reason)
        raise NoImageAdded(f"no record was made: none of the pages could be added ({reasons})")
    return svc.find_record(rt, collection.tenant, added.record_id), results


@router.get("/api/collections/{collection_id}/records")
def list_records(
    collection_id: str,
    rt: Runtime,
    caller: Caller,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    q: Annotated[str | None, Query(max_length=200, description="Name contains")] = None,
    owner: Annotated[str | None, Query(max_length=128)] = None,
    tag: Annotated[str | None, Query(max_length=200, description="Has this tag")] = None,
) -> RecordPage:
    collection = svc.find_collection(rt, caller.tenant, collection_id)
    rows, total = svc.list_records(
        rt, collection, limit=limit, offset=offset, query=q, owner=owner, tag=tag
    )
    return RecordPage(
        items=[RecordOut.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )


@router.get("/api/records/{record_id}")
def get_record(record_id: str, rt: Runtime, caller: Caller) -> RecordOut:
    record = svc.find_record(rt, caller.tenant, record_id)
    return RecordOut.model_validate(record)


@router.patch("/api/records/{record_id}")
def update_record(record_id: str, body: RecordUpdate, rt: Runtime, caller: Caller) -> RecordOut:
    record = svc.update_record(
        rt,
        caller.tenant,
        record_id,
        name=body.name,
        description=body.description,
        tags=body.tags,
        extra=body.metadata,
        owner=body.owner,
    )
    return RecordOut.model_validate(record)


@router.delete("/api/records/{record_id}/images/{image_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_image(record_id: str, image_id: str, rt: Runtime, caller: Caller) -> None:
    svc.remove_image(rt, caller.tenant, record_id, image_id)


@router.delete("/api/records/{record_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_record(record_id: str, rt: Runtime, caller: Caller) -> None:
    svc.delete_record(rt, caller.tenant, record_id)


@router.post(
    "/api/records/{record_id}/images",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=openapi_body(form={"images": FILES_SCHEMA}, required=["images"]),
)
async def add_images(
    record_id: str,
    request: Request,
    rt: Runtime,
    caller: Caller,
    wait: Annotated[
        bool,
        Query(
            description="Return once the images are searchable, each with its duplicate "
            "verdict (`duplicate`: near-exact copy of, or similar to, which record's image)."
        ),
    ] = False,
) -> list[IngestResultOut]:
    record = await run_in_threadpool(svc.find_record, rt, caller.tenant, record_id)
    if not is_multipart(request):
        raise InvalidInput("send the images as multipart/form-data fields named 'images'")
    form = await read_form_in_memory(request, max_files=256, max_fields=64)
    files = [f for f in form.getlist("images") if isinstance(f, UploadFile)]
    if not files:
        raise InvalidInput("no files in the 'images' field")
    uploads = await read_uploads(files)
    if any(is_pdf(u.data) for u in uploads):
        raise InvalidInput(
            "images: a PDF is a record of its own; create one with POST "
            "/api/collections/{collection_id}/records"
        )
    collection = await run_in_threadpool(
        svc.find_collection, rt, caller.tenant, record.collection_id
    )
    results = await run_in_threadpool(
        lambda: rt.ingest.add(collection, record.id, uploads, wait=wait, block=False)
    )
    if wait:
        results = await run_in_threadpool(with_verdicts, rt.enrichment, rt.catalog, results)
    return [IngestResultOut.model_validate(r) for r in results]
