"""OCR as an enrichment stage: scanned pages (no text layer) are read after they are searchable,
born-digital pages are not, and a collection chooses whether every image is read."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import matplotlib
import pytest
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont
from reportlab.lib.pagesizes import letter
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas
from sqlalchemy import select

from lookalike.catalog import Image
from lookalike.catalog.models import ImageStage, ImageText
from lookalike.composition import Lookalike
from lookalike.enrichment.runner import StageBatch, StageItem
from lookalike.ingest.pdf import open_pdf
from lookalike.ingest.pipeline import IngestFile, NewRecord
from lookalike.rag.ocr import OcrStage, TextReader
from lookalike.records.service import VectorOptions, create_collection
from support import make_settings, settle

LINES = ["Invoice number 4711", "Harbour crane maintenance", "Total amount due 980 EUR"]
WORDS = {w.lower() for line in LINES for w in line.split()}


def scanned_page(lines: list[str] = LINES) -> PILImage.Image:
    """Text as pixels only, in DejaVu Sans (matplotlib ships it)."""
    font_path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    font = ImageFont.truetype(str(font_path), 44)
    image = PILImage.new("RGB", (1275, 900), "white")
    draw = ImageDraw.Draw(image)
    for n, line in enumerate(lines):
        draw.text((90, 120 + n * 150), line, fill="black", font=font)
    return image


def scanned_pdf() -> bytes:
    """Page 1: a scan (an image, no text layer); page 2: born-digital text."""
    out = io.BytesIO()
    c = canvas.Canvas(out, pagesize=letter)
    width, height = letter
    c.drawImage(ImageReader(scanned_page()), 0, height - 900 * 72 / 150, width, 900 * 72 / 150)
    c.showPage()
    c.setFont("Helvetica", 20)
    c.drawString(72, 700, "born digital ledger")
    c.showPage()
    c.save()
    return out.getvalue()


def texts(rt: Lookalike, source: str) -> dict[str, ImageText]:
    with rt.catalog.session() as s:
        rows = s.scalars(select(ImageText).where(ImageText.source == source)).all()
        s.expunge_all()
        return {r.image_id: r for r in rows}


def stage_status(rt: Lookalike, image_id: str) -> str:
    with rt.catalog.session() as s:
        row = s.get(ImageStage, (image_id, "ocr"))
        assert row is not None
        return row.status


def found_words(text: ImageText) -> set[str]:
    return {str(w[4]).lower().strip(".,:") for w in text.words or []}


def test_scanned_page_is_read_after_it_is_searchable(rt: Lookalike) -> None:
    coll = create_collection(rt, "default", "scans")
    assert coll.vector_settings["ocr"] == "pages"  # the server's default
    results = rt.ingest.add_document(
        coll,
        NewRecord(name="scan", owner="t"),
        open_pdf(scanned_pdf(), rt.settings, name="scan.pdf"),
        wait=True,
    )
    scan, digital = (r.image_id for r in results)
    assert scan is not None and digital is not None
    with rt.catalog.session() as s:
        page = s.get(Image, scan)
        assert page is not None and page.status == "embedded"  # searchable before any OCR
        width, height = page.width, page.height
    settle(rt)
    ocr = texts(rt, "ocr")
    assert set(ocr) == {scan}  # the born-digital page has its text layer
    assert stage_status(rt, scan) == "done" and stage_status(rt, digital) == "skipped"
    # OCR noise is allowed: most words are read.
    got = found_words(ocr[scan])
    assert len(WORDS & got) >= 0.8 * len(WORDS), got
    assert "harbour" in ocr[scan].text.lower()
    for x0, y0, x1, y1, word, conf in ocr[scan].words or []:
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, word
        assert 0 < conf <= 1
    # Words sit where they were drawn: "Invoice" on the first line, "Total" on the third.
    by_word = {str(w[4]).lower(): w for w in ocr[scan].words or []}
    assert by_word["invoice"][1] < by_word["total"][1]
    assert by_word["invoice"][0] == pytest.approx(90 * width / 1275, abs=25)


def test_collection_chooses_what_is_read(rt: Lookalike) -> None:
    png = io.BytesIO()
    scanned_page().save(png, format="PNG")
    photo = IngestFile(png.getvalue(), filename="sign.png")
    everything = create_collection(rt, "default", "all", options=VectorOptions(ocr="all"))
    nothing = create_collection(rt, "default", "none", options=VectorOptions(ocr="off"))
    pages_only = create_collection(rt, "default", "pages")
    ids = {}
    for coll in (everything, nothing, pages_only):
        (result,) = rt.ingest.add(coll, NewRecord(name="sign", owner="t"), [photo], wait=True)
        ids[coll.name] = result.image_id
    settle(rt)
    ocr = texts(rt, "ocr")
    assert set(ocr) == {ids["all"]}
    assert len(WORDS & found_words(ocr[ids["all"]])) >= 0.8 * len(WORDS)
    assert stage_status(rt, ids["none"]) == "skipped"
    assert stage_status(rt, ids["pages"]) == "skipped"


def test_without_rapidocr_the_stage_skips(
    tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No enrichment in the background: this test runs the stage itself.
    with Lookalike(make_settings(tmp_path / "data", models_dir, enrichment=False)) as rt:
        _skips_without_rapidocr(rt, monkeypatch)


def _skips_without_rapidocr(rt: Lookalike, monkeypatch: pytest.MonkeyPatch) -> None:
    coll = create_collection(rt, "default", "bare", options=VectorOptions(ocr="all"))
    png = io.BytesIO()
    scanned_page(["no reader here"]).save(png, format="PNG")
    (result,) = rt.ingest.add(
        coll, NewRecord(name="x", owner="t"), [IngestFile(png.getvalue())], wait=True
    )
    with rt.catalog.session() as s:
        image = s.get(Image, result.image_id)
        assert image is not None
        s.expunge(image)
    # An installation without the package: its import fails.
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)
    stage = OcrStage(rt.settings, rt.catalog, rt.blobs, TextReader(1))
    batch = StageBatch(coll, [StageItem(image)])
    assert stage.run(batch) == {}
    assert batch.skipped == {image.id}
    assert texts(rt, "ocr") == {}
