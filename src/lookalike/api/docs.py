"""The API's interactive docs, Swagger UI at /api/docs and ReDoc at /api/redoc, from files the
server holds itself.

FastAPI's own pages load Swagger UI and ReDoc from a public CDN, so a server without internet
showed a blank page. Here the pages are still FastAPI's, but their scripts, stylesheet and icon
come from /api/docs-assets, out of the installed `fastapi-offline` wheel. That pinned PyPI
dependency ships both Swagger UI's and ReDoc's bundles: they are on disk after any install of
the package (`make venv`, pip, an image), with no Node step and nothing fetched at run time,
which npm's swagger-ui-dist and redoc would have needed (`make web`, then copying into the
package). Only its files are used, not its app factory, so the pages stay under /api.

Like the OpenAPI document, the pages and their files need no credentials: they describe the API
and hold no data.
"""

from __future__ import annotations

import importlib.util
from html import escape
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse

DOCS_URL = "/api/docs"
REDOC_URL = "/api/redoc"
OAUTH2_REDIRECT_URL = "/api/docs/oauth2-redirect"
ASSETS_URL = "/api/docs-assets"

_SWAGGER_JS = "swagger-ui-bundle.js"
_SWAGGER_CSS = "swagger-ui.css"
_REDOC_JS = "redoc.standalone.js"
_FAVICON = "favicon.png"
_ASSET_FILES = (_SWAGGER_JS, _SWAGGER_CSS, _REDOC_JS, _FAVICON)

# Swagger UI would otherwise send the document of any server not on localhost to
# validator.swagger.io for its badge.
_SWAGGER_UI_PARAMETERS = {"validatorUrl": None}

# The pages may load nothing from outside the server, and the browser holds them to it: ReDoc
# always asks cdn.redoc.ly for the logo of its "API docs by Redocly" link (and hides it when
# that fails). Both pages start their bundle from an inline script, and ReDoc styles inline and
# runs its search in a worker from a blob: URL.
_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; worker-src 'self' blob:"
)

_NOT_INSTALLED = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Lookalike API docs</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto;
 padding: 0 1rem; line-height: 1.5">
<h1>Lookalike API docs</h1>
<p>The API is running, but the files of its interactive docs are missing: Swagger UI and ReDoc
come with the Python package <code>fastapi-offline</code>, which is not installed here.</p>
<p>Install Lookalike's dependencies again with <code>make venv</code> (or
<code>pip install -e .</code>), then reload this page.</p>
<p>The OpenAPI document itself is at <a href="{openapi_url}">{openapi_url}</a>.</p>
</body></html>
"""


def packaged_docs_assets() -> Path | None:
    """The folder of Swagger UI's and ReDoc's files in the installed `fastapi-offline`."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "static"


def install_api_docs(app: FastAPI, assets: Path | None) -> None:
    """Serve the docs pages, and the files in `assets` they load at ASSETS_URL. Without all of
    those files the pages answer 503 and say how to install them."""
    openapi_url = app.openapi_url
    if openapi_url is None:
        raise ValueError("the API docs need the app's OpenAPI document (openapi_url)")
    complete = assets is not None and all((assets / name).is_file() for name in _ASSET_FILES)
    if complete:
        app.mount(ASSETS_URL, StaticFiles(directory=assets), name="docs-assets")

    async def swagger_ui(request: Request) -> HTMLResponse:
        if not complete:
            return _not_installed(request, openapi_url)
        root = _root_path(request)
        return _confined(
            get_swagger_ui_html(
                openapi_url=root + openapi_url,
                title=f"{app.title} API - Swagger UI",
                swagger_js_url=f"{root}{ASSETS_URL}/{_SWAGGER_JS}",
                swagger_css_url=f"{root}{ASSETS_URL}/{_SWAGGER_CSS}",
                swagger_favicon_url=f"{root}{ASSETS_URL}/{_FAVICON}",
                oauth2_redirect_url=root + OAUTH2_REDIRECT_URL,
                swagger_ui_parameters=_SWAGGER_UI_PARAMETERS,
            )
        )

    async def swagger_ui_oauth2_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        if not complete:
            return _not_installed(request, openapi_url)
        root = _root_path(request)
        return _confined(
            get_redoc_html(
                openapi_url=root + openapi_url,
                title=f"{app.title} API - ReDoc",
                redoc_js_url=f"{root}{ASSETS_URL}/{_REDOC_JS}",
                redoc_favicon_url=f"{root}{ASSETS_URL}/{_FAVICON}",
                with_google_fonts=False,
            )
        )

    app.add_route(DOCS_URL, swagger_ui, include_in_schema=False)
    app.add_route(OAUTH2_REDIRECT_URL, swagger_ui_oauth2_redirect, include_in_schema=False)
    app.add_route(REDOC_URL, redoc, include_in_schema=False)


def _root_path(request: Request) -> str:
    # Behind a proxy that serves the app under a prefix, as FastAPI's own docs pages do.
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def _confined(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = _CONTENT_SECURITY_POLICY
    return page


def _not_installed(request: Request, openapi_url: str) -> HTMLResponse:
    return HTMLResponse(
        _NOT_INSTALLED.format(openapi_url=escape(_root_path(request) + openapi_url)),
        status_code=503,
    )
