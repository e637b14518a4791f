"""Reading bodies that may come as JSON or as multipart form data."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.datastructures import UploadFile

from lookalike.api.errors import validation_message
from lookalike.api.limits import MAX_JSON_DEPTH, json_depth
from lookalike.core.errors import InvalidInput, LookalikeError
from lookalike.ingest.pipeline import IngestFile

MAX_FILES = 256

M = TypeVar("M", bound=BaseModel)


class UnsupportedMediaType(LookalikeError):
    code = "unsupported_media_type"
    status = 415


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


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("multipart/form-data")


async def json_body(request: Request, model: type[M]) -> M:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("application/json"):
        raise UnsupportedMediaType(
            f"send application/json or multipart/form-data, not {content_type or 'no content type'}"
        )
    try:
        raw = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidInput("the body is not valid JSON") from None
    return validate(model, raw)


def validate(model: type[M], raw: Any) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput(validation_message(exc.errors())) from None


async def read_uploads(files: list[UploadFile], *, source: str = "upload") -> list[IngestFile]:
    if len(files) > MAX_FILES:
        raise InvalidInput(f"at most {MAX_FILES} files per request")
    out = []
    for f in files:
        out.append(IngestFile(await f.read(), filename=f.filename, source=source))
    return out


def json_field(text: str, field: str) -> Any:
    """A form field that holds JSON, parsed under the same depth limit as a JSON body."""
    if json_depth(text.encode(), MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise InvalidInput(f"{field}: nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise InvalidInput(f"{field}: not valid JSON") from None


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
