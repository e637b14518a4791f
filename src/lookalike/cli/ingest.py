"""`lookalike ingest`, `lookalike watch` and `lookalike reconcile`: images into a collection, and
the check that catalog, vectors and blobs still agree about them."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from lookalike.auth.tokens import DEFAULT_TENANT
from lookalike.cli.common import (
    CollectionOpt,
    DataDir,
    TenantOpt,
    console,
    load_settings,
    open_runtime,
    out,
    progress_bar,
)

if TYPE_CHECKING:
    from lookalike.composition import Lookalike
    from lookalike.ingest.pipeline import IngestResult


def ingest(
    paths: Annotated[
        list[Path], typer.Argument(help="Image files, PDFs or directories (recursive).")
    ],
    collection: CollectionOpt,
    record: Annotated[
        str | None, typer.Option("--record", help="Put all files into one record with this name.")
    ] = None,
    tags: Annotated[
        list[str] | None, typer.Option("--tag", help="Tag for the new records.")
    ] = None,
    owner: Annotated[str, typer.Option(help="Owner of the new records.")] = "local",
    tenant: TenantOpt = DEFAULT_TENANT,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait", help="Also wait for enrichment (thumbnails, scores, duplicate verdicts)."
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Add images; creates the collection if needed; one record per file unless --record.

    A PDF becomes one record of its own (named after the file), with an image per page and
    each page's text; --record gathers the images only.

    Returns once every image is searchable. Enrichment (thumbnail, quality and NSFW scores,
    duplicate verdict, anomaly scores) runs after that, in the background of this command and
    of a running server; the command says how much is still queued, and --wait waits for it.
    """
    from lookalike.dedup.verdicts import with_verdicts
    from lookalike.ingest.pdf import count_pages, is_pdf_path
    from lookalike.ingest.pipeline import iter_image_files
    from lookalike.records.service import get_or_create_collection

    settings = load_settings(data_dir)
    with open_runtime(settings) as rt:
        coll = get_or_create_collection(rt, tenant, collection)
        found = list(iter_image_files(paths))
        # A PDF counts its pages (one when it cannot be opened: it is one rejection).
        documents = [p for p in found if is_pdf_path(p)]
        total = len(found) - len(documents)
        total += sum(count_pages(p, settings) or 1 for p in documents)
        counts: Counter[str] = Counter()
        rejected: list[tuple[str, str]] = []
        started = time.monotonic()
        with progress_bar() as progress:
            task = progress.add_task("ingest", total=total, rate="")

            def seen(result: IngestResult) -> None:
                counts[result.status] += 1
                if result.status == "rejected":
                    rejected.append((result.filename or "?", result.reason or ""))
                done = sum(counts.values())
                rate = done / max(time.monotonic() - started, 1e-6)
                progress.update(task, advance=1, rate=f"{rate:.1f} img/s")

            results = rt.ingest.add_paths(
                coll, paths, owner=owner, record_name=record, tags=tags or [], on_result=seen
            )
        elapsed = time.monotonic() - started
        # The duplicate verdicts now, not in the background: the summary names the copies.
        results = with_verdicts(rt.enrichment, rt.catalog, results)
        if wait:
            wait_for_enrichment(rt, coll.id, quiet=json_out)
        queued = rt.enrichment.queue.images_outstanding(coll.id)
    if json_out:
        out.print_json(
            json.dumps({"results": [asdict(r) for r in results], "enrichment_queued": queued})
        )
    else:
        pages = sum(1 for r in results if "#page=" in (r.filename or ""))
        of_documents = (
            f" ({pages} page{'s' if pages != 1 else ''} of {len(documents)} "
            f"document{'s' if len(documents) != 1 else ''})"
            if documents
            else ""
        )
        console.print(
            f"added {counts['added']}, skipped as duplicate {counts['duplicate']}, "
            f"rejected {counts['rejected']}{of_documents} in {elapsed:.1f} s; all searchable"
        )
        for name, reason in rejected:
            console.print(f"  [yellow]rejected[/yellow] {escape(name)}: {escape(reason)}")
        for r in results:
            if r.duplicate_of is not None:
                what = _VERDICT_WORDS.get(r.duplicate_of.tier, r.duplicate_of.tier)
                console.print(
                    escape(
                        f"  {Path(r.filename or '?').name}: {what} "
                        f"{r.duplicate_of.record_name!r} (image {r.duplicate_of.image_id}, "
                        f"record {r.duplicate_of.record_id})"
                    )
                )
        if queued:
            console.print(
                f"{queued} image{'s' if queued != 1 else ''} still to enrich (thumbnails, "
                "scores, duplicate verdicts): a running `lookalike serve` or `lookalike enrich` "
                "finishes them; `lookalike ingest --wait` waits for them"
            )
    if counts["rejected"] and not counts["added"] and not counts["duplicate"]:
        raise typer.Exit(1)


_VERDICT_WORDS = {
    "exact": "already stored as",
    "near_exact": "near-exact copy of",
    "similar": "similar to",
}


def wait_for_enrichment(rt: Lookalike, collection_id: str | None, *, quiet: bool = False) -> None:
    """Run the enrichment stages until none is left (in `collection_id`, or anywhere), with a
    progress bar of images."""
    queue = rt.enrichment.queue
    total = queue.images_outstanding(collection_id)
    if not total:
        return
    started = time.monotonic()
    with progress_bar(quiet=quiet) as progress:
        task = progress.add_task("enrich", total=total, rate="")
        while left := queue.images_outstanding(collection_id):
            if rt.enrichment.running:
                rt.enrichment.wake()
                time.sleep(0.2)
            else:
                rt.enrichment.run_once()
            done = max(total - left, 0)
            rate = done / max(time.monotonic() - started, 1e-6)
            progress.update(task, completed=done, rate=f"{rate:.1f} img/s")
        progress.update(task, completed=total)


def enrich(
    collection: Annotated[
        str | None, typer.Option("--collection", "-c", help="Only this collection's images.")
    ] = None,
    tenant: TenantOpt = DEFAULT_TENANT,
    data_dir: DataDir = None,
) -> None:
    """Run every queued enrichment stage (thumbnails, scores, duplicate verdicts), then exit."""
    from lookalike.records.service import find_collection

    with open_runtime(load_settings(data_dir)) as rt:
        collection_id = find_collection(rt, tenant, collection).id if collection else None
        wait_for_enrichment(rt, collection_id)
        counts = rt.enrichment.queue.counts(collection_id)
    failed = sum(by_status.get("failed", 0) for by_status in counts.values())
    console.print(
        "enrichment done: "
        + ", ".join(
            f"{stage} {by_status.get('done', 0)}"
            + (f" ({by_status['failed']} failed)" if by_status.get("failed") else "")
            for stage, by_status in sorted(counts.items())
        )
    )
    if failed:
        raise typer.Exit(1)


def watch(
    directory: Annotated[Path, typer.Argument(help="Directory to watch (recursive).")],
    collection: CollectionOpt,
    owner: Annotated[str, typer.Option(help="Owner of the new records.")] = "local",
    tenant: TenantOpt = DEFAULT_TENANT,
    data_dir: DataDir = None,
) -> None:
    """Ingest images already in DIR, then new and changed ones as they appear (Ctrl-C stops)."""
    from lookalike.ingest.watcher import FolderWatcher
    from lookalike.records.service import get_or_create_collection

    settings = load_settings(data_dir)
    with open_runtime(settings) as rt:
        coll = get_or_create_collection(rt, tenant, collection)

        def report(path: Path, result: IngestResult) -> None:
            detail = f": {result.reason}" if result.reason else ""
            console.print(escape(f"{result.status:9} {path}{detail}"))

        watcher = FolderWatcher(rt, coll, directory, owner=owner, on_result=report)
        watcher.start()
        console.print(escape(f"watching {directory} for collection {coll.name!r}; Ctrl-C to stop"))
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            watcher.stop()


def reconcile(
    collection: CollectionOpt,
    check: Annotated[bool, typer.Option("--check", help="Only report, change nothing.")] = False,
    tenant: TenantOpt = DEFAULT_TENANT,
    json_out: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Check that catalog, vectors and blobs agree on every image; repair what the catalog can.

    Reports orphan and missing vectors, vector payloads that name another record or other
    bytes, and missing or damaged originals, each by image id. Exits 1 when something is left
    unrepaired; with --check nothing is changed, so any finding does.
    """
    from lookalike.ingest.reconcile import reconcile as run_reconcile
    from lookalike.records.service import find_collection

    with open_runtime(load_settings(data_dir)) as rt:
        report = run_reconcile(rt, find_collection(rt, tenant, collection), fix=not check)
        rt.ingest.wait_idle()
    if json_out:
        out.print_json(
            json.dumps(
                {
                    "collection": report.collection,
                    "images": report.images,
                    "vectors": report.vectors,
                    "findings": [f.__dict__ for f in report.findings],
                }
            )
        )
    elif not report.findings:
        console.print(
            f"{report.collection}: {report.images} images, {report.vectors} vectors; no drift"
        )
    else:
        counts = Counter(f.kind for f in report.findings)
        summary = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in sorted(counts.items()))
        console.print(
            f"{report.collection}: {report.images} images, {report.vectors} vectors; {summary}"
        )
        for f in report.findings:
            state = "repaired" if f.repaired else "[yellow]not repaired[/yellow]"
            console.print(f"  {f.image_id}  {f.kind}: {escape(f.detail)} ({state})")
    if any(check or not f.repaired for f in report.findings):
        raise typer.Exit(1)
