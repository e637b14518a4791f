"""Errors leave both apps as `{"error": {"code", "message"}}` with their status; mapped here."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lookalike.core.errors import Busy, LookalikeError, RateLimited

log = logging.getLogger(__name__)


class UnsupportedMediaType(LookalikeError):
    """A body in a content type the route does not read (JSON sent as text/plain, say)."""

    code = "unsupported_media_type"
    status = 415


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


# A bad deeply nested body can fail in hundreds of places at once; the first few say enough.
_MAX_LISTED_ERRORS = 5


def validation_message(errors: Sequence[Any]) -> str:
    """One line from pydantic's errors: where and what, for the first few of them."""
    parts = []
    for err in errors[:_MAX_LISTED_ERRORS]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where[:200] or 'request'}: {str(err.get('msg', 'invalid'))[:500]}")
    if len(errors) > _MAX_LISTED_ERRORS:
        parts.append(f"and {len(errors) - _MAX_LISTED_ERRORS} more")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Answer domain errors, validation errors, Starlette's HTTP errors and anything unexpected
    in the one error shape."""

    @app.exception_handler(LookalikeError)
    async def _domain(_: Request, exc: LookalikeError) -> JSONResponse:
        headers = (
            {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, Busy | RateLimited) else None
        )
        if exc.status >= 500:
            log.error("%s: %s", exc.code, exc.message)
        return error_response(exc.status, exc.code, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_input", validation_message(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(
            exc.status_code, "http_error"
        )
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Log the stack trace; never send it.
        log.exception("unhandled error")
        return error_response(500, "internal", "internal server error; see the server log")
