"""The web app at `/`: the built bundle's files, and index.html for every other page path.

The single-page app routes in the browser (`/search`, `/collections/01J...`), so any GET outside
`/api` that names no file of the bundle answers index.html. Paths under `/api` never do: an
unknown API route stays a JSON 404 and a wrong method on a known one stays a 405.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Match, Route
from starlette.types import Scope

from lookalike.api import OPERATIONAL_PATHS

# Vite names the files under assets/ by their content hash: they never change.
_IMMUTABLE = "public, max-age=31536000, immutable"
# index.html names the current assets, so browsers must ask again each time.
_REVALIDATE = "no-cache"

_NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Lookalike</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto;
 padding: 0 1rem; line-height: 1.5">
<h1>Lookalike</h1>
<p>The API is running, but the web app has not been built{where}.</p>
<p>Build it with <code>make web</code> (needs Node.js 20.19 or newer), or point
<code>LOOKALIKE_WEB_DIR</code> at a built bundle, then reload this page.</p>
<p>The API itself is at <a href="/api/docs">/api/docs</a>.</p>
</body></html>
"""


def _is_api(path: str) -> bool:
    # Trailing slash too: the router retries a missed path with one added before its 404.
    return path == "/api" or path.startswith("/api/") or path.rstrip("/") in OPERATIONAL_PATHS


class _PageRoute(Route):
    """A catch-all GET route that never claims a path under /api."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and _is_api(scope["path"]):
            return Match.NONE, {}
        return super().matches(scope)


def install_web_app(app: FastAPI, web_dir: Path | None) -> None:
    """Serve the bundle in `web_dir` at `/`. Call it after every other route is added: the
    catch-all must come last."""
    root = web_dir.resolve() if web_dir is not None else None
    index = root / "index.html" if root is not None else None

    async def page(request: Request) -> Response:
        if root is None or index is None or not index.is_file():
            where = f" (no index.html in {escape(str(web_dir))})" if web_dir else ""
            return HTMLResponse(
                _NOT_BUILT.format(where=where), headers={"Cache-Control": _REVALIDATE}
            )
        asset = _bundle_file(root, request.path_params["path"])
        if asset is not None:
            cache = _IMMUTABLE if asset.parent.name == "assets" else _REVALIDATE
            return FileResponse(asset, headers={"Cache-Control": cache})
        return FileResponse(index, headers={"Cache-Control": _REVALIDATE})

    app.router.routes.append(
        _PageRoute("/{path:path}", page, methods=["GET", "HEAD"], include_in_schema=False)
    )


def _bundle_file(root: Path, path: str) -> Path | None:
    """The bundle's file at `path`, never one outside the bundle."""
    if not path:
        return None
    candidate = (root / path).resolve()
    if candidate.is_relative_to(root) and candidate.is_file():
        return candidate
    return None
