"""Limits of the HTTP API: request rates, body size, CORS and response compression.

- Per client IP, in a middleware, before anything else runs (health probes and /metrics are
  exempt). Behind a proxy the IP is the one uvicorn resolved from `X-Forwarded-For` for the
  proxies it trusts (`FORWARDED_ALLOW_IPS`).
- Per tenant, in the `Caller` dependency, once the credentials are verified: a forged token must
  not drain somebody else's bucket.
- The body size is checked on `Content-Length` before the route runs, and counted while it
  streams in for chunked uploads, so a huge upload is refused before it is read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lookalike.api import OPERATIONAL_PATHS
from lookalike.api.ratelimit import TokenBuckets, open_token_buckets
from lookalike.core.config import Settings
from lookalike.core.errors import InvalidInput, RateLimited, RequestTooLarge
from lookalike.serving.bodies import MAX_JSON_DEPTH, check_json_depth, is_json_media_type
from lookalike.serving.errors import error_response


class RateLimits:
    """The rate-limit settings and the buckets they count in (memory or Redis)."""

    def __init__(self, settings: Settings, buckets: TokenBuckets | None = None) -> None:
        self.ip_rate = settings.rate_limit_ip_per_s
        self.ip_burst = settings.rate_limit_ip_burst
        self.tenant_rate = settings.rate_limit_tenant_per_s
        self.tenant_burst = settings.rate_limit_tenant_burst
        self.buckets = buckets or open_token_buckets(settings.redis_url, settings.redis_key_prefix)

    async def check_tenant(self, tenant: str) -> None:
        """Raise `RateLimited` when `tenant` is over its rate."""
        if self.tenant_rate <= 0:
            return
        verdict = await self.buckets.take(
            f"rl:tenant:{tenant}", self.tenant_rate, self.tenant_burst
        )
        if not verdict.allowed:
            retry = int(verdict.retry_after_header)
            raise RateLimited(
                f"too many requests for tenant {tenant!r}; retry in {retry} s "
                "(limit: LOOKALIKE_RATE_LIMIT_TENANT_PER_S)",
                retry_after_s=retry,
            )


async def check_tenant_rate(request: Request, tenant: str) -> None:
    """Count one request of `tenant` (no-op when the app has no rate limits installed)."""
    limits: RateLimits | None = getattr(request.app.state, "rate_limits", None)
    if limits is not None:
        await limits.check_tenant(tenant)


class ClientRateLimitMiddleware:
    """429 with `Retry-After` once a client IP is over its rate."""

    def __init__(self, app: ASGIApp, limits: RateLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPERATIONAL_PATHS:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        limits = self.limits
        verdict = await limits.buckets.take(f"rl:ip:{ip}", limits.ip_rate, limits.ip_burst)
        if verdict.allowed:
            await self.app(scope, receive, send)
            return
        retry = verdict.retry_after_header
        response = error_response(
            429,
            RateLimited.code,
            f"too many requests from {ip}; retry in {retry} s "
            "(limit: LOOKALIKE_RATE_LIMIT_IP_PER_S)",
            {"Retry-After": retry},
        )
        await response(scope, receive, send)


class BodySizeLimitMiddleware:
    """413 for request bodies over `max_bytes`, without reading them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _error(self) -> RequestTooLarge:
        return RequestTooLarge(
            f"the request body is over the limit of {self.max_bytes} bytes "
            "(LOOKALIKE_MAX_REQUEST_BYTES); send fewer or smaller files per request"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send, self._error())
            return

        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # The route's LookalikeError handler answers 413; the check below is for
                    # code paths that let it escape.
                    raise self._error()
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except Exception as exc:
            too_large = _find(exc, RequestTooLarge)
            if too_large is None or started:
                raise
            await self._refuse(scope, receive, send, too_large)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, exc: RequestTooLarge) -> None:
        response = error_response(exc.status, exc.code, exc.message, {"Connection": "close"})
        await response(scope, receive, send)


class JsonDepthLimitMiddleware:
    """422 for JSON request bodies nested deeper than `max_depth`, before anything parses them.

    `serving.bodies.json_body` checks the bodies the routes read themselves; this covers the
    bodies FastAPI parses for routes that declare a model. It reads the whole body first, which
    is safe because `BodySizeLimitMiddleware` runs before it and bounds the body (the embedding
    service has no such bound, and no declared bodies, so it does without this middleware).
    """

    def __init__(self, app: ASGIApp, max_depth: int = MAX_JSON_DEPTH) -> None:
        self.app = app
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        try:
            check_json_depth(body, "the JSON body", self.max_depth)
        except InvalidInput as exc:
            response = error_response(exc.status, exc.code, exc.message)
            await response(scope, receive, send)
            return
        replay = iter(messages)

        async def replayed() -> Message:
            return next(replay, None) or await receive()

        await self.app(scope, replayed, send)


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return is_json_media_type(value.decode("latin-1"))
    return False


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _find(exc: BaseException, kind: type[RequestTooLarge]) -> RequestTooLarge | None:
    """`exc` itself, or the `kind` inside an exception group (task groups wrap errors)."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find(inner, kind)
            if found is not None:
                return found
    return None


def install_limits(app: FastAPI, settings: Settings, buckets: TokenBuckets | None = None) -> None:
    """Body size and JSON depth limits, rate limits, CORS and gzip, innermost first.

    Call before `install_observability`, so the access log and the metrics see the 413s and
    429s these produce.
    """
    app.add_middleware(JsonDepthLimitMiddleware)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes)

    limits = RateLimits(settings, buckets)
    app.state.rate_limits = limits
    if limits.ip_rate > 0:
        app.add_middleware(ClientRateLimitMiddleware, limits=limits)
    _close_with_app(app, limits.buckets)

    if settings.cors_origins:
        # Outside the rate limit: preflights are answered at once, and a 429 carries the CORS
        # headers a browser needs to show it.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "Retry-After"],
            max_age=600,
        )
    if settings.gzip_min_bytes > 0:
        # Starlette leaves images and other compressed types alone.
        app.add_middleware(GZipMiddleware, minimum_size=settings.gzip_min_bytes, compresslevel=6)


def _close_with_app(app: FastAPI, buckets: TokenBuckets) -> None:
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        try:
            async with inner(app_) as state:
                yield state
        finally:
            await buckets.aclose()

    app.router.lifespan_context = lifespan
