"""PDF documents: one record per document, one image per page, each page's text layer kept.

A document is opened and checked in full before anything is stored (bytes before opening,
password, damage, page count after), so a refused PDF changes nothing. Pages are then rendered
one at a time by a generator: the ingest pipeline's bounded look-ahead pulls them, so a 300-page
PDF never sits in memory rendered as a whole.

PDFium is not thread-safe, not even across documents: every call into it holds `_PDFIUM`.
The PNG encoding of a rendered page runs outside the lock.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from lookalike.core.config import Settings
from lookalike.core.errors import DocumentTooLarge, InvalidDocument, Unsupported

if TYPE_CHECKING:
    import pypdfium2

PDF_SUFFIX = ".pdf"
PDF_MIME = "application/pdf"

_PDFIUM = threading.Lock()
# PDFium's FPDF_ERR_PASSWORD.
_FPDF_ERR_PASSWORD = 4
_LOCKED = "it is protected by a password; remove the password and upload it again"
# The metadata kept of a document (PDF Info keys -> our names); empty values are dropped.
_INFO_KEYS = {
    "Title": "title",
    "Author": "author",
    "Subject": "subject",
    "Keywords": "keywords",
    "Creator": "creator",
    "Producer": "producer",
    "CreationDate": "created",
    "ModDate": "modified",
}
_PDF_DATE = re.compile(
    r"^D:(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:([Zz+\-])(\d{2})?'?(\d{2})?'?)?"
)


def is_pdf(data: bytes) -> bool:
    """PDF bytes: the header may follow some junk, but within the first KiB (as readers allow)."""
    return b"%PDF-" in data[:1024]


def is_pdf_path(path: Path) -> bool:
    return path.suffix.lower() == PDF_SUFFIX


@dataclass(frozen=True)
class PageText:
    """A page's text and its words, each `[x0, y0, x1, y1, text, confidence]` in the rendered
    page's pixels (confidence 1.0: the text layer is what the PDF says)."""

    text: str
    words: list[list[Any]]


@dataclass(frozen=True)
class RenderedPage:
    number: int  # 1-based
    data: bytes  # PNG
    width: int
    height: int
    text: PageText


class PdfDocument:
    """An opened, checked PDF. Use as a context manager, or `close()` it.

    `pages()` renders page after page at `settings.pdf_dpi`, scaled down where a page would be
    over `max_image_pixels` (a poster-sized page would otherwise be refused as a bomb)."""

    def __init__(self, pdf: pypdfium2.PdfDocument, name: str, settings: Settings) -> None:
        self._pdf = pdf
        self.name = name
        self.settings = settings
        with _PDFIUM:
            self.page_count = len(pdf)
            self.metadata = _metadata(pdf.get_metadata_dict(skip_empty=True))

    def pages(self) -> Iterator[RenderedPage]:
        for index in range(self.page_count):
            yield self.render(index)

    def render(self, index: int) -> RenderedPage:
        """Page `index` (0-based) as PNG bytes with its text layer."""
        with _PDFIUM:
            page = self._pdf[index]
            try:
                left, bottom, right, top = page.get_cropbox()
                width_pt, height_pt = max(right - left, 1.0), max(top - bottom, 1.0)
                scale = self.settings.pdf_dpi / 72
                pixels = width_pt * height_pt * scale * scale
                if pixels > self.settings.max_image_pixels:
                    scale *= (self.settings.max_image_pixels / pixels) ** 0.5 * 0.99
                image = page.render(scale=scale).to_pil()
                text = _text_layer(page, left, top, image.width / width_pt)
            finally:
                page.close()
        out = io.BytesIO()
        # Text pages compress well at a low level; the default level costs 3x the time for
        # a few percent.
        image.convert("RGB").save(out, format="PNG", compress_level=3)
        return RenderedPage(index + 1, out.getvalue(), image.width, image.height, text)

    def close(self) -> None:
        with _PDFIUM:
            self._pdf.close()

    def __enter__(self) -> PdfDocument:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_pdf(source: bytes | Path, settings: Settings, *, name: str) -> PdfDocument:
    """Open and check a PDF (`name` is for messages). Raises `InvalidDocument` when it is over
    `pdf_max_bytes`, protected by a password, damaged, empty or over `pdf_max_pages` pages.

    A path is read by PDFium as it needs, not into memory at once."""
    try:
        import pypdfium2
    except ImportError:  # pragma: no cover - an installation without the documents extra
        raise Unsupported(
            "PDF documents need pypdfium2: pip install 'lookalike[documents]'"
        ) from None
    size = source.stat().st_size if isinstance(source, Path) else len(source)
    if size > settings.pdf_max_bytes:
        raise DocumentTooLarge(
            f"{name}: {size} bytes is over the limit of {settings.pdf_max_bytes} bytes for a "
            "PDF (LOOKALIKE_PDF_MAX_BYTES)"
        )
    if isinstance(source, bytes) and not is_pdf(source):
        raise InvalidDocument(f"{name}: not a PDF (no %PDF- header)")
    try:
        with _PDFIUM:
            pdf = pypdfium2.PdfDocument(str(source) if isinstance(source, Path) else source)
    except pypdfium2.PdfiumError as exc:
        # PDFium refuses a document without pages without setting an error, so the code may be
        # a stale one of an earlier document: only a password error (with /Encrypt in the
        # file) is told apart.
        code = getattr(exc, "err_code", None) or 0
        if code == _FPDF_ERR_PASSWORD and _mentions_encrypt(source):
            why = _LOCKED
        else:
            why = "it is damaged (truncated?), not a PDF, or has no pages"
        raise InvalidDocument(f"{name}: cannot open the PDF: {why}") from None
    try:
        document = PdfDocument(pdf, name, settings)
    except Exception:
        with _PDFIUM:
            pdf.close()
        raise
    if not document.page_count or document.page_count > settings.pdf_max_pages:
        document.close()
        if not document.page_count:
            raise InvalidDocument(f"{name}: the PDF has no pages")
        raise InvalidDocument(
            f"{name}: {document.page_count} pages is over the limit of "
            f"{settings.pdf_max_pages} (LOOKALIKE_PDF_MAX_PAGES)"
        )
    return document


def count_pages(path: Path, settings: Settings) -> int | None:
    """The pages of the PDF at `path`, or None when it cannot be opened (it will be refused)."""
    try:
        with open_pdf(path, settings, name=path.name) as document:
            return document.page_count
    except (InvalidDocument, Unsupported):
        return None


def _mentions_encrypt(source: bytes | Path) -> bool:
    if isinstance(source, bytes):
        return b"/Encrypt" in source
    tail = b""
    with source.open("rb") as f:
        while chunk := f.read(1 << 20):
            if b"/Encrypt" in tail + chunk:
                return True
            tail = chunk[-16:]
    return False


def _text_layer(page: pypdfium2.PdfPage, left: float, top: float, scale: float) -> PageText:
    """The page's text and words with their boxes in pixels (PDF points grow upwards from the
    bottom left; pixels grow downwards from the top left)."""
    import pypdfium2.raw as pdfium_c

    textpage = page.get_textpage()
    try:
        text = textpage.get_text_range()
        words: list[list[Any]] = []
        chars: list[str] = []
        box: list[float] = []
        for i in range(textpage.count_chars()):
            # One char at a time through the C API: pypdfium2's get_text_range(i, 1) is 20x slower.
            char = chr(pdfium_c.FPDFText_GetUnicode(textpage.raw, i) or 32)
            if char.isspace() or char in "\x00\ufffe\uffff":
                _end_word(words, chars, box)
                continue
            x0, y0, x1, y1 = textpage.get_charbox(i)
            if box:
                box = [min(box[0], x0), min(box[1], y0), max(box[2], x1), max(box[3], y1)]
            else:
                box = [x0, y0, x1, y1]
            chars.append(char)
        _end_word(words, chars, box)
    finally:
        textpage.close()
    for word in words:
        x0, y0, x1, y1 = word[:4]
        word[:4] = [
            round((x0 - left) * scale, 1),
            round((top - y1) * scale, 1),
            round((x1 - left) * scale, 1),
            round((top - y0) * scale, 1),
        ]
    return PageText(text.replace("\r\n", "\n"), words)


def _end_word(words: list[list[Any]], chars: list[str], box: list[float]) -> None:
    if chars:
        words.append([*box, "".join(chars), 1.0])
    chars.clear()
    box.clear()


def _metadata(info: dict[str, str]) -> dict[str, str]:
    out = {}
    for key, name in _INFO_KEYS.items():
        value = (info.get(key) or "").strip()
        if not value:
            continue
        out[name] = _iso_date(value) if key.endswith("Date") else value[:1000]
    return out


def _iso_date(value: str) -> str:
    """A PDF date (`D:YYYYMMDDHHmmSS+HH'mm'`) as ISO 8601; left as it is when it is not one."""
    m = _PDF_DATE.match(value)
    if m is None:
        return value[:100]
    year, month, day, hour, minute, second, sign, tz_h, tz_m = m.groups()
    try:
        offset = timedelta(hours=int(tz_h or 0), minutes=int(tz_m or 0))
        tz = UTC if sign in (None, "Z", "z") else timezone(-offset if sign == "-" else offset)
        when = datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            tzinfo=tz,
        )
    except ValueError:
        return value[:100]
    return when.isoformat()
