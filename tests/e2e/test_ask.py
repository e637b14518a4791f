"""Ask, end to end: PDFs uploaded through the Upload view (each page embedded, one by one), then
a question answered in the Ask view by a real chat model (llama.cpp's server with Gemma 3 270M,
tests/backends/llm.py), streamed, cited, and the cited words highlighted on the page image.

The documents are tests/rag/test_ask.py's: one fact per page. The collection is on the offline
model, as there: it embeds images only, so the pages are found by their words (keyword search).
Screenshots go to `$WEB_E2E_OUT/screenshots/ask`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ingest.test_pdf import make_pdf as make_paged_pdf
from rag.test_ask import FACTS, make_pdf

if TYPE_CHECKING:
    from e2e.conftest import Server

pytestmark = pytest.mark.e2e

playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect
Page = playwright.Page

COLLECTION = "Surveys"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
QUESTION = "How long is the Zephyr bridge?"

# Every text the PDF rows' page progress and the answer showed, in order.
_WATCH = """() => {
    window.pageProgress = [];
    window.answers = [];
    window.sawStop = false;
    new MutationObserver(() => {
        if ([...document.querySelectorAll('button')].some((b) => b.textContent.trim() === 'Stop')) {
            window.sawStop = true;
        }
        for (const el of document.querySelectorAll('[data-testid=page-progress]')) {
            const text = el.textContent.trim();
            if (window.pageProgress.at(-1) !== text) window.pageProgress.push(text);
        }
        const answer = document.querySelector('[data-testid=answer]');
        if (answer && window.answers.at(-1) !== answer.textContent) {
            window.answers.push(answer.textContent);
        }
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
}"""

# Each highlight's box and the page image's, in the window's pixels.
_HIGHLIGHTS = """() => {
    const page = document.querySelector('[data-testid=cited-page]');
    const image = page.querySelector('img');
    const box = (el) => { const r = el.getBoundingClientRect();
        return { left: r.left, top: r.top, right: r.right, bottom: r.bottom }; };
    return {
        image: box(image),
        natural: { width: image.naturalWidth, height: image.naturalHeight },
        highlights: [...page.querySelectorAll('[data-testid=highlight]')].map(box),
    };
}"""


class Shots:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    def __call__(self, page: Page, name: str) -> None:
        self.count += 1
        with contextlib.suppress(playwright.TimeoutError):
            page.wait_for_load_state("networkidle", timeout=10_000)
        page.screenshot(path=self.folder / f"{self.count:02d}-{name}.png", full_page=True)


@pytest.fixture(scope="module")
def shot(out_dir: Path) -> Shots:
    folder = out_dir / "ask"
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    return Shots(folder)


@pytest.fixture(scope="module")
def page(browser: Any, answering_server: Server) -> Iterator[Page]:
    server = answering_server
    with server.api(server.token()) as api:
        r = api.post("/api/collections", json={"name": COLLECTION, "model": "efficientnet-lite0"})
        assert r.status_code == 201, r.text
    context = browser.new_context(viewport=DESKTOP, base_url=server.url, locale="en-GB")
    context.set_default_timeout(20_000)
    errors: list[str] = []
    p = context.new_page()
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    p.goto("/signin")
    p.get_by_label("Access token").fill(server.token())
    p.get_by_role("button", name="Sign in").click()
    expect(p.get_by_label("Current collection")).to_have_value(re.compile(".+"))
    p.get_by_label("Current collection").select_option(label=COLLECTION)
    yield p
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def _nav(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()


def test_upload_pdfs_page_by_page(page: Page, answering_server: Server, shot: Shots) -> None:
    _nav(page, "Upload")
    expect(page.get_by_role("heading", name="Upload", exact=True)).to_be_visible()
    page.evaluate(_WATCH)
    refused = {
        "locked.pdf": make_paged_pdf("lk", 2, encrypt="pw"),
        "damaged.pdf": make_pdf("bridges")[:900],
    }
    page.get_by_label("Choose images to upload").set_input_files(
        [
            {"name": f"{doc}.pdf", "mimeType": "application/pdf", "buffer": make_pdf(doc)}
            for doc in ("bridges", "lights")
        ]
        + [{"name": n, "mimeType": "application/pdf", "buffer": b} for n, b in refused.items()]
    )
    rows = page.get_by_test_id("upload-row")
    expect(rows).to_have_count(4)
    done = page.locator("[data-testid=upload-row][data-phase=done]")
    expect(done).to_have_count(2, timeout=120_000)
    # A PDF the server cannot read is refused with its reason, on its row.
    for name, says in (("locked.pdf", "password"), ("damaged.pdf", "damaged")):
        row = rows.filter(has_text=name)
        expect(row).to_have_attribute("data-status", "failed")
        expect(row).to_contain_text(says)
    for doc in ("bridges", "lights"):
        row = rows.filter(has_text=f"{doc}.pdf")
        expect(row).to_have_attribute("data-status", "added")
        expect(row.get_by_test_id("page-progress")).to_have_text(
            re.compile(r"^Added: 2 of 2 pages embedded")
        )
        expect(row.get_by_role("link", name="open record")).to_be_visible()
    # The pages were counted as they were embedded, not only at the end.
    seen = page.evaluate("() => window.pageProgress")
    assert any(re.fullmatch(r"page [01] of 2 embedded", t) for t in seen), seen
    shot(page, "upload-pdfs")

    # One record per PDF, named after the file, an image per page.
    server = answering_server
    with server.api(server.token()) as api:
        records = api.get(f"/api/collections/{COLLECTION}/records").json()["items"]
        assert sorted(r["name"] for r in records) == ["bridges", "lights"]
        for r in records:
            assert r["metadata"]["page_count"] == 2
            full = api.get(f"/api/records/{r['id']}").json()
            assert sorted(i["page"] for i in full["images"]) == [1, 2]
            assert {i["status"] for i in full["images"]} == {"embedded"}


def test_ask_streams_a_cited_answer(page: Page, shot: Shots) -> None:
    _nav(page, "Ask")
    expect(page.get_by_role("heading", name="Ask", exact=True)).to_be_visible()
    page.evaluate(_WATCH)
    page.get_by_role("textbox", name="Question").fill(QUESTION)
    page.get_by_role("textbox", name="Question").press("Enter")

    # The sources are listed beside the answer, the fact's page first.
    sources = page.get_by_role("list", name="Sources").get_by_test_id("ask-source")
    expect(sources.first).to_contain_text("bridges", timeout=60_000)
    expect(sources.first).to_contain_text("page 1")

    citations = page.get_by_test_id("citation")
    expect(citations.first).to_be_visible(timeout=180_000)
    answer = page.get_by_test_id("answer")
    expect(answer).to_contain_text("412")
    expect(page.get_by_role("button", name="Ask")).to_be_visible()
    # The answer arrived in pieces, each shown as it came.
    answers = [a for a in page.evaluate("() => window.answers") if a]
    assert len(answers) >= 2, answers
    assert len(answers[0]) < len(answers[-1]), answers
    assert page.evaluate("() => window.sawStop"), "no Stop button while the answer was written"
    cited = citations.filter(has_text="412 metres")
    expect(cited).to_have_count(1)
    expect(cited).to_contain_text("bridges · page 1")
    shot(page, "ask-answer")

    # The citation opens its page, the supporting words highlighted over them.
    cited.click()
    dialog = page.get_by_role("dialog", name="[1] bridges · page 1")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_test_id("supporting-text")).to_contain_text(FACTS[("bridges", 1)][:30])
    expect(dialog.locator("[data-testid=cited-page] img")).to_be_visible()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=cited-page] img')?.complete === true"
    )
    highlights = dialog.get_by_test_id("highlight")
    expect(highlights.first).to_be_visible()
    geometry = page.evaluate(_HIGHLIGHTS)
    image, boxes = geometry["image"], geometry["highlights"]
    assert len(boxes) >= 4, geometry
    for box in boxes:
        # On the image, on one line of text: wider than tall, in the upper part of the page.
        assert image["left"] - 1 <= box["left"] < box["right"] <= image["right"] + 1, geometry
        assert image["top"] - 1 <= box["top"] < box["bottom"] <= image["bottom"] + 1, geometry
        assert box["top"] < image["top"] + (image["bottom"] - image["top"]) / 2, geometry
    assert [b["left"] for b in boxes] == sorted(b["left"] for b in boxes), geometry
    shot(page, "ask-citation")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # A [n] marker of the answer opens the page it cites.
    chips = answer.get_by_test_id("citation-chip")
    if chips.count():
        chips.first.click()
        expect(page.get_by_role("dialog")).to_be_visible()
        page.keyboard.press("Escape")

    # The same answer on a phone-sized screen: one column, nothing wider than the screen.
    page.set_viewport_size(PHONE)
    expect(answer).to_be_visible()
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "ask-answer-phone")
    page.set_viewport_size(DESKTOP)
