"""Similarity search by uploaded image, by stored image id or by text."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from lookalike.api.deps import Caller, Runtime
from lookalike.api.forms import FILE_SCHEMA, openapi_body, read_form_in_memory
from lookalike.api.schemas import HitOut, SearchRequest, SearchResponse
from lookalike.core.errors import InvalidInput
from lookalike.records.service import find_collection
from lookalike.search.service import search_page, unscored, unscored_notes
from lookalike.serving.bodies import is_multipart, json_body, json_field, validate

router = APIRouter(prefix="/api/search", tags=["search"])

_FORM_FIELDS = {
    "collection": {"type": "string"},
    "file": FILE_SCHEMA,
    "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
    "offset": {"type": "integer", "minimum": 0},
    "score_threshold": {"type": "number"},
    "filter": {"type": "string", "description": "JSON object, see SearchFilters"},
    "include_payload": {"type": "boolean"},
    "phash_gate": {"type": "integer", "minimum": 0, "maximum": 11},
    "use_crops": {"type": "boolean"},
}


@router.post(
    "/similar",
    openapi_extra=openapi_body(
        form=_FORM_FIELDS,
        required=["collection", "file"],
        json_model=SearchRequest,
    ),
)
async def similar(request: Request, rt: Runtime, caller: Caller) -> SearchResponse:
    """Look-alikes of an uploaded `file` (multipart), or of `image_id` / `text_query` (JSON); a
    text is matched by keyword and vector (`mode`, hybrid by default)."""
    image_bytes: bytes | None = None
    if is_multipart(request):
        form = await read_form_in_memory(request, max_files=1, max_fields=16)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("file: attach the query image as a multipart field named 'file'")
        raw: dict[str, object] = {
            k: v for k, v in form.items() if k != "file" and isinstance(v, str) and v != ""
        }
        if "filter" in raw:
            raw["filter"] = json_field(str(raw["filter"]), "filter")
        for flag in ("include_payload", "use_crops", "include_weaker"):
            if flag in raw:
                raw[flag] = str(raw[flag]).lower() in ("1", "true", "yes", "on")
        body = validate(SearchRequest, raw)
        image_bytes = await upload.read()
    else:
        body = await json_body(request, SearchRequest)

    def run() -> SearchResponse:
        collection = find_collection(rt, caller.tenant, body.collection)
        page = search_page(
            rt,
            caller.tenant,
            collection,
            image_bytes=image_bytes,
            image_id=body.image_id,
            text=body.text_query,
            limit=body.limit,
            offset=body.offset,
            score_threshold=body.score_threshold,
            include_weaker=body.include_weaker,
            filters=body.filter,
            include_payload=body.include_payload,
            phash_gate=body.phash_gate,
            use_crops=body.use_crops,
            mode=body.mode or ("hybrid" if body.text_query is not None else None),
        )
        missing = unscored(rt, collection, body.filter)
        return SearchResponse(
            hits=[HitOut.model_validate(h) for h in page.hits],
            collection=collection.id,
            model_id=collection.model_id,
            more=page.more,
            cutoff=page.cutoff,
            weaker=page.weaker,
            unscored=missing,
            mode=page.mode,
            notes=[*page.notes, *unscored_notes(missing)],
        )

    return await run_in_threadpool(run)
