"""The API docs, Swagger UI at /api/docs and ReDoc at /api/redoc, load only the server's own files.

Rendering them offline in a browser is tests/e2e/test_api_docs.py; this is the HTML and the
files it names.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lookalike.api.docs import install_api_docs, packaged_docs_assets

PAGES = ["/api/docs", "/api/redoc"]

# What a page loads: scripts, stylesheets, the icon, and the OpenAPI document (Swagger UI's `url`
# and ReDoc's `spec-url`).
_LOADED = re.compile(r"""(?:\bsrc|\bhref|spec-url)="([^"]+)"|\burl: '([^']+)'""")

_CONTENT_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
    ".json": ("application/json",),
}


def _loaded(html: str) -> list[str]:
    return [a or b for a, b in _LOADED.findall(html)]


def _content_type(url: str) -> tuple[str, ...]:
    return _CONTENT_TYPES[Path(url).suffix]


@pytest.mark.parametrize("page", PAGES)
def test_docs_pages_name_nothing_outside_the_server(client: TestClient, page: str) -> None:
    r = client.get(page)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    # "//" too: a scheme-relative URL leaves the server as well.
    for outside in ("http://", "https://", "//", "cdn.jsdelivr.net", "fonts.googleapis.com"):
        assert outside not in r.text, outside
    assert _loaded(r.text), "the page loads nothing: it would be blank"


@pytest.mark.parametrize("page", PAGES)
def test_every_file_a_docs_page_loads_answers(client: TestClient, page: str) -> None:
    for url in _loaded(client.get(page).text):
        assert url.startswith("/api/"), url
        r = client.get(url)
        assert r.status_code == 200, url
        assert r.headers["content-type"].split(";")[0] in _content_type(url), url
        assert r.content, url


def test_the_files_are_swagger_ui_and_redoc(client: TestClient) -> None:
    swagger, redoc = client.get("/api/docs").text, client.get("/api/redoc").text
    scripts = {Path(u).name: u for u in _loaded(swagger) + _loaded(redoc)}
    assert "SwaggerUIBundle" in client.get(scripts["swagger-ui-bundle.js"]).text
    assert ".swagger-ui" in client.get(scripts["swagger-ui.css"]).text
    assert "Redoc" in client.get(scripts["redoc.standalone.js"]).text
    # Swagger UI starts from the bundle it loaded, ReDoc from its element.
    assert "SwaggerUIBundle({" in swagger
    assert '<redoc spec-url="/api/openapi.json">' in redoc


@pytest.mark.parametrize("page", PAGES)
def test_the_browser_holds_docs_pages_to_the_server(client: TestClient, page: str) -> None:
    directives = dict(
        d.strip().split(" ", 1)
        for d in client.get(page).headers["content-security-policy"].split(";")
    )
    assert directives["default-src"] == "'self'"
    # ReDoc's bundle itself names an image on cdn.redoc.ly; the policy keeps it from loading.
    assert directives["img-src"] == "'self' data:"
    for sources in directives.values():
        assert "http" not in sources and "*" not in sources, sources


def test_swagger_ui_sends_the_document_to_no_validator(client: TestClient) -> None:
    assert '"validatorUrl": null' in client.get("/api/docs").text


def test_oauth2_redirect_page_is_under_api(client: TestClient) -> None:
    r = client.get("/api/docs/oauth2-redirect")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "'/api/docs/oauth2-redirect'" in client.get("/api/docs").text


def test_docs_need_no_credentials(secured_client: TestClient) -> None:
    assert secured_client.get("/api/collections").status_code == 401
    for page in PAGES:
        assert secured_client.get(page).status_code == 200
        for url in _loaded(secured_client.get(page).text):
            assert secured_client.get(url).status_code == 200, url


def test_docs_assets_hold_only_their_files(client: TestClient) -> None:
    assert client.get("/api/docs-assets/no-such-file.js").status_code == 404
    # fastapi_offline/__init__.py is beside the folder served.
    assert client.get("/api/docs-assets/%2e%2e/__init__.py").status_code == 404


def test_pages_follow_the_root_path_of_a_proxy() -> None:
    app = FastAPI(openapi_url="/api/openapi.json", docs_url=None, redoc_url=None)
    install_api_docs(app, packaged_docs_assets())
    with TestClient(app, root_path="/lookalike") as client:
        for page in PAGES:
            loaded = _loaded(client.get(page).text)
            assert loaded
            assert all(url.startswith("/lookalike/api/") for url in loaded), loaded


@pytest.mark.parametrize("assets", ["empty", "none"])
def test_without_the_files_the_pages_say_how_to_install_them(tmp_path: Path, assets: str) -> None:
    app = FastAPI(openapi_url="/api/openapi.json", docs_url=None, redoc_url=None)
    install_api_docs(app, tmp_path if assets == "empty" else None)
    with TestClient(app) as client:
        for page in PAGES:
            r = client.get(page)
            assert r.status_code == 503
            assert r.headers["content-type"].startswith("text/html")
            assert "make venv" in r.text
            assert "fastapi-offline" in r.text
            assert 'href="/api/openapi.json"' in r.text
        assert client.get("/api/docs-assets/swagger-ui-bundle.js").status_code == 404


def test_the_files_are_inside_the_installed_packages() -> None:
    assets = packaged_docs_assets()
    assert assets is not None
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"):
        assert (assets / name).stat().st_size > 0, name
