"""The web app end to end, in Chromium, against a real server and a real collection.

One person's session, in order: sign in, create a collection, create a record with two images
(then add and remove one), upload a batch, search by image and by text, open a result and give
feedback, review a duplicate cluster and an anomaly, meet an image-only model and an unknown
image; then every view again on a phone-sized screen (390x844; the desktop is 1280x800). Each view
is saved as a screenshot at both widths, for a person to look at.
"""

from __future__ import annotations

import base64
import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from PIL import Image

from support import jpeg, open_image, wait_until

if TYPE_CHECKING:
    from e2e.conftest import Server

pytestmark = pytest.mark.e2e

playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect
Page = playwright.Page

COLLECTION = "Shop catalogue"
RECORD = "Astronaut portrait"
IMAGE_ONLY = "Offline photos"  # a collection on the offline model, which embeds images only
UNKNOWN_IMAGE = "01J0000000000000000000000Z"
DESKTOP = {"width": 1280, "height": 800}

PHONE = {"width": 390, "height": 844}


def _small_jpeg(data: bytes, size: int = 320, quality: int = 88) -> bytes:
    image = open_image(data)
    image.thumbnail((size, size))
    return jpeg(image, quality)


@pytest.fixture(scope="module")
def files(photos: dict[str, bytes]) -> dict[str, bytes]:
    """Small JPEGs of the sample photos, plus a near-copy and a file that is not an image."""
    out = {f"{name}.jpg": _small_jpeg(photos[name]) for name in _NAMES}
    copy = open_image(out["chelsea.jpg"])
    copy = copy.resize((copy.width * 9 // 10, copy.height * 9 // 10), Image.Resampling.LANCZOS)
    out["chelsea-copy.jpg"] = jpeg(copy, 70)
    out["notes.jpg"] = b"these are meeting notes, not a photo\n" * 20
    return out


_NAMES = [
    "astronaut",
    "rocket",
    "coffee",
    "chelsea",
    "motorcycle_left",
    "motorcycle_right",
    "camera",
    "coins",
    "grace_hopper",
]


# The records of the collection: the one made by hand and one per uploaded image.
_RECORDS = [RECORD, *_NAMES, "chelsea-copy"]
# A duplicate verdict in words: it names a record, never a raw image id.
_VERDICT = re.compile(
    rf"^(Duplicate of|Near-exact copy of|Similar to) ({'|'.join(map(re.escape, _RECORDS))})$"
)


def payload(files: dict[str, bytes], *names: str) -> list[dict[str, Any]]:
    return [{"name": n, "mimeType": "image/jpeg", "buffer": files[n]} for n in names]


_PASTE = """(b64) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const data = new DataTransfer();
    data.items.add(new File([bytes], "pasted.jpg", { type: "image/jpeg" }));
    const paste = new ClipboardEvent("paste", { clipboardData: data, bubbles: true });
    document.body.dispatchEvent(paste);
}"""

_THUMBNAILS_IN_VIEW_LOADED = """() => [...document.querySelectorAll('[aria-label$="(loading)"]')]
    .every((el) => el.getBoundingClientRect().top > window.innerHeight)"""

# What the header shows of the current collection: the picker beside the logo, not over it, wide
# enough for the selected name (the text of a <select> is clipped, never wrapped).
_HEADER = """() => {
    const picker = document.querySelector('#collection-picker');
    const logo = [...document.querySelectorAll('[data-testid=logo]')]
        .find((el) => el.getClientRects().length > 0);
    const box = picker.getBoundingClientRect();
    const style = getComputedStyle(picker);
    const context = document.createElement('canvas').getContext('2d');
    context.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
    const name = picker.selectedOptions[0].text;
    const padding = parseFloat(style.paddingLeft) + parseFloat(style.paddingRight);
    const room = picker.clientWidth - padding;
    return {
        name,
        overlaps: logo.getBoundingClientRect().right > box.left,
        fits: context.measureText(name).width <= room,
        overflows: document.documentElement.scrollWidth > window.innerWidth,
    };
}"""

# Values of the collection cards that are cut (ellipsis or clipped) instead of shown in full.
_CUT_SETTINGS = """() => [...document.querySelectorAll('[data-testid=collection-card] dd')]
    .filter((dd) => dd.scrollWidth > dd.clientWidth).map((dd) => dd.textContent)"""

# Every change of the upload summary: the files and the sum of its counts.
_WATCH_UPLOAD_COUNTS = """() => {
    window.uploadCounts = [];
    new MutationObserver(() => {
        const summary = document.querySelector('[data-testid=upload-summary]');
        if (!summary) return;
        const [files, ...counts] = [...summary.children]
            .map((el) => parseInt(el.textContent, 10)).filter((n) => !Number.isNaN(n));
        window.uploadCounts.push([files, counts.reduce((a, b) => a + b, 0)]);
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
}"""


class Shots:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    def __call__(self, page: Page, name: str, *, full_page: bool = True) -> None:
        """`full_page=False` for a view in front of the page (a panel), which the page's own
        length would only pad out."""
        self.count += 1
        # Let the thumbnails in view arrive, as a person would see them.
        page.wait_for_load_state("networkidle")
        with contextlib.suppress(playwright.TimeoutError):
            page.wait_for_function(_THUMBNAILS_IN_VIEW_LOADED, timeout=5_000)
        page.screenshot(path=self.folder / f"{self.count:02d}-{name}.png", full_page=full_page)


@pytest.fixture(scope="module")
def shot(out_dir: Path) -> Shots:
    for old in out_dir.glob("*.png"):
        old.unlink()
    return Shots(out_dir)


@pytest.fixture(scope="module")
def page(browser: Any, server: Server) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP, base_url=server.url, locale="en-GB")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    context.set_default_timeout(20_000)
    errors: list[str] = []
    p = context.new_page()
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    yield p
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture(scope="module")
def phone(browser: Any, server: Server) -> Iterator[Page]:
    """The same person on a phone: a browser of its own, signed in through the form."""
    context = browser.new_context(
        viewport=PHONE, base_url=server.url, locale="en-GB", is_mobile=True, has_touch=True
    )
    context.set_default_timeout(20_000)
    errors: list[str] = []
    p = context.new_page()
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    yield p
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def _has_route(server: Server, path: str) -> bool:
    paths = httpx.get(f"{server.url}/api/openapi.json", timeout=10).json()["paths"]
    return path in paths


def _nav(page: Page, name: str) -> None:
    if page.get_by_role("button", name="Open menu").is_visible():  # a phone: the menu first
        page.get_by_role("button", name="Open menu").click()
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()


def _header_shows_collection(page: Page, name: str) -> None:
    expect(page.get_by_label("Current collection")).to_be_visible()
    header = page.evaluate(_HEADER)
    assert header["name"] == name
    assert not header["overlaps"], "the collection picker covers the logo"
    assert header["fits"], f"the picker is too narrow to show {name!r}"
    assert not header["overflows"], "the page is wider than the screen"


def _settings_in_full(page: Page) -> None:
    expect(page.get_by_test_id("collection-card").first).to_be_visible()
    assert page.evaluate(_CUT_SETTINGS) == []


def _search_text_on_image_only_model(page: Page) -> None:
    """The Text tab of a collection whose model has no text tower: why, and how to get one."""
    page.get_by_label("Current collection").select_option(label=IMAGE_ONLY)
    _nav(page, "Search")
    # Nothing found in the collection searched before is shown as this one's.
    expect(page.get_by_role("heading", name="Find look-alikes")).to_be_visible()
    page.get_by_role("tab", name="Text").click()
    expect(page.get_by_label("Describe what you look for")).to_be_disabled()
    note = page.get_by_text("embeds images only")
    expect(note).to_contain_text("efficientnet-lite0")
    expect(note).to_contain_text("lookalike model pull clip-vit-b-32-laion2b")
    expect(note).to_contain_text("pip install 'lookalike[export]'")
    expect(page.get_by_role("button", name="Search", exact=True)).to_be_disabled()


def _unknown_image(page: Page) -> None:
    """A link to a search by an image that does not exist: said so, with a way back, no Retry."""
    page.goto(f"/search?image={UNKNOWN_IMAGE}")
    expect(page.get_by_role("heading", name="No such image")).to_be_visible()
    expect(page.get_by_text(UNKNOWN_IMAGE, exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)


def _back_from_unknown_image(page: Page) -> None:
    page.get_by_role("button", name="Back to search").click()
    expect(page.get_by_role("heading", name="Find look-alikes")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/search$"))


def _not_found(page: Page) -> None:
    page.goto("/no-such-view")
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()


def test_sign_in(page: Page, server: Server, shot: Shots) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/signin"))
    expect(page.get_by_role("heading", name="Sign in to Lookalike")).to_be_visible()
    shot(page, "sign-in")

    page.get_by_label("Access token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("invalid token")
    shot(page, "sign-in-error")

    page.get_by_label("Access token").fill(server.token("alice", "acme"))
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/collections$"))
    expect(page.get_by_test_id("tenant")).to_have_text("acme")
    expect(page.get_by_role("heading", name="No collections yet")).to_be_visible()
    shot(page, "collections-empty")


def test_collections(page: Page, shot: Shots) -> None:
    for name in ("shop", "scratch"):
        page.get_by_role("button", name="New collection").first.click()
        dialog = page.get_by_role("dialog", name="New collection")
        dialog.get_by_label("Name").fill(name)
        dialog.get_by_label("Description").fill(f"{name} photos")
        if name == "shop":
            shot(page, "collection-create")
        dialog.get_by_role("button", name="Create collection").click()
        expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()

    page.get_by_role("button", name="Actions for shop").click()
    page.get_by_role("menuitem", name="Rename").click()
    dialog = page.get_by_role("dialog", name="Edit collection")
    dialog.get_by_label("Name").fill(COLLECTION)
    dialog.get_by_role("button", name="Save").click()
    expect(page.get_by_role("link", name=COLLECTION, exact=True)).to_be_visible()

    page.get_by_role("button", name="Actions for scratch").click()
    page.get_by_role("menuitem", name="Delete").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Delete collection").click()
    expect(page.get_by_role("alertdialog")).to_have_count(0)
    expect(page.get_by_role("link", name="scratch", exact=True)).to_have_count(0)
    # The model and vector settings are on the card, none of them cut.
    expect(page.get_by_text("tiny-clip").first).to_be_visible()
    _settings_in_full(page)
    page.get_by_label("Current collection").select_option(label=COLLECTION)
    _header_shows_collection(page, COLLECTION)
    shot(page, "collections")


def test_record_with_two_images(page: Page, files: dict[str, bytes], shot: Shots) -> None:
    page.get_by_role("link", name=COLLECTION, exact=True).click()
    expect(page.get_by_role("heading", name="No records in this collection")).to_be_visible()
    page.get_by_role("button", name="New record").first.click()

    page.get_by_label("Name").fill(RECORD)
    page.get_by_label("Description").fill("Official NASA portrait, 1984")
    tags = page.get_by_label("Tags", exact=True)
    for tag in ("space", "portrait"):
        tags.fill(tag)
        tags.press("Enter")
    page.get_by_label("Add images to the record").set_input_files(
        payload(files, "astronaut.jpg", "rocket.jpg")
    )
    expect(page.get_by_role("list", name="Images to add").get_by_role("listitem")).to_have_count(2)
    shot(page, "record-new")
    page.get_by_role("button", name="Create record").click()

    expect(page).to_have_url(re.compile(r"/records/\w+"))
    expect(page.get_by_role("heading", name=RECORD)).to_be_visible()
    tiles = page.get_by_test_id("record-image")
    expect(tiles).to_have_count(2)
    expect(tiles.filter(has_text="embedded")).to_have_count(2, timeout=60_000)
    shot(page, "record")

    # An image added to, and one removed from, the existing record.
    page.get_by_label("Add images to the record").set_input_files(payload(files, "coffee.jpg"))
    expect(tiles).to_have_count(3)
    page.get_by_role("button", name="Remove image rocket.jpg").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Remove image").click()
    expect(tiles).to_have_count(2)
    expect(page.get_by_text("rocket.jpg")).to_have_count(0)
    page.get_by_label("Description").fill("Official NASA portrait, 1984, with coffee")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_text("Record saved")).to_be_visible()
    expect(tiles.filter(has_text="embedded")).to_have_count(2, timeout=60_000)
    shot(page, "record-edited")

    page.get_by_role("link", name="Records").click()
    expect(page.get_by_role("list", name="Records").get_by_role("link")).to_have_count(1)
    page.get_by_label("Search records by name").fill("nothing like this")
    expect(page.get_by_text("No record named like")).to_be_visible()
    page.get_by_label("Search records by name").fill("astro")
    expect(page.get_by_role("list", name="Records").get_by_role("link")).to_have_count(1)
    shot(page, "records")


def test_upload_batch(page: Page, files: dict[str, bytes], shot: Shots) -> None:
    _nav(page, "Upload")
    batch = [
        "chelsea.jpg",
        "chelsea-copy.jpg",
        "motorcycle_left.jpg",
        "motorcycle_right.jpg",
        "camera.jpg",
        "coins.jpg",
        "grace_hopper.jpg",
        "astronaut.jpg",  # the same bytes as the record's image: a duplicate
        "notes.jpg",  # not an image: rejected, with the reason
    ]
    page.evaluate(_WATCH_UPLOAD_COUNTS)
    page.get_by_label("Choose images to upload").set_input_files(payload(files, *batch))
    rows = page.get_by_test_id("upload-row")
    expect(rows).to_have_count(len(batch))
    expect(rows.filter(has_text="embedded")).to_have_count(7, timeout=90_000)
    summary = page.get_by_test_id("upload-summary")
    expect(summary).to_contain_text("9 files")
    expect(summary).to_contain_text("7 added")
    expect(summary).to_contain_text("1 duplicate")
    expect(summary).to_contain_text("1 rejected")
    # While it ran, and after, the counts added up to the number of files.
    counts = page.evaluate("window.uploadCounts")
    assert counts, "the upload summary never changed"
    assert all(c == [len(batch), len(batch)] for c in counts), counts
    expect(page.locator('[data-testid=upload-row][data-status="duplicate"]')).to_have_count(1)
    expect(page.locator('[data-testid=upload-row][data-status="rejected"]')).to_have_count(1)
    expect(page.get_by_text(f"Duplicate of {RECORD}")).to_be_visible()
    expect(rows.filter(has_text="notes.jpg")).to_contain_text("Rejected:")
    # Verdicts name the record they point at, and link to it.
    for verdict in page.get_by_test_id("verdict").all():
        expect(verdict).to_have_text(_VERDICT)
        expect(verdict.get_by_role("link")).to_have_attribute("href", re.compile(r"^/records/\w+$"))
    shot(page, "upload")


def test_search_by_image(page: Page, files: dict[str, bytes], shot: Shots) -> None:
    _nav(page, "Search")
    expect(page.get_by_role("heading", name="Find look-alikes")).to_be_visible()
    page.get_by_label("Query image").set_input_files(payload(files, "chelsea.jpg"))
    results = page.get_by_test_id("result")
    expect(results.first).to_be_visible()
    expect(results.first).to_contain_text("chelsea")
    expect(results.first).to_contain_text("1.000")
    shot(page, "search-image")

    # In the detail panel too, a verdict names the other record, and opens its image. Which
    # images have one is up to the tiny test model: the first result that has one.
    panel = page.get_by_role("dialog")
    verdict = panel.get_by_test_id("verdict")
    checked = verdict.or_(panel.get_by_text("No duplicate found when it was added."))
    for result in results.all():
        result.click()
        expect(checked).to_be_visible()
        if verdict.count():
            break
        page.keyboard.press("Escape")
        expect(panel).to_have_count(0)
    expect(verdict).to_have_text(_VERDICT)
    verdict.scroll_into_view_if_needed()
    shot(page, "detail-verdict", full_page=False)
    other = verdict.get_by_role("button")
    other_name = other.inner_text()
    other.click()
    expect(panel.get_by_role("heading", name=other_name, exact=True)).to_be_visible()
    page.keyboard.press("Escape")
    expect(panel).to_have_count(0)

    # An image pasted from the clipboard searches at once.
    page.evaluate(_PASTE, base64.b64encode(files["coins.jpg"]).decode())
    expect(page.get_by_role("img", name="Query")).to_be_visible()
    expect(results.first).to_contain_text("coins")


def test_search_by_text(page: Page, shot: Shots) -> None:
    page.get_by_role("tab", name="Text").click()
    page.get_by_label("Describe what you look for").fill("a cat on a sofa")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page).to_have_url(re.compile(r"q=a\+cat"))
    expect(page.get_by_test_id("result").first).to_be_visible()
    shot(page, "search-text")


def test_detail_and_feedback(page: Page, server: Server, shot: Shots) -> None:
    page.get_by_test_id("result").first.click()
    panel = page.get_by_role("dialog")
    expect(panel).to_be_visible()
    expect(panel.get_by_text("1 / ")).to_be_visible()
    expect(panel.get_by_role("heading", name="Similar images")).to_be_visible()
    similar = panel.get_by_role("list", name="Similar images")
    expect(similar.get_by_role("listitem").first).to_be_visible()
    expect(panel.get_by_text("Duplicate verdict")).to_be_visible()
    page.keyboard.press("ArrowRight")
    expect(panel.get_by_text("2 / ")).to_be_visible()
    page.keyboard.press("ArrowLeft")
    expect(panel.get_by_text("1 / ")).to_be_visible()

    panel.get_by_role("button", name="Copy id").click()
    expect(page.get_by_text("Image id copied")).to_be_visible()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert re.fullmatch(r"[0-9A-Z]{26}", copied)

    panel.get_by_role("button", name="Relevant", exact=True).click()
    expect(page.get_by_text("Marked relevant")).to_be_visible()
    history = panel.get_by_role("list", name="Feedback history")
    expect(history).to_contain_text("relevant")
    expect(history).to_contain_text("a cat on a sofa")
    shot(page, "detail")

    # "Find similar" searches by this image's id.
    panel.get_by_role("button", name="Find similar").click()
    expect(panel).to_have_count(0)
    expect(page).to_have_url(re.compile(r"image=" + copied))
    expect(page.get_by_label("…or an image id")).to_have_value(copied)
    expect(page.get_by_test_id("result").first).to_be_visible()
    page.get_by_test_id("result").first.click()
    expect(panel).to_be_visible()
    page.keyboard.press("Escape")
    expect(panel).to_have_count(0)


def test_dedup(page: Page, server: Server, shot: Shots) -> None:
    if not _has_route(server, "/api/collections/{collection_id}/clusters"):
        pytest.skip("the server has no duplicate-cluster routes yet")
    _nav(page, "Dedup")
    page.get_by_role("button", name="Find duplicates").first.click()
    clusters = page.get_by_test_id("cluster")
    expect(clusters.first).to_be_visible(timeout=60_000)
    # The near-copy and its original make one cluster (the tiny test model may add others); it
    # may be shown inside a similar cluster that holds it: the innermost card is the copies'.
    chelsea = clusters.filter(has_text="chelsea-copy").last
    expect(chelsea.get_by_role("button", name="Open chelsea", exact=True)).to_be_visible()
    expect(chelsea).to_contain_text("Suggested keeper")
    shot(page, "dedup")

    chelsea.get_by_role("button", name="Mark duplicates").click()
    expect(page.get_by_text("Marked as duplicates")).to_be_visible()
    page.get_by_role("group", name="Show clusters").get_by_role(
        "button", name="Duplicates", exact=True
    ).click()
    decided = page.get_by_test_id("cluster").filter(has_text="chelsea-copy").last
    expect(decided).to_have_attribute("data-status", "duplicate")
    decided.get_by_role("button", name="Tag").click()
    tag = page.get_by_role("dialog").get_by_label("Tags to add")
    tag.fill("duplicate-reviewed")
    tag.press("Enter")
    page.get_by_role("dialog").get_by_role("button", name="Add tags").click()
    expect(page.get_by_text("Tagged duplicate-reviewed")).to_be_visible()
    shot(page, "dedup-decided")


def test_anomalies(page: Page, server: Server, shot: Shots) -> None:
    if not _has_route(server, "/api/qa/anomalies"):
        pytest.skip("the server has no anomaly-review routes yet")
    _nav(page, "Anomalies")
    items = page.get_by_test_id("anomaly")
    page.get_by_role("button", name="Recompute scores").click()
    expect(page.get_by_text("Anomaly scores recomputed")).to_be_visible(timeout=120_000)
    # "Needs review" lists junk and strong outliers only; every image is under "All".
    page.get_by_label("Which images").select_option("all")
    expect(items.first).to_be_visible()
    page.get_by_label("Sort by").select_option("density")
    expect(items.first).to_be_visible()
    shot(page, "anomalies")

    # At the foot of this long page the navigation is still in view, and the sidebar still runs
    # the full height of the window.
    page.wait_for_load_state("networkidle")
    assert page.evaluate("document.documentElement.scrollHeight") > DESKTOP["height"] + 200
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    sidebar = page.get_by_role("complementary")
    expect(sidebar.get_by_role("link", name="Collections")).to_be_in_viewport(ratio=1)
    expect(sidebar.get_by_role("link", name="Anomalies")).to_be_in_viewport(ratio=1)
    box = sidebar.bounding_box()
    assert box is not None and box["y"] < 0 and box["y"] + box["height"] >= DESKTOP["height"]
    page.evaluate("window.scrollTo(0, 0)")

    first = items.first
    name = first.get_by_role("link").first.inner_text()
    first.get_by_role("button", name="Confirm anomaly").click()
    expect(page.get_by_text(f"{name} confirmed as an anomaly")).to_be_visible()
    first.get_by_role("button", name="Mark reviewed").click()
    expect(page.get_by_text(f"Reviewed {name}")).to_be_visible()
    page.get_by_label("Show").select_option("true")
    expect(items.filter(has_text=name)).to_have_attribute("data-reviewed", "true")
    shot(page, "anomalies-reviewed")


def test_image_only_model(page: Page, shot: Shots) -> None:
    _nav(page, "Collections")
    page.get_by_role("button", name="New collection").first.click()
    dialog = page.get_by_role("dialog", name="New collection")
    dialog.get_by_label("Name").fill(IMAGE_ONLY)
    dialog.get_by_label("Model").fill("efficientnet-lite0")
    dialog.get_by_role("button", name="Create collection").click()
    card = page.get_by_test_id("collection-card").filter(
        has=page.get_by_role("link", name=IMAGE_ONLY, exact=True)
    )
    expect(card).to_contain_text("image search only", timeout=60_000)
    expect(card.get_by_text("efficientnet-lite0", exact=True)).to_be_visible()
    _settings_in_full(page)
    _header_shows_collection(page, IMAGE_ONLY)  # a new collection becomes the current one
    shot(page, "collections-image-only")

    _search_text_on_image_only_model(page)
    shot(page, "search-text-image-only")
    page.get_by_label("Current collection").select_option(label=COLLECTION)


def test_unknown_image_and_page(page: Page, shot: Shots) -> None:
    _unknown_image(page)
    shot(page, "search-unknown-image")
    _back_from_unknown_image(page)
    _not_found(page)
    shot(page, "not-found")


def test_phone_sign_in_and_collections(phone: Page, server: Server, shot: Shots) -> None:
    phone.goto("/")
    expect(phone.get_by_role("heading", name="Sign in to Lookalike")).to_be_visible()
    shot(phone, "phone-sign-in")
    phone.get_by_label("Access token").fill(server.token("alice", "acme"))
    phone.get_by_role("button", name="Sign in").click()
    expect(phone).to_have_url(re.compile(r"/collections$"))
    expect(phone.get_by_role("link", name=COLLECTION, exact=True)).to_be_visible()
    phone.get_by_label("Current collection").select_option(label=COLLECTION)
    # The header: the logo, and the current collection by name beside it.
    _header_shows_collection(phone, COLLECTION)
    _settings_in_full(phone)
    shot(phone, "phone-collections")

    phone.get_by_role("button", name="Open menu").click()
    expect(phone.get_by_role("navigation", name="Main")).to_be_visible()
    expect(phone.get_by_text("Signed in as alice")).to_be_visible()
    shot(phone, "phone-menu")
    phone.get_by_role("button", name="Close menu").click()
    expect(phone.get_by_role("navigation", name="Main")).to_have_count(0)


def test_phone_records(phone: Page, shot: Shots) -> None:
    phone.get_by_role("link", name=COLLECTION, exact=True).click()
    records = phone.get_by_role("list", name="Records").get_by_role("link")
    expect(records).to_have_count(8)
    _header_shows_collection(phone, COLLECTION)
    shot(phone, "phone-records")

    records.filter(has_text=RECORD).click()
    expect(phone.get_by_role("heading", name=RECORD)).to_be_visible()
    expect(phone.get_by_test_id("record-image")).to_have_count(2)
    _header_shows_collection(phone, COLLECTION)
    shot(phone, "phone-record")

    phone.go_back()
    phone.get_by_role("button", name="New record").first.click()
    expect(phone.get_by_label("Add images to the record")).to_be_attached()
    _header_shows_collection(phone, COLLECTION)
    shot(phone, "phone-record-new")


def test_phone_upload(phone: Page, files: dict[str, bytes], shot: Shots) -> None:
    _nav(phone, "Upload")
    # Already in the collection, and not an image: nothing new is stored.
    phone.get_by_label("Choose images to upload").set_input_files(
        payload(files, "coins.jpg", "notes.jpg")
    )
    expect(phone.locator('[data-testid=upload-row][data-status="duplicate"]')).to_have_count(1)
    expect(phone.locator('[data-testid=upload-row][data-status="rejected"]')).to_have_count(1)
    expect(phone.get_by_test_id("upload-summary")).to_contain_text("1 duplicate")
    _header_shows_collection(phone, COLLECTION)
    shot(phone, "phone-upload")


def test_phone_search(phone: Page, files: dict[str, bytes], shot: Shots) -> None:
    _nav(phone, "Search")
    phone.get_by_label("Query image").set_input_files(payload(files, "chelsea.jpg"))
    results = phone.get_by_test_id("result")
    expect(results.first).to_contain_text("1.000")
    _header_shows_collection(phone, COLLECTION)
    shot(phone, "phone-search-image")

    results.first.click()
    panel = phone.get_by_role("dialog")
    similar = panel.get_by_role("list", name="Similar images")
    expect(similar.get_by_role("listitem").first).to_be_visible()
    shot(phone, "phone-detail", full_page=False)
    panel.get_by_role("button", name="Close details").click()
    expect(panel).to_have_count(0)

    phone.goto("/search?q=a+cat")
    expect(results.first).to_be_visible()
    _header_shows_collection(phone, COLLECTION)
    shot(phone, "phone-search-text")

    _search_text_on_image_only_model(phone)
    _header_shows_collection(phone, IMAGE_ONLY)
    shot(phone, "phone-search-text-image-only")
    phone.get_by_label("Current collection").select_option(label=COLLECTION)


def test_phone_review(phone: Page, server: Server, shot: Shots) -> None:
    if _has_route(server, "/api/collections/{collection_id}/clusters"):
        _nav(phone, "Dedup")
        phone.get_by_role("group", name="Show clusters").get_by_role("button", name="All").click()
        expect(phone.get_by_test_id("cluster").first).to_be_visible()
        _header_shows_collection(phone, COLLECTION)
        shot(phone, "phone-dedup")
    if _has_route(server, "/api/qa/anomalies"):
        _nav(phone, "Anomalies")
        phone.get_by_label("Which images").select_option("all")
        expect(phone.get_by_test_id("anomaly").first).to_be_visible()
        _header_shows_collection(phone, COLLECTION)
        shot(phone, "phone-anomalies")


def test_phone_unknown_image_and_page(phone: Page, shot: Shots) -> None:
    _unknown_image(phone)
    _header_shows_collection(phone, COLLECTION)
    shot(phone, "phone-search-unknown-image")
    _back_from_unknown_image(phone)
    _not_found(phone)
    shot(phone, "phone-not-found")


def test_screenshots_written(out_dir: Path, shot: Shots) -> None:
    written = sorted(out_dir.glob("*.png"))
    assert len(written) == shot.count >= 10
    assert all(Image.open(io.BytesIO(p.read_bytes())).width >= 390 for p in written)


def test_api_agrees_with_what_the_app_showed(server: Server) -> None:
    with server.api(server.token("alice", "acme")) as api:
        collections = {c["name"]: c for c in api.get("/api/collections").json()}
        assert sorted(collections) == sorted([COLLECTION, IMAGE_ONLY])
        assert not collections[IMAGE_ONLY]["supports_text"]
        collection = collections[COLLECTION]
        assert collection["counts"]["records"] == 8  # the record and 7 uploaded files
        assert wait_until(
            lambda: (
                api.get(f"/api/collections/{collection['id']}")
                .json()["counts"]
                .get("images_pending", 0)
                == 0
            )
        )
