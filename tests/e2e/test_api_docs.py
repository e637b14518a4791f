"""The API docs render offline: Swagger UI at /api/docs and ReDoc at /api/redoc, in Chromium, with
every request to a host other than the server refused.

Screenshots go to `$WEB_E2E_OUT/screenshots/api-docs` (the web app's test clears only the files
directly in screenshots/).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest

if TYPE_CHECKING:
    from e2e.conftest import Server

pytestmark = pytest.mark.e2e

playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect
Page = playwright.Page
Route = playwright.Route

# A path the API has had from the start; ReDoc titles its operation with its summary.
KNOWN_PATH = "/api/search/similar"


class OfflinePage:
    """A page whose requests reach only the server; the others are refused and listed."""

    def __init__(self, page: Page, server_url: str) -> None:
        self.page = page
        self.server = urlsplit(server_url).netloc
        self.refused: list[str] = []
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.route("**/*", self._only_the_server)

    def _only_the_server(self, route: Route) -> None:
        url = urlsplit(route.request.url)
        if url.scheme in ("data", "blob") or url.netloc == self.server:
            route.continue_()
        else:
            self.refused.append(route.request.url)
            route.abort("internetdisconnected")


@pytest.fixture
def offline(browser: Any, server: Server) -> Iterator[OfflinePage]:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-GB")
    context.set_default_timeout(20_000)
    page = OfflinePage(context.new_page(), server.url)
    yield page
    context.close()
    assert not page.refused, f"the docs asked for files outside the server: {page.refused}"
    assert not page.errors, f"uncaught errors in the page: {page.errors}"


@pytest.fixture(scope="module")
def shots(out_dir: Path) -> Path:
    folder = out_dir / "api-docs"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def known_summary(server: Server) -> str:
    spec = httpx.get(f"{server.url}/api/openapi.json", timeout=10).json()
    summary: str = spec["paths"][KNOWN_PATH]["post"]["summary"]
    return summary


def test_swagger_ui_renders_the_operations(
    offline: OfflinePage, server: Server, shots: Path
) -> None:
    page = offline.page
    page.goto(f"{server.url}/api/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Lookalike")
    operation = page.locator(f'.opblock .opblock-summary-path[data-path="{KNOWN_PATH}"]')
    expect(operation).to_be_visible()
    assert page.locator(".opblock").count() > 10
    page.screenshot(path=shots / "swagger-ui.png")

    # An operation opens, with its parameters and responses.
    operation.click()
    expect(page.locator(".opblock.is-open .responses-wrapper")).to_be_visible()
    page.screenshot(path=shots / "swagger-ui-operation.png")

    # "Try it out" reaches the server (no credentials given here, so a 401 comes back).
    listing = page.locator(".opblock-get", has=page.locator('[data-path="/api/collections"]'))
    listing.locator(".opblock-summary").click()
    listing.get_by_role("button", name="Try it out").click()
    listing.get_by_role("button", name="Execute").click()
    status = listing.locator(".live-responses-table .response .response-col_status")
    expect(status).to_contain_text("401")


def test_redoc_renders_the_operations(
    offline: OfflinePage, server: Server, shots: Path, known_summary: str
) -> None:
    page = offline.page
    page.goto(f"{server.url}/api/redoc")
    expect(page.locator("h1", has_text="Lookalike")).to_be_visible()
    title = page.locator("h2", has_text=known_summary)
    expect(title.first).to_be_attached()
    # The operation's own section, with its path, not only its entry in the side menu.
    expect(page.get_by_text(KNOWN_PATH, exact=True).first).to_be_attached()
    assert page.locator("h2").count() > 10
    page.screenshot(path=shots / "redoc.png")

    # The search runs in a worker started from a blob: URL.
    page.get_by_placeholder("Search...").fill("similar")
    expect(page.locator("[role=search]").get_by_text(known_summary).first).to_be_visible()
    page.screenshot(path=shots / "redoc-search.png")
