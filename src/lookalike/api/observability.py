"""Request ids, access log lines, Prometheus metrics and the last-resort 500 of the HTTP API.

`install_observability(app, settings)` adds one pure ASGI middleware, outermost, that for every
request:
- takes a valid incoming `X-Request-ID` or makes one, returns it in the response and puts it on
  every log line the request causes (see `lookalike.core.logs`);
- writes one access log line (`lookalike.access`): method, route template, status, duration,
  request id, tenant;
- counts the request by route template and status class;
- turns an unhandled exception into the standard 500 body (the stack trace goes to the log
  with the request id, never to the client).
It also serves `GET /metrics` unless `LOOKALIKE_METRICS_ENABLED=false`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.routing import Mount, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lookalike.api import OPERATIONAL_PATHS
from lookalike.api.metrics import Metrics
from lookalike.composition import Lookalike
from lookalike.core.config import Settings
from lookalike.core.logs import (
    accept_request_id,
    begin_request,
    configure_logging,
    end_request,
    install_record_factory,
)
from lookalike.core.timing import add_stage_sink, remove_stage_sink
from lookalike.serving.errors import error_response

log = logging.getLogger("lookalike.api")
access_log = logging.getLogger("lookalike.access")


class RouteTemplates:
    """Path templates of an app's routes, for requests that never reached its router."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._compiled: list[tuple[re.Pattern[str], str]] | None = None

    def match(self, path: str) -> str | None:
        if self._compiled is None:
            self._compiled = self._compile()
        for regex, template in self._compiled:
            if regex.match(path):
                return template
        return None

    def _compile(self) -> list[tuple[re.Pattern[str], str]]:
        # The router's entries may be whole included routers; the OpenAPI paths are the flat
        # list of templates, in the router's order.
        paths: list[str] = []
        for route in self._app.router.routes:
            path = getattr(route, "path", None)
            if isinstance(path, str):
                paths.append(path)
        try:
            paths += list(self._app.openapi().get("paths", {}))
        except Exception:
            log.exception("listing the routes for metrics failed")
        # Not the web app's catch-all (`/{path:path}`): it would claim every API path.
        kept = [p for p in dict.fromkeys(paths) if ":path}" not in p]
        return [(compile_path(p)[0], p) for p in kept]


def route_template(scope: Scope, templates: RouteTemplates | None = None) -> str:
    """The matched route's path template (`/api/images/{image_id}`), never the raw path, so
    the number of series stays bounded.

    A request a middleware answered (429, 413, a CORS preflight) never reached the router; it
    is matched against `templates` here, so it still counts under its route.
    """
    route = scope.get("route")
    if route is None:
        found = templates.match(scope["path"]) if templates is not None else None
        return found or "unmatched"
    if isinstance(route, Mount):
        return f"{route.path}/*"
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestObservabilityMiddleware:
    def __init__(
        self, app: ASGIApp, metrics: Metrics | None = None, templates: RouteTemplates | None = None
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        incoming = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = accept_request_id(incoming)
        # nosniff on every answer: a browser takes each body as the type it is sent as.
        headers = [(b"x-request-id", request_id.encode("ascii")), _NOSNIFF]
        token = begin_request(request_id)
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                sent = list(message.get("headers", ()))
                names = {name.lower() for name, _ in sent}
                sent += [h for h in headers if h[0] not in names]
                message = {**message, "headers": sent}
            await send(message)

        metrics = self.metrics
        if metrics is not None:
            metrics.in_progress.inc()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            status = 500
            log.exception(
                "unhandled error in %s %s",
                scope["method"],
                _loggable_path(scope, route_template(scope, self.templates)),
            )
            if started:
                raise
            response = error_response(500, "internal", "internal server error; see the server log")
            await response(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            route = route_template(scope, self.templates)
            path = _loggable_path(scope, route)
            if metrics is not None:
                metrics.in_progress.dec()
                metrics.observe_request(scope["method"], route, status, seconds)
            access_log.log(
                logging.DEBUG if scope["path"] in OPERATIONAL_PATHS else logging.INFO,
                "%s %s %d %.1fms",
                scope["method"],
                path,
                status,
                seconds * 1000,
                extra={
                    "method": scope["method"],
                    "route": route,
                    "path": path,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "client": scope["client"][0] if scope.get("client") else None,
                },
            )
            end_request(token)


_NOSNIFF = (b"x-content-type-options", b"nosniff")

# Path parameters that are credentials: a signed upload URL carries its signature in the path,
# and a log line must not hand it to whoever reads the logs.
_SECRET_PARAMS = ("{token}",)


def _loggable_path(scope: Scope, route: str) -> str:
    path: str = scope["path"]
    if any(secret in route for secret in _SECRET_PARAMS):
        return route  # the template: /api/uploads/{token}
    return path


def install_observability(app: FastAPI, settings: Settings) -> Metrics | None:
    """Request ids, access log and metrics for `app`. Call it after every other middleware is
    added, so that it is the outermost and sees what they answer."""
    install_record_factory()
    if settings.log_format is not None:
        configure_logging(settings.log_format)
    metrics: Metrics | None = None
    if settings.metrics_enabled:

        def runtime() -> Lookalike | None:
            rt: Lookalike | None = getattr(app.state, "runtime", None)
            return rt

        metrics = Metrics(runtime)
        app.state.metrics = metrics
        _report_stages_while_running(app, metrics)

        @app.get("/metrics", include_in_schema=False)
        def prometheus_metrics() -> Response:
            # A sync route: the scrape reads the catalog and the indexes in a worker thread.
            return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(
        RequestObservabilityMiddleware, metrics=metrics, templates=RouteTemplates(app)
    )
    return metrics


def _report_stages_while_running(app: FastAPI, metrics: Metrics) -> None:
    """Stage timings go to this app's metrics from start-up to shutdown."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        add_stage_sink(metrics)
        try:
            async with inner(app_) as state:
                yield state
        finally:
            remove_stage_sink(metrics)

    app.router.lifespan_context = lifespan
