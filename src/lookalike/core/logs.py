"""Logging: request ids on every line, and a JSON formatter for log collectors.

The HTTP middleware opens a `RequestContext` for each request; every log record created while
it is open (in the request's task or in the worker threads it starts, which copy the context)
carries `request_id` and `tenant` attributes. `configure_logging("json")` prints one JSON object
per line; `"text"` keeps the usual human format with the request id appended.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

LogFormat = Literal["json", "text"]

REQUEST_ID_HEADER = "X-Request-ID"
# Accepted from a client or a proxy as is; anything else (too long, odd characters that could
# forge log lines or headers) is replaced by a fresh id.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


@dataclass
class RequestContext:
    """What log lines of one request share. Mutable: the tenant is known only after auth."""

    request_id: str
    tenant: str | None = None


_current: ContextVar[RequestContext | None] = ContextVar("lookalike_request", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(incoming: str | None) -> str:
    """The client's id when it is a sane token, else a new one."""
    if incoming and _VALID_REQUEST_ID.fullmatch(incoming):
        return incoming
    return new_request_id()


def begin_request(request_id: str) -> Token[RequestContext | None]:
    """Open the request's context; pass the token to `end_request`."""
    return _current.set(RequestContext(request_id))


def end_request(token: Token[RequestContext | None]) -> None:
    _current.reset(token)


def current_request() -> RequestContext | None:
    return _current.get()


def set_tenant(tenant: str) -> None:
    """Name the tenant of the current request (for its log lines); no-op outside a request."""
    ctx = _current.get()
    if ctx is not None:
        ctx.tenant = tenant


# --- log records --------------------------------------------------------------------------

_factory_installed = False


def install_record_factory() -> None:
    """Give every log record `request_id` and `tenant` attributes (None outside a request).

    A record factory rather than a handler filter: records then carry the ids whichever handler
    (a test's capture, a queue handler) ends up formatting them. Idempotent.
    """
    global _factory_installed
    if _factory_installed:
        return
    base = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        ctx = _current.get()
        record.request_id = ctx.request_id if ctx else None
        record.tenant = ctx.tenant if ctx else None
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True


# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
    | {"message", "asctime", "request_id", "tenant", "taskName", "color_message"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, tenant, extras,
    and the stack trace (as `exc_info`) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            out["request_id"] = request_id
        tenant = getattr(record, "tenant", None)
        if tenant is not None:
            out["tenant"] = tenant
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The usual human format, with `[request id]` when the line belongs to a request."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        if request_id is None:
            return line
        head, sep, rest = line.partition("\n")
        return f"{head} [request_id={request_id}]{sep}{rest}"


_HANDLER_MARK = "_lookalike_handler"
# Our loggers and the server's (`uvicorn.error` propagates to `uvicorn`) print alike.
_LOGGERS = ("lookalike", "uvicorn")


def configure_logging(
    fmt: LogFormat = "text", level: int = logging.INFO, stream: TextIO | None = None
) -> logging.Handler:
    """Print the `lookalike` (and uvicorn) loggers to `stream` (stderr) in `fmt`.

    Replaces the handler an earlier call installed, so calling it twice does not double lines.
    """
    install_record_factory()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    setattr(handler, _HANDLER_MARK, True)
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, _HANDLER_MARK, False)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(level)
        # Printed here; the root logger (plain text) must not print it again.
        logger.propagate = False
    return handler
