"""Reading request bodies: JSON into a model, multipart files, raw bytes, each under its limits.

What a route refuses, and with which status, is decided here for both apps: a content type the
route does not read is 415 `unsupported_media_type`; a body that is not JSON, nests deeper than
`MAX_JSON_DEPTH` or does not fit the model is 422 `invalid_input`; a body over its byte limit is
413, before it is all read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from lookalike.core.errors import InvalidInput, LookalikeError, RequestTooLarge
from lookalike.serving.errors import UnsupportedMediaType, validation_message

M = TypeVar("M", bound=BaseModel)

# What a limit raises with its message: RequestTooLarge, or ImageTooLarge where the limit is an
# image's size (the embedding service), so the caller learns which limit it ran into.
TooLarge = Callable[[str], LookalikeError]

JSON = "application/json"
MULTIPART = "multipart/form-data"

# Python's JSON parser recurses once per level: a few kilobytes of brackets raise RecursionError
# deep inside a route. No request of either app nests more than a few levels (filters, metadata),
# so the limit is generous.
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(rb"[\[\]{}]")


# --- content types ----------------------------------------------------------------------------


def media_type(content_type: str) -> str:
    """`text/plain` from `Text/Plain; charset=utf-8`: the type alone, lower case."""
    return content_type.split(";", 1)[0].strip().lower()


def is_json_media_type(content_type: str) -> bool:
    """`application/json`, or a JSON dialect such as `application/merge-patch+json`."""
    media = media_type(content_type)
    return media == JSON or media.endswith("+json")


def is_multipart(request: Request) -> bool:
    return media_type(request.headers.get("content-type", "")) == MULTIPART


# --- JSON -------------------------------------------------------------------------------------


def json_depth(body: bytes, stop_at: int) -> int:
    """How deep the arrays and objects of `body` nest (stops counting past `stop_at`)."""
    if body.count(b"[") + body.count(b"{") <= stop_at:
        return 0  # not enough brackets to go deeper than the limit: no need to look closer
    depth = deepest = 0
    for match in _BRACKET.finditer(_JSON_STRING.sub(b'""', body)):
        if match.group() in (b"[", b"{"):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > stop_at:
                    break
        else:
            depth -= 1
    return deepest


def check_json_depth(text: bytes, where: str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """`InvalidInput` when the JSON `text` nests deeper than `max_depth`, before it is parsed."""
    if json_depth(text, max_depth) > max_depth:
        raise InvalidInput(
            f"{where}: nested more than {max_depth} levels deep; no request needs that many"
        )


def parse_json(text: bytes, where: str) -> Any:
    """JSON `text` under the depth limit; `InvalidInput` naming `where` when it is not JSON."""
    check_json_depth(text, where)
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidInput(f"{where}: not valid JSON") from None


def validate(model: type[M], raw: Any) -> M:
    """`raw` as a `model`, or `InvalidInput` saying what is wrong where."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput(validation_message(exc.errors())) from None


async def json_body(
    request: Request,
    model: type[M],
    *,
    limit: int | None = None,
    too_large: TooLarge = RequestTooLarge,
    or_multipart: bool = True,
) -> M:
    """The JSON body as a `model`.

    `limit` refuses a body past that many bytes while it streams in; without it, the app bounds
    bodies before the route runs (the API's `BodySizeLimitMiddleware`). `or_multipart` says, in
    the 415 for another content type, that the route reads multipart/form-data as well.
    """
    content_type = request.headers.get("content-type", "")
    if not is_json_media_type(content_type):
        accepted = f"{JSON} or {MULTIPART}" if or_multipart else JSON
        raise UnsupportedMediaType(
            f"send {accepted}, not {media_type(content_type) or 'no content type'}"
        )
    body = await (request.body() if limit is None else read_body(request, limit, too_large))
    return validate(model, parse_json(body, "the JSON body"))


def json_field(text: str, field: str) -> Any:
    """A form field that holds JSON, parsed under the same depth limit as a JSON body."""
    return parse_json(text.encode(), field)


# --- bytes and files --------------------------------------------------------------------------


async def read_body(request: Request, limit: int, too_large: TooLarge = RequestTooLarge) -> bytes:
    """The body, refused (413) as soon as it passes `limit` bytes, before it is all read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(f"the request body is {declared} bytes, over the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(f"the request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_files(
    uploads: Sequence[UploadFile],
    *,
    max_files: int,
    max_bytes: int | None = None,
    too_large: TooLarge = RequestTooLarge,
    noun: str = "file",
    setting: str | None = None,
) -> list[bytes]:
    """The bytes of `uploads`, in order: 422 for more than `max_files` of them (naming the
    `setting` that sets it), 413 for one over `max_bytes`, checked before it is read."""
    if len(uploads) > max_files:
        raise InvalidInput(
            f"at most {max_files} {noun}{'s' if max_files != 1 else ''} per request"
            + (f" ({setting})" if setting else "")
        )
    data = []
    for upload in uploads:
        if max_bytes is not None and upload.size is not None and upload.size > max_bytes:
            name = upload.filename or f"the {noun}"
            raise too_large(f"{name} is {upload.size} bytes, over the limit of {max_bytes}")
        data.append(await upload.read())
    return data
