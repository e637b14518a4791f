"""OCR as an enrichment stage: the words of pages without a text layer, and of every image in a
collection that asks for it, read after the image is searchable.

RapidOCR (`rapidocr-onnxruntime`: PP-OCR's detection, orientation and recognition models, which
ship inside its wheel) runs on the same ONNX Runtime as the embedding models. The stage reads the
stored original at full size itself rather than asking the runner for pixels: the runner decodes
once for all stages at the largest size any of them asks for, and the thumbnail and score stages
of every image should not pay for OCR's resolution on the few images that need it.

What a collection reads is `vector_settings["ocr"]` (`off`, `pages`, `all`), set when it is made,
`Settings.ocr` for collections older than the setting. A page whose text layer has words is
never OCRed: the PDF's own text is exact.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, insert, select

from lookalike.catalog import Catalog, Collection
from lookalike.catalog.models import ImageText, utcnow
from lookalike.core.config import Settings
from lookalike.core.errors import StoreUnavailable
from lookalike.core.timing import timed
from lookalike.enrichment.runner import StageBatch
from lookalike.storage.base import BlobStore

log = logging.getLogger(__name__)

STAGE = "ocr"
OCR_SOURCE = "ocr"


def ocr_mode(collection: Collection, settings: Settings) -> str:
    """`off`, `pages` or `all`: the collection's choice, or the server's default."""
    mode = (collection.vector_settings or {}).get("ocr") or settings.ocr
    return str(mode)


class TextReader:
    """RapidOCR, loaded on first use under a lock (two threads never load it twice), then shared.

    `available` is False when the package is not installed; `read` then is never called."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._engine: Any = None
        self._missing = False
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        self._load()
        return not self._missing

    def _load(self) -> None:
        with self._lock:
            if self._engine is not None or self._missing:
                return
            try:
                from rapidocr_onnxruntime import RapidOCR
            except ImportError:
                self._missing = True
                log.warning(
                    "OCR is skipped: rapidocr-onnxruntime is not installed "
                    "(pip install 'lookalike[documents]')"
                )
                return
            self._engine = RapidOCR(
                intra_op_num_threads=self.threads, inter_op_num_threads=1, print_verbose=False
            )

    def read(self, data: bytes) -> tuple[str, list[list[Any]]]:
        """The text of encoded image `data`, lines in reading order, and its words, each
        `[x0, y0, x1, y1, text, confidence]` in the image's pixels.

        The models find lines; a line's words get boxes cut from it in proportion to their
        characters, close enough to highlight a word of a citation."""
        self._load()
        with self._lock:
            found, _ = self._engine(data)
        lines: list[str] = []
        words: list[list[Any]] = []
        for quad, text, score in found or []:
            xs = [float(p[0]) for p in quad]
            ys = [float(p[1]) for p in quad]
            x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
            lines.append(str(text))
            words.extend(_split_line(str(text), x0, y0, x1, y1, float(score)))
        return "\n".join(lines), words


def _split_line(
    text: str, x0: float, y0: float, x1: float, y1: float, score: float
) -> list[list[Any]]:
    parts = text.split()
    if not parts:
        return []
    per_char = (x1 - x0) / max(len(text), 1)
    out: list[list[Any]] = []
    at = 0
    for part in parts:
        start = text.index(part, at)
        at = start + len(part)
        out.append(
            [
                round(x0 + start * per_char, 1),
                round(y0, 1),
                round(x0 + at * per_char, 1),
                round(y1, 1),
                part,
                round(score, 4),
            ]
        )
    return out


class OcrStage:
    """Reads the text of the images its collection's `ocr` setting asks for; stores it as
    `ImageText(source="ocr")`. The others, and all when RapidOCR is missing, are `skipped`."""

    name = STAGE

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        blobs: BlobStore,
        reader: TextReader | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.blobs = blobs
        self.reader = reader or TextReader(settings.ocr_threads)

    def pixels_for(self, collection: Collection) -> int | None:
        return None  # reads the original at full size itself, and only where it must

    def needs_vector(self, collection: Collection) -> bool:
        return False

    def run(self, batch: StageBatch) -> Mapping[str, str]:
        due = self._due(batch)
        for item in batch.items:
            if item.image.id not in due:
                batch.skip(item.image.id)
        if not due or not self.reader.available:
            for image_id in due:
                batch.skip(image_id)
            return {}
        errors: dict[str, str] = {}
        for item in batch.items:
            image = item.image
            if image.id not in due:
                continue
            try:
                data = self.blobs.get(image.blob_key or "")
            except StoreUnavailable:
                raise
            except Exception as exc:
                errors[image.id] = f"cannot read the stored original: {exc}"
                continue
            with timed("enrich", "ocr_read"):
                text, words = self.reader.read(data)
            self._store(image.id, batch.collection.id, text, words)
        return errors

    def _due(self, batch: StageBatch) -> set[str]:
        """The images to read: none (`off`), pages (`pages`) or all (`all`), less the pages
        whose text layer has words."""
        mode = ocr_mode(batch.collection, self.settings)
        if mode == "off":
            return set()
        candidates = [i.image.id for i in batch.items if mode == "all" or i.image.page is not None]
        return candidates_without_text(self.catalog, candidates)

    def _store(self, image_id: str, collection_id: str, text: str, words: list[list[Any]]) -> None:
        with self.catalog.engine.begin() as conn:
            conn.execute(
                delete(ImageText).where(
                    ImageText.image_id == image_id, ImageText.source == OCR_SOURCE
                )
            )
            conn.execute(
                insert(ImageText).values(
                    image_id=image_id,
                    source=OCR_SOURCE,
                    collection_id=collection_id,
                    text=text,
                    words=words,
                    created_at=utcnow(),
                )
            )


def candidates_without_text(catalog: Catalog, image_ids: Sequence[str]) -> set[str]:
    """Those of `image_ids` without a text layer that has any text."""
    if not image_ids:
        return set()
    with catalog.session() as session:
        with_text = {
            image_id
            for image_id, text in session.execute(
                select(ImageText.image_id, ImageText.text).where(
                    ImageText.image_id.in_(image_ids), ImageText.source == "text_layer"
                )
            )
            if text and text.strip()
        }
    return {i for i in image_ids if i not in with_text}
