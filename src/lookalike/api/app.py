"""The FastAPI application: `create_app()` wires routes, error handlers and the runtime."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from lookalike import __version__
from lookalike.api.docs import install_api_docs, packaged_docs_assets
from lookalike.api.forms import add_body_schemas
from lookalike.api.limits import install_limits
from lookalike.api.observability import install_observability
from lookalike.api.routes import (
    ask,
    collections,
    compat,
    dedup,
    feedback,
    health,
    images,
    qa,
    records,
    search,
    session,
    uploads,
)
from lookalike.api.web import install_web_app
from lookalike.composition import Lookalike
from lookalike.core.config import Settings
from lookalike.core.errors import LookalikeError
from lookalike.serving.errors import install_error_handlers

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, runtime: Lookalike | None = None) -> FastAPI:
    """The API. With `runtime` the caller owns it; otherwise the app opens and closes one."""
    settings = runtime.settings if runtime else (settings or Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = runtime is None
        rt = runtime or Lookalike(settings)
        app.state.runtime = rt
        if rt.settings.auth == "off":
            log.warning(
                "authentication is OFF (LOOKALIKE_AUTH=off): anyone who can reach this "
                "port can read and change all data; use it only for a local demo"
            )
        # Resolve the model now so a missing CLIP model is reported once at start-up (and the
        # first request does not pay for loading it).
        try:
            await run_in_threadpool(rt.models.default)
        except LookalikeError as exc:
            log.error("no embedding model could be loaded: %s", exc.message)
        try:
            yield
        finally:
            if owned:
                rt.close()

    app = FastAPI(
        title="Lookalike",
        version=__version__,
        description="Image similarity search, visual quality control and image RAG.",
        openapi_url="/api/openapi.json",
        # Served by install_api_docs from the server's own files: FastAPI's pages load a CDN.
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    if runtime is not None:
        app.state.runtime = runtime
    install_error_handlers(app)
    # Limits first, observability last: the outermost middleware sees every answer.
    install_limits(app, settings)
    install_observability(app, settings)
    for module in (
        health,
        session,
        collections,
        records,
        images,
        uploads,
        search,
        dedup,
        feedback,
        qa,
        compat,
        ask,
    ):
        app.include_router(module.router)
    add_body_schemas(app)
    install_api_docs(app, packaged_docs_assets())
    # Last: the web app's catch-all answers only what no route above did.
    install_web_app(app, settings.web_dir)
    return app
