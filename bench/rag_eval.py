"""Image-RAG retrieval benchmark: can a question find the PDF page that answers it?

It generates N PDF documents (reportlab, matplotlib charts) from a seed, with a distinct fact on
every page: a paragraph ("The amber valve of unit QX4821 opens at 412 kPa.") and a row of a
small table ("Pump cobalt of unit QX4821 | 37 L/min"), and on every other page a labelled bar
chart (a distractor: its numbers are in no question). A fraction of the pages (`--rasterised`)
is rendered to pixels and embedded as an image-only page, so only OCR can read it. Each page
gets two questions whose answer is on that page alone ("At what pressure does the amber valve
of unit QX4821 open?", "What is the flow rate of pump cobalt of unit QX4821?").

The documents are ingested into a `Lookalike` runtime on a temporary data directory
(`IngestPipeline.add_document`, one record per document, an image per page), OCR runs as the
enrichment stage, and then every question is asked in `keyword`, `vector` and `hybrid` mode
(`search_with_mode`, top 5 pages). It reports, separately for born-digital and rasterised target
pages:

- recall@1 and recall@5: the share of questions whose answer page is the first hit / in the
  first five;
- ingest pages/s: pages of all documents over the time until every page is searchable
  (embedded), and OCR seconds per rasterised page: the time from then until the enrichment
  queue is idle, over the rasterised pages.

    python bench/rag_eval.py                                  # 12 docs x 5 pages, tiny-clip
    python bench/rag_eval.py --docs 40 --pages 8 --rasterised 0.5
    python bench/rag_eval.py --model clip-vit-b-32-laion2b    # a real CLIP in the model cache

The default model is `tiny-clip`, the test suite's CLIP-shaped model with RANDOM weights
(built into the model cache when missing): its vector side is noise, so vector (and the vector
half of hybrid) recall with it is a floor, not a measurement of CLIP. Keyword retrieval reads
the text layer and OCR text only and does not depend on the model.

Answers: with `--llm` (llama.cpp's server with Gemma 3 270M from the llm-test extra, started here as
the tests start it) or `--llm-url URL --llm-model NAME` (any OpenAI-compatible chat endpoint),
`--answer-questions` questions are asked end to end (`rag.ask.ask`, hybrid, top 5) and an
answer counts as right when the exact number of the fact is in it. Ask overhead is the time of
everything but the model — hybrid retrieval, reading the pages' text, the prompt — over
`--latency-questions` questions (p50/p95). `--filler-docs` adds born-digital documents no
question is about, to measure that overhead on a large collection:

    python bench/rag_eval.py --docs 12 --rasterised 0 --filler-docs 1000 --pages 10   # 10k pages
    python bench/rag_eval.py --llm --answer-questions 60
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pypdfium2
from reportlab.lib.pagesizes import letter  # type: ignore[import-untyped]
from reportlab.lib.utils import ImageReader  # type: ignore[import-untyped]
from reportlab.pdfgen import canvas  # type: ignore[import-untyped]
from sqlalchemy import select

from lookalike.catalog import Image, Record
from lookalike.composition import Lookalike
from lookalike.core.config import Settings
from lookalike.core.errors import TextSearchUnavailable
from lookalike.ingest.pdf import open_pdf
from lookalike.ingest.pipeline import NewRecord
from lookalike.rag.ask import ask, retrieve
from lookalike.rag.chat import ChatModel, OpenAICompatibleChat
from lookalike.records.service import create_collection
from lookalike.search.service import SearchMode, search_with_mode

WORDS = [
    "amber", "basalt", "cedar", "cobalt", "copper", "crimson", "delta", "ember", "falcon",
    "garnet", "harbor", "indigo", "juniper", "kestrel", "lantern", "marble", "nickel", "onyx",
    "orchid", "pepper", "quartz", "raven", "saffron", "silver", "tundra", "umber", "velvet",
    "walnut", "willow", "zephyr",
]  # fmt: skip
MODES: tuple[SearchMode, ...] = ("keyword", "vector", "hybrid")
KINDS = ("born-digital", "rasterised")
RASTER_DPI = 110
TOP_K = 5


@dataclass
class Page:
    doc: str
    number: int
    rasterised: bool
    unit: str
    valve: str
    pressure: int
    pump: str
    flow: int
    chart: bool
    table: list[tuple[str, str, str]] = field(default_factory=list)

    def questions(self) -> list[str]:
        return [
            f"At what pressure does the {self.valve} valve of unit {self.unit} open?",
            f"What is the flow rate of pump {self.pump} of unit {self.unit}?",
        ]

    def answers(self) -> list[str]:
        """The exact fact each of `questions()` asks for."""
        return [str(self.pressure), str(self.flow)]


def make_corpus(
    docs: int, pages: int, rasterised: float, seed: int, *, prefix: str = "doc"
) -> list[list[Page]]:
    """Pages with facts no other page shares: every page has its own unit code."""
    rng = random.Random(seed)
    units = rng.sample(range(10_000, 1_000_000), docs * pages)
    # Exactly round(share * pages) image-only pages, spread at random.
    raster = set(rng.sample(range(docs * pages), round(rasterised * docs * pages)))
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    corpus: list[list[Page]] = []
    n = 0
    for d in range(docs):
        doc = f"{prefix}{d:04d}"
        out: list[Page] = []
        for p in range(1, pages + 1):
            unit = f"{rng.choice(letters)}{rng.choice(letters)}{units[n]}"
            page = Page(
                doc=doc,
                number=p,
                rasterised=n in raster,
                unit=unit,
                valve=rng.choice(WORDS),
                pressure=rng.randint(100, 990),
                pump=rng.choice(WORDS),
                flow=rng.randint(10, 99),
                chart=p % 2 == 0,
            )
            # The table: the pump row that answers, and two distractor rows of other pumps.
            rows = [(f"pump {page.pump}", unit, f"{page.flow} L/min")]
            for _ in range(2):
                other = rng.choice([w for w in WORDS if w != page.pump])
                rows.append((f"pump {other}", f"{rng.choice(letters)}{rng.randint(1000, 9999)}",
                             f"{rng.randint(10, 99)} L/min"))  # fmt: skip
            rng.shuffle(rows)
            page.table = rows
            out.append(page)
            n += 1
        corpus.append(out)
    return corpus


def chart_png(page: Page) -> bytes:
    labels = [f"{w[:6]}" for w in random.Random(page.unit).sample(WORDS, 4)]
    values = [random.Random(page.unit + w).randint(5, 60) for w in labels]
    fig, ax = plt.subplots(figsize=(4.5, 2.6), dpi=100)
    ax.bar(labels, values, color="#4477aa")
    ax.set_title(f"Weekly output, line {page.unit[-2:]}")
    ax.set_ylabel("tonnes")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def draw_page(c: canvas.Canvas, page: Page) -> None:
    """The page's content as born-digital text, table and chart."""
    c.setFont("Helvetica-Bold", 18)
    c.drawString(72, 720, f"Maintenance notes {page.doc} page {page.number}")
    c.setFont("Helvetica", 13)
    lines = [
        f"The {page.valve} valve of unit {page.unit} opens at {page.pressure} kPa.",
        "Inspect the seals before every restart and log the reading.",
    ]
    for i, line in enumerate(lines):
        c.drawString(72, 680 - i * 20, line)
    c.setFont("Helvetica-Bold", 12)
    y = 600
    for x, head in zip((72, 250, 380), ("Pump", "Unit", "Flow rate"), strict=True):
        c.drawString(x, y, head)
    c.setFont("Helvetica", 12)
    for row in page.table:
        y -= 20
        for x, cell in zip((72, 250, 380), row, strict=True):
            c.drawString(x, y, cell)
    c.line(70, 595, 480, 595)
    if page.chart:
        c.drawImage(ImageReader(io.BytesIO(chart_png(page))), 72, 200, 324, 187)


def rasterise(page: Page) -> bytes:
    """The page drawn born-digital, then rendered to pixels: a PNG with no text layer."""
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=letter)
    draw_page(c, page)
    c.showPage()
    c.save()
    pdf = pypdfium2.PdfDocument(buf.getvalue())
    try:
        image = pdf[0].render(scale=RASTER_DPI / 72).to_pil()
    finally:
        pdf.close()
    out = io.BytesIO()
    image.convert("RGB").save(out, "PNG")
    return out.getvalue()


def make_pdf(pages: list[Page]) -> bytes:
    out = io.BytesIO()
    c = canvas.Canvas(out, pagesize=letter)
    c.setTitle(pages[0].doc)
    width, height = letter
    for page in pages:
        if page.rasterised:
            c.drawImage(ImageReader(io.BytesIO(rasterise(page))), 0, 0, width, height)
        else:
            draw_page(c, page)
        c.showPage()
    c.save()
    return out.getvalue()


def print_table(columns: dict[str, dict[str, str]]) -> None:
    metrics = list(next(iter(columns.values())))
    headers = ["metric", *columns]
    rows = [[m, *(columns[c][m] for c in columns)] for m in metrics]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        cells = [
            r[0].ljust(widths[0]),
            *(v.rjust(w) for v, w in zip(r[1:], widths[1:], strict=True)),
        ]
        print("| " + " | ".join(cells) + " |")


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, round(q / 100 * (len(sorted_values) - 1)))]


def open_llm(args: argparse.Namespace) -> tuple[ChatModel | None, Callable[[], None]]:
    """The chat model to answer with, and how to stop what was started for it."""
    if args.llm_url:
        return OpenAICompatibleChat(args.llm_url, args.llm_model or "default", temperature=0), (
            lambda: None
        )
    if not args.llm:
        return None, lambda: None
    # The test suite's server: llama.cpp + Gemma 3 270M laid out for a pretrained model.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from backends.llm import start_llm_server, stop_llm_server

    directory = Path(tempfile.mkdtemp(prefix="rag-eval-llm-"))
    server = start_llm_server(directory)
    chat = OpenAICompatibleChat(server.url, server.model, temperature=0)
    return chat, lambda: stop_llm_server(server)


def ensure_model(cache: Path, model: str) -> None:
    if model == "tiny-clip" and not (cache / model / "manifest.json").exists():
        from lookalike.embedding.testing import build_tiny_clip

        build_tiny_clip(cache / model)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=12)
    parser.add_argument("--pages", type=int, default=5, help="pages per document")
    parser.add_argument("--rasterised", type=float, default=0.3, help="share of image-only pages")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--model", default="tiny-clip", help="embedding model in the cache")
    parser.add_argument("--ocr-timeout", type=float, default=1800.0)
    parser.add_argument(
        "--filler-docs", type=int, default=0, help="born-digital documents no question is about"
    )
    parser.add_argument("--llm", action="store_true", help="start llama.cpp + Gemma 3 270M")
    parser.add_argument("--llm-url", help="an OpenAI-compatible chat endpoint (.../v1)")
    parser.add_argument("--llm-model", help="the model name it serves")
    parser.add_argument("--answer-questions", type=int, default=40)
    parser.add_argument("--answer-k", type=int, default=TOP_K, help="pages given to the model")
    parser.add_argument("--latency-questions", type=int, default=100)
    args = parser.parse_args(argv)

    cache = Path(os.environ.get("LOOKALIKE_MODEL_CACHE_DIR", Path.cwd() / ".cache" / "models"))
    ensure_model(cache, args.model)
    corpus = make_corpus(args.docs, args.pages, args.rasterised, args.seed)
    t0 = time.perf_counter()
    pdfs = {pages[0].doc: make_pdf(pages) for pages in corpus}
    generate_s = time.perf_counter() - t0
    all_pages = [p for pages in corpus for p in pages]
    n_raster = sum(p.rasterised for p in all_pages)
    filler = make_corpus(args.filler_docs, args.pages, 0.0, args.seed + 1, prefix="filler")
    filler_pdfs = {pages[0].doc: make_pdf(pages) for pages in filler}
    n_filler = args.filler_docs * args.pages

    with tempfile.TemporaryDirectory(prefix="rag-eval-") as tmp:
        settings = Settings(
            data_dir=Path(tmp) / "data",
            model_cache_dir=cache,
            model=args.model,
            model_download=False,
            auth="off",
            # A pretrained model writes on to the limit: the fact comes first, or not at all.
            llm_max_answer_tokens=64,
            # Only OCR matters here; without image-only pages the enrichment stages (NSFW,
            # duplicates, outliers) would only compete with the measurements.
            enrichment=n_raster > 0,
            _env_file=None,
        )
        with Lookalike(settings) as rt:
            coll = create_collection(rt, "default", "rag-eval", model=args.model)
            t0 = time.perf_counter()
            for doc, pdf in pdfs.items():
                rt.ingest.add_document(
                    coll, NewRecord(name=doc, owner="bench"), open_pdf(pdf, settings, name=doc)
                )
            rt.ingest.wait_idle()
            ingest_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            for doc, pdf in filler_pdfs.items():
                rt.ingest.add_document(
                    coll, NewRecord(name=doc, owner="bench"), open_pdf(pdf, settings, name=doc)
                )
            rt.ingest.wait_idle()
            filler_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            if rt.enrichment.running and not rt.enrichment.wait_idle(timeout=args.ocr_timeout):
                print("warning: OCR did not finish within --ocr-timeout", file=sys.stderr)
            ocr_s = time.perf_counter() - t1

            with rt.catalog.session() as s:
                rows = s.execute(select(Image.id, Image.page, Record.name).join(Record)).all()
            where = {image_id: (name, page) for image_id, page, name in rows}

            found: dict[tuple[SearchMode, str], list[int | None]] = {}
            notes: set[str] = set()
            for mode in MODES:
                for page in all_pages:
                    kind = KINDS[page.rasterised]
                    for question in page.questions():
                        try:
                            result = search_with_mode(
                                rt, "default", coll, text=question, limit=TOP_K, mode=mode
                            )
                        except TextSearchUnavailable as exc:
                            notes.add(f"{mode}: unavailable with {args.model}: {exc}")
                            break
                        if result.mode != mode:
                            notes.add(f"{mode} answered as {result.mode}: {result.notes}")
                        pages_hit = [where.get(h.image_id) for h in result.hits]
                        target = (page.doc, page.number)
                        rank = pages_hit.index(target) + 1 if target in pages_hit else None
                        found.setdefault((mode, kind), []).append(rank)

            # Ask overhead: everything but the model, on the whole collection.
            asked = random.Random(args.seed).sample(
                [(p, q) for p in all_pages for q in p.questions()],
                min(args.latency_questions, 2 * len(all_pages)),
            )
            overhead_ms = []
            for _, question in asked:
                t = time.perf_counter()
                retrieve(rt, "default", coll.id, question, k=TOP_K)
                overhead_ms.append((time.perf_counter() - t) * 1000)

            chat, stop_llm = open_llm(args)
            right: dict[str, list[bool]] = {}
            answer_s: list[float] = []
            if chat is not None:
                sample = random.Random(args.seed + 2).sample(
                    [(p, i) for p in all_pages for i in range(2)],
                    min(args.answer_questions, 2 * len(all_pages)),
                )
                try:
                    for page, i in sample:
                        t = time.perf_counter()
                        question = page.questions()[i]
                        result = ask(rt, "default", coll.id, question, chat, k=args.answer_k)
                        answer_s.append(time.perf_counter() - t)
                        ok = page.answers()[i] in (result.answer or "")
                        right.setdefault(KINDS[page.rasterised], []).append(ok)
                finally:
                    chat.close()
                    stop_llm()

    n_pages = len(all_pages)
    columns: dict[str, dict[str, str]] = {}
    for mode in MODES:
        for kind in KINDS:
            ranks = found.get((mode, kind), [])
            col: dict[str, str] = {"questions": str(len(ranks))}
            for k in (1, TOP_K):
                hit = sum(1 for r in ranks if r is not None and r <= k)
                col[f"recall@{k}"] = f"{hit / len(ranks):.3f}" if ranks else "-"
            columns[f"{mode} / {kind}"] = col
    given = sys.argv[1:] if argv is None else list(argv)
    print(f"command: python {shlex.join(['bench/rag_eval.py', *given])}")
    print(
        f"corpus: {args.docs} documents x {args.pages} pages = {n_pages} pages, "
        f"{n_raster} rasterised (image-only), {2 * n_pages} questions, seed {args.seed}; "
        f"model {args.model}; generated in {generate_s:.1f} s"
    )
    print()
    print_table(columns)
    print()
    print(
        f"ingest: {n_pages} pages in {ingest_s:.1f} s = {n_pages / ingest_s:.2f} pages/s "
        "(until every page is searchable)"
    )
    if n_raster:
        print(
            f"OCR: {ocr_s:.1f} s after ingest until enrichment idle = "
            f"{ocr_s / n_raster:.2f} s per rasterised page"
        )
    if n_filler:
        print(
            f"filler: {n_filler} more born-digital pages in {filler_s:.1f} s = "
            f"{n_filler / filler_s:.2f} pages/s"
        )
    overhead_ms.sort()
    print(
        f"ask overhead (all but the model: hybrid retrieval, page text, prompt) over "
        f"{len(overhead_ms)} questions at {n_pages + n_filler} pages: "
        f"p50 {percentile(overhead_ms, 50):.1f} ms, p95 {percentile(overhead_ms, 95):.1f} ms"
    )
    if right:
        for kind, oks in sorted(right.items()):
            print(
                f"answer accuracy ({kind}): {sum(oks)}/{len(oks)} = {sum(oks) / len(oks):.3f} "
                f"(the exact number in the answer; {args.answer_k} pages given to "
                f"{chat.model if chat else '-'})"
            )
        answer_s.sort()
        print(f"ask with the model: p50 {percentile(answer_s, 50):.2f} s per question")
    for note in sorted(notes):
        print(f"note: {note}")
    if args.model == "tiny-clip":
        print(
            "caveat: tiny-clip has random weights; vector (and hybrid's vector half) recall is a "
            "floor, not a measurement of CLIP. Use --model with a real CLIP in the cache."
        )
    if not right:
        print("answer accuracy: not measured (give --llm or --llm-url and --llm-model)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
