"""PDF ingest: one record per document, an image per page with its text layer, on every path
(command line, multipart, presign + ingest, folder watch); refused PDFs change nothing."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from reportlab.lib.pagesizes import letter
from reportlab.pdfgen import canvas
from sqlalchemy import func, select
from typer.testing import CliRunner

from lookalike.catalog import Image, Record
from lookalike.catalog.models import ImageText
from lookalike.cli import app
from lookalike.composition import Lookalike
from lookalike.core.errors import InvalidDocument
from lookalike.ingest.pdf import open_pdf
from lookalike.ingest.pipeline import NewRecord
from lookalike.ingest.watcher import FolderWatcher
from lookalike.records.service import create_collection
from support import make_settings, offline_cli_env, wait_until


@pytest.fixture
def client(rt: Lookalike) -> Iterator[TestClient]:
    from lookalike.api.app import create_app

    with TestClient(create_app(runtime=rt)) as c:
        yield c


def page_words(doc: str, page: int) -> list[str]:
    """Words known to be on `page` of document `doc`, distinct from every other page's."""
    return [f"{doc}p{page}", "quarterly", f"w{page * 7 + len(doc)}x", "ledger"]


def make_pdf(
    doc: str,
    pages: int,
    *,
    title: str | None = None,
    encrypt: str | None = None,
    blank: tuple[int, ...] = (),
) -> bytes:
    """A born-digital PDF: each page shows `page_words(doc, n)` in two lines; `blank` pages
    are empty."""
    out = io.BytesIO()
    c = canvas.Canvas(out, pagesize=letter, encrypt=encrypt)
    c.setTitle(title or f"Title of {doc}")
    c.setAuthor("Ada Author")
    for n in range(1, pages + 1):
        if n not in blank:
            words = page_words(doc, n)
            c.setFont("Helvetica", 20)
            c.drawString(72, 700, " ".join(words[:2]))
            c.drawString(72, 600, " ".join(words[2:]))
        c.showPage()
    c.save()
    return out.getvalue()


def document_pages(rt: Lookalike, name: str) -> tuple[Record, list[tuple[Image, ImageText]]]:
    with rt.catalog.session() as s:
        (record,) = s.scalars(select(Record).where(Record.name == name)).all()
        rows = s.execute(
            select(Image, ImageText)
            .join(ImageText, ImageText.image_id == Image.id)
            .where(Image.record_id == record.id, ImageText.source == "text_layer")
            .order_by(Image.page)
        ).all()
        s.expunge_all()
        return record, [(i, t) for i, t in rows]


def check_document(rt: Lookalike, name: str, doc: str, pages: int) -> Record:
    """Each page is an embedded image of the one record, in order, with its page number in the
    catalog and the payload, and its words in the text layer with boxes inside the image."""
    record, rows = document_pages(rt, name)
    assert [i.page for i, _ in rows] == list(range(1, pages + 1))
    assert record.extra["page_count"] == pages
    assert record.extra["document"]["author"] == "Ada Author"
    points = {p.id: p for p in rt.vectors.retrieve(record.collection_id, [i.id for i, _ in rows])}
    for image, text in rows:
        assert image.status == "embedded" and image.mime == "image/png"
        assert points[image.id].payload["page"] == image.page
        assert points[image.id].payload["page_count"] == pages
        assert points[image.id].payload["record_id"] == record.id
        known = page_words(doc, image.page or 0)
        assert text.text.split() == known
        words = text.words or []
        assert [w[4] for w in words] == known
        for x0, y0, x1, y1, _, conf in words:
            assert 0 <= x0 < x1 <= image.width and 0 <= y0 < y1 <= image.height
            assert conf == 1.0
        # The first line is above the second on the page: smaller y in pixels.
        assert words[0][1] < words[2][1]
    return record


def counts(rt: Lookalike) -> tuple[int, int, int, int]:
    with rt.catalog.session() as s:
        records = s.scalar(select(func.count()).select_from(Record)) or 0
        images = s.scalar(select(func.count()).select_from(Image)) or 0
        texts = s.scalar(select(func.count()).select_from(ImageText)) or 0
    return records, images, texts, len(rt.blobs.iter_keys())


def test_command_line_makes_one_record_per_pdf(
    tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch, photos: dict[str, bytes]
) -> None:
    data = tmp_path / "data"
    offline_cli_env(monkeypatch, data, models_dir)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "annual report.pdf").write_bytes(make_pdf("ar", 3))
    (folder / "memo.pdf").write_bytes(make_pdf("memo", 2))
    (folder / "cat.png").write_bytes(photos["chelsea"])
    (folder / "locked.pdf").write_bytes(make_pdf("lk", 1, encrypt="pw"))
    runner = CliRunner()
    r = runner.invoke(app, ["ingest", str(folder), "--collection", "docs"])
    assert r.exit_code == 0, r.output
    assert "added 6, skipped as duplicate 0, rejected 1 (5 pages of 3 documents)" in r.output
    assert "locked.pdf" in r.output and "password" in r.output
    # Once more: every page is stored already, and no second record is made.
    r = runner.invoke(app, ["ingest", str(folder / "memo.pdf"), "--collection", "docs"])
    assert "added 0, skipped as duplicate 2" in r.output
    with Lookalike(make_settings(data, models_dir)) as rt:
        check_document(rt, "annual report", "ar", 3)
        check_document(rt, "memo", "memo", 2)
        assert counts(rt)[0] == 3  # two documents and the photo


def test_multipart_record_with_a_pdf_is_the_document(client: TestClient) -> None:
    assert client.post("/api/collections", json={"name": "docs"}).status_code == 201
    pdf = make_pdf("mp", 3, title="Multipart")
    r = client.post(
        "/api/collections/docs/records?wait=true",
        data={"name": "Contract", "tags": "legal"},
        files=[("images", ("contract.pdf", pdf, "application/pdf"))],
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert [x["status"] for x in body["results"]] == ["added"] * 3
    assert body["record"]["metadata"]["page_count"] == 3
    assert body["record"]["metadata"]["document"]["title"] == "Multipart"
    assert sorted(i["page"] for i in body["record"]["images"]) == [1, 2, 3]
    rt = client.app.state.runtime  # type: ignore[attr-defined]
    check_document(rt, "Contract", "mp", 3)

    # A PDF is the only file of its record, and is not added to an existing one.
    mixed = client.post(
        "/api/collections/docs/records",
        data={"name": "Mixed"},
        files=[
            ("images", ("a.pdf", make_pdf("mx", 1), "application/pdf")),
            ("images", ("b.pdf", make_pdf("my", 1), "application/pdf")),
        ],
    )
    assert mixed.status_code == 422, mixed.text
    added = client.post(
        f"/api/records/{body['record']['id']}/images",
        files=[("images", ("more.pdf", make_pdf("mz", 1), "application/pdf"))],
    )
    assert added.status_code == 422, added.text
    assert counts(rt)[:2] == (1, 3)


def test_presign_and_ingest_a_pdf(client: TestClient) -> None:
    assert client.post("/api/collections", json={"name": "up"}).status_code == 201
    pdf = make_pdf("ps", 2)
    p = client.post("/api/images/presign", json={"collection": "up", "filename": "q3 deck.pdf"})
    assert p.status_code == 201, p.text
    assert client.put(p.json()["url"], content=pdf).status_code == 201
    r = client.post("/api/images/ingest", json={"key": p.json()["key"]})
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "added"
    rt = client.app.state.runtime  # type: ignore[attr-defined]
    rt.ingest.wait_idle()
    record = check_document(rt, "q3 deck", "ps", 2)
    assert r.json()["record_id"] == record.id


def test_watched_pdf_becomes_one_record(rt: Lookalike, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    coll = create_collection(rt, "default", "watched")
    watcher = FolderWatcher(rt, coll, inbox, owner="w", settle_s=0.2)
    watcher.start()
    try:
        staging = tmp_path / "staging.pdf"
        staging.write_bytes(make_pdf("wa", 2))
        staging.rename(inbox / "minutes.pdf")

        def embedded_pages() -> int:
            try:
                rows = document_pages(rt, "minutes")[1]
            except ValueError:  # no record yet, or the old one and the new one both
                return 0
            return len(rows) if all(i.status == "embedded" for i, _ in rows) else 0

        assert wait_until(lambda: embedded_pages() == 2)
        check_document(rt, "minutes", "wa", 2)
        # A changed PDF replaces its record's pages.
        (inbox / "minutes.pdf").write_bytes(make_pdf("wb", 3))
        assert wait_until(lambda: embedded_pages() == 3)
        check_document(rt, "minutes", "wb", 3)
        assert wait_until(lambda: rt.vectors.count(coll.id) == 3)
    finally:
        watcher.stop()


def test_duplicate_pages_stay_part_of_the_document(rt: Lookalike) -> None:
    coll = create_collection(rt, "default", "dups")
    first = rt.ingest.add_document(
        coll,
        NewRecord(name="first", owner="t"),
        open_pdf(make_pdf("d1", 4, blank=(2, 4)), rt.settings, name="first.pdf"),
        wait=True,
    )
    # Pages 2 and 4 are the same blank page: pages are prepared side by side, so either may be
    # stored first; the other is that image, listed with the record.
    statuses = [r.status for r in first]
    assert statuses[0] == statuses[2] == "added"
    assert sorted([statuses[1], statuses[3]]) == ["added", "duplicate"]
    stored, again = (1, 3) if statuses[1] == "added" else (3, 1)
    blank_id = first[stored].image_id
    record_id = first[0].record_id
    assert {r.record_id for r in first} == {record_id}
    with rt.catalog.session() as s:
        record = s.get(Record, record_id)
        assert record is not None
        assert record.extra["duplicate_pages"] == {str(again + 1): blank_id}
    # Another document with a blank page: its page points at the first document's image.
    second = rt.ingest.add_document(
        coll,
        NewRecord(name="second", owner="t"),
        open_pdf(make_pdf("d2", 2, blank=(1,)), rt.settings, name="second.pdf"),
        wait=True,
    )
    assert [r.status for r in second] == ["duplicate", "added"]
    with rt.catalog.session() as s:
        record = s.get(Record, second[1].record_id)
        assert record is not None
        assert record.extra["duplicate_pages"] == {"1": blank_id}
        assert record.extra["page_count"] == 2


def _truncated() -> bytes:
    data = make_pdf("tr", 2)
    return data[: len(data) // 2]


def _zero_pages() -> bytes:
    out = io.BytesIO()
    canvas.Canvas(out).save()
    return out.getvalue()


@pytest.mark.parametrize(
    ("make", "overrides", "code", "says"),
    [
        (lambda: make_pdf("en", 2, encrypt="pw"), {}, "invalid_document", "password"),
        (_truncated, {}, "invalid_document", "damaged"),
        (_zero_pages, {}, "invalid_document", "no pages"),
        (lambda: make_pdf("mx", 3), {"pdf_max_pages": 2}, "invalid_document", "3 pages"),
        (lambda: make_pdf("by", 2), {"pdf_max_bytes": 1000}, "document_too_large", "bytes"),
        (lambda: b"%PDF-1.4\n" + os.urandom(4000), {}, "invalid_document", "damaged"),
    ],
    ids=["encrypted", "truncated", "zero_pages", "too_many_pages", "too_many_bytes", "garbage"],
)
def test_refused_pdfs_change_nothing(
    tmp_path: Path,
    models_dir: Path,
    make: Any,
    overrides: dict[str, object],
    code: str,
    says: str,
) -> None:
    from lookalike.api.app import create_app

    settings = make_settings(tmp_path / "data", models_dir, **overrides)
    data = make()
    path = tmp_path / "bad.pdf"
    path.write_bytes(data)
    with Lookalike(settings) as rt, TestClient(create_app(runtime=rt)) as client:
        coll = create_collection(rt, "default", "docs")
        before = counts(rt)
        with pytest.raises(InvalidDocument, match=says):
            open_pdf(data, settings, name="bad.pdf")
        (result,) = rt.ingest.add_path_document(coll, NewRecord(name="bad", owner="t"), path)
        assert (result.status, result.error_code) == ("rejected", code)
        r = client.post(
            "/api/collections/docs/records",
            data={"name": "Bad"},
            files=[("images", ("bad.pdf", data, "application/pdf"))],
        )
        assert r.status_code in (413, 422), r.text
        assert r.json()["error"]["code"] == code
        assert says in r.json()["error"]["message"]
        p = client.post("/api/images/presign", json={"collection": "docs", "filename": "b.pdf"})
        put = client.put(p.json()["url"], content=data)
        if code == "document_too_large":
            # The upload itself takes no more than a PDF may have (pdf_max_bytes).
            assert put.status_code == 413 and p.json()["max_bytes"] == 1000
        else:
            assert put.status_code == 201
            r = client.post("/api/images/ingest", json={"key": p.json()["key"]})
            assert r.json()["error"]["code"] == code
        rt.ingest.wait_idle()
        assert counts(rt) == before == (0, 0, 0, 0)
        assert rt.vectors.count(coll.id) == 0


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
def test_a_long_pdf_streams_through_in_bounded_memory(rt: Lookalike, tmp_path: Path) -> None:
    """300 pages at 150 dpi are 1.9 GB as pixels; streamed, the process grows by far less."""
    path = tmp_path / "long.pdf"
    path.write_bytes(make_pdf("long", 300))
    coll = create_collection(rt, "default", "long")
    # The model and the stores load on first use: that is not the document's memory.
    warm = tmp_path / "warm.pdf"
    warm.write_bytes(make_pdf("warm", 1))
    rt.ingest.add_path_document(coll, NewRecord(name="warm", owner="t"), warm)
    baseline = _rss_bytes()
    peak = baseline
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.05):
            peak = max(peak, _rss_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        results = rt.ingest.add_path_document(coll, NewRecord(name="long", owner="t"), path)
    finally:
        stop.set()
        sampler.join()
    assert [r.status for r in results] == ["added"] * 300
    growth = peak - baseline
    print(f"300-page PDF: peak RSS growth {growth / 2**20:.0f} MiB")
    assert growth < 250 * 2**20, f"grew by {growth / 2**20:.0f} MiB"
    record, rows = document_pages(rt, "long")
    assert len(rows) == 300 and record.extra["page_count"] == 300
