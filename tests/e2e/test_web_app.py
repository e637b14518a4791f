"""The web app end to end, in Chromium, against a real server and a real collection.

One person's session, in order: sign in, create a collection, create a record with two images
(then add and remove one), upload a batch, search by image and by text, open a result and give
feedback, review a duplicate cluster and an anomaly; then the same app on a phone-sized screen.
Each view is saved as a screenshot for a person to look at.
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


class Shots:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    def __call__(self, page: Page, name: str) -> None:
        self.count += 1
        # Let the thumbnails in view arrive, as a person would see them.
        page.wait_for_load_state("networkidle")
        with contextlib.suppress(playwright.TimeoutError):
            page.wait_for_function(_THUMBNAILS_IN_VIEW_LOADED, timeout=5_000)
        page.screenshot(path=self.folder / f"{self.count:02d}-{name}.png", full_page=True)


@pytest.fixture(scope="module")
def shot(out_dir: Path) -> Shots:
    for old in out_dir.glob("*.png"):
        old.unlink()
    return Shots(out_dir)


@pytest.fixture(scope="module")
def page(browser: Any, server: Server) -> Iterator[Page]:
    context = browser.new_context(
        viewport={"width": 1280, "height": 860}, base_url=server.url, locale="en-GB"
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
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
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()


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
    # The model and vector settings are on the card.
    expect(page.get_by_text("tiny-clip").first).to_be_visible()
    page.get_by_label("Current collection").select_option(label=COLLECTION)
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
    page.get_by_label("Choose images to upload").set_input_files(payload(files, *batch))
    rows = page.get_by_test_id("upload-row")
    expect(rows).to_have_count(len(batch))
    expect(rows.filter(has_text="embedded")).to_have_count(7, timeout=90_000)
    expect(page.locator('[data-testid=upload-row][data-status="duplicate"]')).to_have_count(1)
    expect(page.locator('[data-testid=upload-row][data-status="rejected"]')).to_have_count(1)
    expect(page.get_by_text(f"Duplicate of {RECORD}")).to_be_visible()
    expect(rows.filter(has_text="notes.jpg")).to_contain_text("Rejected:")
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

    first = items.first
    name = first.get_by_role("link").first.inner_text()
    first.get_by_role("button", name="Confirm anomaly").click()
    expect(page.get_by_text(f"{name} confirmed as an anomaly")).to_be_visible()
    first.get_by_role("button", name="Mark reviewed").click()
    expect(page.get_by_text(f"Reviewed {name}")).to_be_visible()
    page.get_by_label("Show").select_option("true")
    expect(items.filter(has_text=name)).to_have_attribute("data-reviewed", "true")
    shot(page, "anomalies-reviewed")


def test_phone_viewport(browser: Any, server: Server, shot: Shots) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, base_url=server.url, is_mobile=True
    )
    token = server.token("alice", "acme")
    context.add_init_script(f"window.localStorage.setItem('lookalike.token', {token!r})")
    phone = context.new_page()
    try:
        phone.goto("/search?q=a+cat")
        expect(phone.get_by_test_id("result").first).to_be_visible()
        shot(phone, "phone-search")
        phone.get_by_role("button", name="Open menu").click()
        phone.get_by_role("link", name="Collections").click()
        expect(phone.get_by_role("link", name=COLLECTION, exact=True)).to_be_visible()
        shot(phone, "phone-collections")
    finally:
        context.close()


def test_screenshots_written(out_dir: Path, shot: Shots) -> None:
    written = sorted(out_dir.glob("*.png"))
    assert len(written) == shot.count >= 10
    assert all(Image.open(io.BytesIO(p.read_bytes())).width >= 390 for p in written)


def test_api_agrees_with_what_the_app_showed(server: Server) -> None:
    with server.api(server.token("alice", "acme")) as api:
        (collection,) = api.get("/api/collections").json()
        assert collection["name"] == COLLECTION
        assert collection["counts"]["records"] == 8  # the record and 7 uploaded files
        assert wait_until(
            lambda: (
                api.get(f"/api/collections/{collection['id']}")
                .json()["counts"]
                .get("images_pending", 0)
                == 0
            )
        )
