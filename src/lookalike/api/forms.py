"""The API's side of request bodies: how its hand-read bodies appear in the OpenAPI document,
its uploads as `IngestFile`s, and tags as users write them.

Reading and parsing bodies (content types, JSON, limits) is `lookalike.serving.bodies`, which the
embedding service shares. `openapi_body` stays here: its models are gathered per process for one
app's document, and the API is the only app that documents hand-read bodies.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import aclosing
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from lookalike.core.errors import InvalidInput
from lookalike.ingest.pipeline import IngestFile
from lookalike.serving.bodies import json_field, read_files

MAX_FILES = 256

FILE_SCHEMA: dict[str, Any] = {"type": "string", "format": "binary"}
FILES_SCHEMA: dict[str, Any] = {"type": "array", "items": FILE_SCHEMA}

# Models that hand-written bodies refer to by `$ref`; FastAPI only lists the models its routes
# declare, so `add_body_schemas` adds these to the document's components.
_BODY_MODELS: dict[str, type[BaseModel]] = {}


def openapi_body(
    *,
    form: dict[str, Any] | None = None,
    required: Sequence[str] = (),
    json_schema: dict[str, Any] | None = None,
    json_model: type[BaseModel] | None = None,
    binary: bool = False,
) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its body itself (multipart, JSON or raw bytes).

    `json_model` documents the JSON body as a reference to that model's component, nested
    models included (needs `add_body_schemas` on the app)."""
    if json_model is not None:
        _BODY_MODELS[json_model.__name__] = json_model
        json_schema = {"$ref": f"#/components/schemas/{json_model.__name__}"}
    content: dict[str, Any] = {}
    if json_schema is not None:
        content["application/json"] = {"schema": json_schema}
    if form is not None:
        content["multipart/form-data"] = {
            "schema": {"type": "object", "required": list(required), "properties": form}
        }
    if binary:
        content["application/octet-stream"] = {"schema": FILE_SCHEMA}
    return {"requestBody": {"required": True, "content": content}}


def add_body_schemas(app: FastAPI) -> None:
    """Add the models `openapi_body(json_model=...)` refers to to `app`'s OpenAPI components."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            _, defs = models_json_schema(
                [(m, "validation") for m in _BODY_MODELS.values()],
                ref_template="#/components/schemas/{model}",
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in defs.get("$defs", {}).items():
                schemas.setdefault(name, schema)
        return app.openapi_schema or build()

    app.openapi = openapi  # type: ignore[method-assign]


async def read_uploads(files: list[UploadFile], *, source: str = "upload") -> list[IngestFile]:
    """The uploaded `files` as `IngestFile`s, at most `MAX_FILES` of them."""
    data = await read_files(files, max_files=MAX_FILES)
    return [
        IngestFile(content, filename=f.filename, source=source)
        for f, content in zip(files, data, strict=True)
    ]


def split_tags(values: list[str]) -> list[str]:
    """Tags given as repeated fields, comma-separated, or a JSON list."""
    tags: list[str] = []
    for value in values:
        value = value.strip()
        if value.startswith("["):
            parsed = json_field(value, "tags")
            if not isinstance(parsed, list) or not all(isinstance(t, str) for t in parsed):
                raise InvalidInput("tags: a JSON list of strings is expected")
            tags.extend(parsed)
        else:
            tags.extend(t for t in value.split(","))
    return sorted({t.strip() for t in tags if t.strip()})


class _InMemoryMultiPartParser(MultiPartParser):
    # Starlette spools each file over 1 MiB to a temporary file on disk; 0 never rolls over.
    # The body is capped by the request size limit and every file is read into memory for
    # the ingest anyway, so this costs no more memory and keeps originals off the disk.
    spool_max_size = 0


async def read_form_in_memory(request: Request, *, max_files: int, max_fields: int) -> FormData:
    """The multipart form of `request`, its files held in memory only (the caller closes it):
    with blobs on S3, no original may touch the API's disk, not even a temporary file."""
    try:
        async with aclosing(request.stream()) as stream:
            parser = _InMemoryMultiPartParser(
                request.headers, stream, max_files=max_files, max_fields=max_fields
            )
            return await parser.parse()
    except MultiPartException as exc:
        # What `Request.form` answers.
        raise HTTPException(status_code=400, detail=exc.message) from None
