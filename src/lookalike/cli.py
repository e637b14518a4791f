"""The `lookalike` command line. It opens the data directory directly (no server needed)."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from lookalike.auth.tokens import DEFAULT_TENANT, create_token
from lookalike.core.config import Settings
from lookalike.core.errors import LookalikeError

app = typer.Typer(
    help="Lookalike: image similarity search, visual quality control and image RAG.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
model_app = typer.Typer(help="List, fetch and export embedding models.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
apikey_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(token_app, name="token")
app.add_typer(apikey_app, name="apikey")
export_app = typer.Typer(help="Export training data.", no_args_is_help=True)
app.add_typer(export_app, name="export")

console = Console(stderr=True)
out = Console()

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Data directory (default: LOOKALIKE_DATA_DIR).", show_default=False
    ),
]
CollectionOpt = Annotated[str, typer.Option("--collection", "-c", help="Collection name or id.")]


def _settings(data_dir: Path | None, **overrides: object) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)  # type: ignore[arg-type]


def _open(settings: Settings):  # type: ignore[no-untyped-def]
    from lookalike.composition import Lookalike

    return Lookalike(settings)


def _fail(exc: LookalikeError) -> None:
    console.print(f"[red]error:[/red] {exc.message}")
    raise typer.Exit(2)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Run the HTTP API (and web app) on HOST:PORT."""
    import uvicorn

    from lookalike.api.app import create_app
    from lookalike.core.logs import configure_logging

    settings = _settings(data_dir, host=host, port=port)
    # JSON lines unless LOOKALIKE_LOG_FORMAT=text; the app writes its own access log (with route,
    # request id and tenant) instead of uvicorn's.
    configure_logging(settings.log_format or "json")
    try:
        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_config=None,
            log_level="info",
            access_log=False,
        )
    except LookalikeError as exc:
        _fail(exc)


@app.command("embed-server")
def embed_server(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int, typer.Option(help="Port.")] = 8001,
    data_dir: DataDir = None,
) -> None:
    """Run the embedding service (the model alone) on HOST:PORT; point the API at it with
    LOOKALIKE_EMBED_URL=http://HOST:PORT. It requires the key LOOKALIKE_EMBED_API_KEY (the API
    sends the same value); LOOKALIKE_EMBED_OPEN=true runs it without one, on loopback only."""
    import uvicorn

    from lookalike.embed_server.app import create_embed_app

    settings = _settings(data_dir, host=host)
    logging.getLogger("lookalike").setLevel(logging.INFO)
    try:
        # Checks the key against the address uvicorn binds below (settings.host).
        embed_app = create_embed_app(settings)
    except LookalikeError as exc:
        _fail(exc)
        return
    uvicorn.run(embed_app, host=settings.host, port=port, log_level="info")


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Image files or directories (recursive).")],
    collection: CollectionOpt,
    record: Annotated[
        str | None, typer.Option("--record", help="Put all files into one record with this name.")
    ] = None,
    tags: Annotated[
        list[str] | None, typer.Option("--tag", help="Tag for the new records.")
    ] = None,
    owner: Annotated[str, typer.Option(help="Owner of the new records.")] = "local",
    tenant: Annotated[str, typer.Option(help="Tenant.")] = DEFAULT_TENANT,
    json_out: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Add images; creates the collection if needed; one record per file unless --record."""
    from lookalike.ingest.pipeline import iter_image_files
    from lookalike.records.service import get_or_create_collection

    settings = _settings(data_dir)
    try:
        with _open(settings) as rt:
            coll = get_or_create_collection(rt, tenant, collection)
            total = len(list(iter_image_files(paths)))
            counts: Counter[str] = Counter()
            rejected: list[tuple[str, str]] = []
            started = time.monotonic()
            with _progress() as progress:
                task = progress.add_task("ingest", total=total, rate="")

                def seen(result) -> None:  # type: ignore[no-untyped-def]
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
    except LookalikeError as exc:
        _fail(exc)
        return
    if json_out:
        out.print_json(json.dumps({"results": [r.__dict__ for r in results]}))
    else:
        console.print(
            f"added {counts['added']}, skipped as duplicate {counts['duplicate']}, "
            f"rejected {counts['rejected']} in {elapsed:.1f} s"
        )
        for name, reason in rejected:
            console.print(f"  [yellow]rejected[/yellow] {name}: {reason}")
    if counts["rejected"] and not counts["added"] and not counts["duplicate"]:
        raise typer.Exit(1)


@app.command()
def watch(
    directory: Annotated[Path, typer.Argument(help="Directory to watch (recursive).")],
    collection: CollectionOpt,
    owner: Annotated[str, typer.Option(help="Owner of the new records.")] = "local",
    tenant: Annotated[str, typer.Option(help="Tenant.")] = DEFAULT_TENANT,
    data_dir: DataDir = None,
) -> None:
    """Ingest images already in DIR, then new and changed ones as they appear (Ctrl-C stops)."""
    from lookalike.ingest.watcher import FolderWatcher
    from lookalike.records.service import get_or_create_collection

    settings = _settings(data_dir)
    try:
        with _open(settings) as rt:
            coll = get_or_create_collection(rt, tenant, collection)

            def report(path: Path, result) -> None:  # type: ignore[no-untyped-def]
                detail = f": {result.reason}" if result.reason else ""
                console.print(f"{result.status:9} {path}{detail}")

            watcher = FolderWatcher(rt, coll, directory, owner=owner, on_result=report)
            watcher.start()
            console.print(f"watching {directory} for collection {coll.name!r}; Ctrl-C to stop")
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
            finally:
                watcher.stop()
    except LookalikeError as exc:
        _fail(exc)


@app.command()
def search(
    collection: CollectionOpt,
    image: Annotated[Path | None, typer.Argument(help="Query image file.")] = None,
    text: Annotated[str | None, typer.Option("--text", help="Query text.")] = None,
    image_id: Annotated[str | None, typer.Option("--image-id", help="A stored image id.")] = None,
    limit: Annotated[int, typer.Option(help="Number of hits.", min=1, max=1000)] = 10,
    score_threshold: Annotated[float | None, typer.Option(help="Minimum score.")] = None,
    phash_gate: Annotated[
        int | None, typer.Option(help="Only images within this pHash distance (bits).", min=0)
    ] = None,
    tenant: Annotated[str, typer.Option(help="Tenant.")] = DEFAULT_TENANT,
    json_out: Annotated[
        bool, typer.Option("--json", help='Print {"hits": [...]} as JSON.')
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Find look-alikes by IMAGE, --text or --image-id."""
    from lookalike.search.service import search_similar

    settings = _settings(data_dir)
    if sum(x is not None for x in (image, text, image_id)) != 1:
        console.print("[red]error:[/red] give exactly one of IMAGE, --text or --image-id")
        raise typer.Exit(2)
    try:
        data = image.read_bytes() if image is not None else None
    except OSError as exc:
        console.print(f"[red]error:[/red] cannot read {image}: {exc.strerror}")
        raise typer.Exit(2) from None
    try:
        with _open(settings) as rt:
            hits = search_similar(
                rt,
                tenant,
                collection,
                image_bytes=data,
                image_id=image_id,
                text=text,
                limit=limit,
                score_threshold=score_threshold,
                include_payload=json_out,
                phash_gate=phash_gate,
            )
    except LookalikeError as exc:
        _fail(exc)
        return
    if json_out:
        out.print_json(json.dumps({"hits": [h.as_dict() for h in hits]}))
        return
    table = Table("score", "name", "image id", "record id")
    for h in hits:
        table.add_row(f"{h.score:.4f}", h.name, h.image_id, h.record_id)
    out.print(table)


@app.command()
def anomalies(
    collection: CollectionOpt,
    sort: Annotated[str, typer.Option(help="Rank by: dnn, density or ood.")] = "dnn",
    limit: Annotated[int, typer.Option(help="Number of images.", min=1, max=200)] = 20,
    recompute: Annotated[
        bool, typer.Option("--recompute", help="Recompute every score first.")
    ] = False,
    tenant: Annotated[str, typer.Option(help="Tenant.")] = DEFAULT_TENANT,
    json_out: Annotated[
        bool, typer.Option("--json", help='Print {"items": [...], "total": N} as JSON.')
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """The anomaly review queue: the most unusual images not reviewed yet."""
    from lookalike.anomalies.queue import list_anomalies
    from lookalike.records.service import find_collection

    try:
        with _open(_settings(data_dir)) as rt:
            coll = find_collection(rt, tenant, collection)
            if recompute:
                result = rt.anomalies.recompute(coll.id)
                console.print(f"scored {result['scored']} images in {result['seconds']} s")
            items, total = list_anomalies(rt.catalog, coll, sort=sort, limit=limit)
    except LookalikeError as exc:
        _fail(exc)
        return
    if json_out:
        out.print_json(json.dumps({"items": [i.as_dict() for i in items], "total": total}))
        return
    table = Table("dnn", "density", "ood", "name", "image id", title=f"{total} not reviewed")
    for i in items:
        table.add_row(*(_score(x) for x in (i.dnn, i.density, i.ood)), i.name, i.image_id)
    out.print(table)


@app.command()
def dedup(
    collection: CollectionOpt,
    phash_gate: Annotated[
        int | None, typer.Option(help="pHash bits for near_exact (model default).", min=0, max=11)
    ] = None,
    near_exact: Annotated[
        float | None, typer.Option(help="Confirming cosine for near_exact (model default).")
    ] = None,
    similar: Annotated[
        float | None, typer.Option(help="Cosine for similar (model default).")
    ] = None,
    tenant: Annotated[str, typer.Option(help="Tenant.")] = DEFAULT_TENANT,
    json_out: Annotated[
        bool, typer.Option("--json", help='Print {"clusters": [...]} as JSON.')
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Sweep a collection for duplicates: clusters with their tier and suggested keeper."""
    from lookalike.dedup.service import cluster_members, run_sweep
    from lookalike.records.service import find_collection

    thresholds = {
        "phash_gate": phash_gate,
        "near_exact_cosine": near_exact,
        "similar_cosine": similar,
    }
    try:
        with _open(_settings(data_dir)) as rt:
            coll = find_collection(rt, tenant, collection)
            with console.status(f"sweeping {coll.name}"):
                result = run_sweep(rt, coll, thresholds=thresholds)
            members = cluster_members(rt, result.clusters)
    except LookalikeError as exc:
        _fail(exc)
        return
    clusters: list[dict[str, Any]] = [
        {
            "id": c.id,
            "tier": c.tier,
            "status": c.status,
            "keeper": c.keeper_image_id,
            "members": [
                {"image_id": m.image_id, "record_id": m.record_id, "name": m.name, "score": m.score}
                for m in members[c.id]
            ],
        }
        for c in result.clusters
    ]
    if json_out:
        out.print_json(json.dumps({"clusters": clusters, "stats": result.stats}))
        return
    stats = result.stats
    console.print(
        f"{stats['points']} images, {len(clusters)} clusters in "
        f"{sum(stats['seconds'].values()):.2f} s (thresholds {result.thresholds.as_dict()})"
    )
    for c in clusters:
        table = Table("", "score", "name", "image id", title=f"{c['tier']} ({c['status']})")
        for m in c["members"]:
            mark = "keep" if m["image_id"] == c["keeper"] else ""
            table.add_row(mark, f"{m['score']:.4f}", m["name"], m["image_id"])
        out.print(table)


@export_app.command("hard-negatives")
def export_hard_negatives(
    collection: CollectionOpt,
    output: Annotated[
        Path | None, typer.Option("--out", "-o", help="JSON Lines file (default: stdout).")
    ] = None,
    tenant: Annotated[str, typer.Option(help="Tenant.")] = DEFAULT_TENANT,
    data_dir: DataDir = None,
) -> None:
    """Pairs people said do not belong together ("irrelevant" search feedback and "different"
    duplicate verdicts), one JSON object per line, for fine-tuning an embedding model."""
    from lookalike.dedup.service import hard_negatives

    try:
        with _open(_settings(data_dir)) as rt:
            rows = list(hard_negatives(rt, tenant, collection))
    except LookalikeError as exc:
        _fail(exc)
        return
    lines = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
    if output is None:
        sys.stdout.write(lines)
    else:
        output.write_text(lines, encoding="utf-8")
        console.print(f"{len(rows)} hard negatives written to {output}")


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@app.command()
def demo(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    data_dir: DataDir = None,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve after loading.")
    ] = True,
) -> None:
    """Load the sample photos into a `demo` collection, then serve."""
    from lookalike.demo.samples import sample_photos
    from lookalike.ingest.pipeline import IngestFile, NewRecord
    from lookalike.records.service import get_or_create_collection

    settings = _settings(data_dir, host=host, port=port)
    try:
        photos = sample_photos()
        with _open(settings) as rt:
            coll = get_or_create_collection(rt, DEFAULT_TENANT, "demo")
            items = [
                (NewRecord(name=name, owner="demo", tags=("sample",)), IngestFile(data, f"{name}"))
                for name, data in sorted(photos.items())
            ]
            results = rt.ingest.add_many(coll, items, wait=True)
            c = Counter(r.status for r in results)
            console.print(
                f"demo collection: {c['added']} added, {c['duplicate']} already there, "
                f"model {coll.model_id}"
            )
    except LookalikeError as exc:
        _fail(exc)
    if serve_after:
        serve(host=host, port=port, data_dir=data_dir)


@app.command()
def reconcile(
    collection: CollectionOpt,
    check: Annotated[bool, typer.Option("--check", help="Only report, change nothing.")] = False,
    tenant: Annotated[str, typer.Option(help="Tenant.")] = DEFAULT_TENANT,
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

    try:
        with _open(_settings(data_dir)) as rt:
            report = run_reconcile(rt, find_collection(rt, tenant, collection), fix=not check)
            rt.ingest.wait_idle()
    except LookalikeError as exc:
        _fail(exc)
        return
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
            console.print(f"  {f.image_id}  {f.kind}: {f.detail} ({state})")
    if any(check or not f.repaired for f in report.findings):
        raise typer.Exit(1)


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Option(help="User name.")],
    tenant: Annotated[str, typer.Option(help="Tenant the user belongs to.")] = DEFAULT_TENANT,
    days: Annotated[int, typer.Option(help="Valid for this many days.", min=1)] = 30,
    data_dir: DataDir = None,
) -> None:
    """Print a bearer token for USER in TENANT."""
    settings = _settings(data_dir)
    try:
        token = create_token(settings, user=user, tenant=tenant, ttl_s=days * 86400)
    except LookalikeError as exc:
        _fail(exc)
        return
    out.print(token, soft_wrap=True)


def _catalog(data_dir: Path | None):  # type: ignore[no-untyped-def]
    # The catalog alone: keys can be managed while a server holds the data directory.
    from lookalike.catalog import Catalog

    catalog = Catalog(_settings(data_dir).catalog_url)
    catalog.migrate()
    return catalog


@apikey_app.command("create")
def apikey_create(
    user: Annotated[str, typer.Option(help="User the key acts as.")],
    tenant: Annotated[str, typer.Option(help="Tenant the user belongs to.")] = DEFAULT_TENANT,
    name: Annotated[str, typer.Option(help="What the key is for.")] = "",
    data_dir: DataDir = None,
) -> None:
    """Print a new API key for USER in TENANT (shown only this once)."""
    from lookalike.auth.apikeys import create_api_key

    try:
        catalog = _catalog(data_dir)
        try:
            row, key = create_api_key(catalog, tenant=tenant, user=user, name=name)
        finally:
            catalog.close()
    except LookalikeError as exc:
        _fail(exc)
        return
    console.print(f"API key {row.id} (prefix {row.prefix}); it is not shown again:")
    out.print(key, soft_wrap=True, markup=False, highlight=False)


@apikey_app.command("list")
def apikey_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
    revoked: Annotated[bool, typer.Option("--revoked", help="Include revoked keys.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """API keys (never their secrets)."""
    from lookalike.auth.apikeys import list_api_keys

    catalog = _catalog(data_dir)
    try:
        rows = list_api_keys(catalog, tenant=tenant, include_revoked=revoked)
    finally:
        catalog.close()

    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    items = [
        {
            "id": r.id,
            "prefix": r.prefix,
            "tenant": r.tenant,
            "user": r.user,
            "name": r.name,
            "created_at": when(r.created_at),
            "last_used_at": when(r.last_used_at),
            "revoked_at": when(r.revoked_at),
        }
        for r in rows
    ]
    if json_out:
        out.print_json(json.dumps({"keys": items}))
        return
    table = Table("id", "prefix", "tenant", "user", "name", "created", "last used", "revoked")
    for item in items:
        table.add_row(*[str(item[k] or "") for k in item])
    out.print(table)


@apikey_app.command("revoke")
def apikey_revoke(
    key: Annotated[str, typer.Argument(help="The key's id or prefix.")],
    data_dir: DataDir = None,
) -> None:
    """Revoke an API key: requests with it are refused from now on."""
    from lookalike.auth.apikeys import revoke_api_key

    try:
        catalog = _catalog(data_dir)
        try:
            row = revoke_api_key(catalog, key)
        finally:
            catalog.close()
    except LookalikeError as exc:
        _fail(exc)
        return
    console.print(f"revoked API key {row.id} (prefix {row.prefix}, {row.user}@{row.tenant})")


@model_app.command("list")
def model_list(data_dir: DataDir = None) -> None:
    """Known models and whether each is in the cache."""
    from lookalike.embedding import list_models

    table = Table("name", "kind", "dim", "text", "cached", "model id")
    for m in list_models(_settings(data_dir)):
        table.add_row(
            m.name,
            m.kind,
            str(m.dim),
            "yes" if m.supports_text else "no",
            "yes" if m.cached else "no",
            m.model_id or "",
        )
    out.print(table)


@model_app.command("pull")
def model_pull(
    name: Annotated[str, typer.Argument(help="Model name (see `lookalike model list`).")],
    data_dir: DataDir = None,
) -> None:
    """Fetch (or build) a model into the cache."""
    from lookalike.embedding import pull_model

    try:
        path = pull_model(_settings(data_dir), name)
    except LookalikeError as exc:
        _fail(exc)
        return
    console.print(f"{name}: ready in {path}")


@model_app.command("quantize")
def model_quantize(
    name: Annotated[str, typer.Argument(help="Model to quantize (see `lookalike model list`).")],
    out_name: Annotated[str | None, typer.Option(help="Name of the new model.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Make an int8 variant NAME-int8 (about 2x faster on CPUs; vectors differ slightly)."""
    from lookalike.embedding.quantize import quantize_model

    try:
        path = quantize_model(_settings(data_dir), name, out_name=out_name)
    except LookalikeError as exc:
        _fail(exc)
        return
    console.print(f"{path.name}: ready in {path}")


@model_app.command("export")
def model_export(
    out_dir: Annotated[Path, typer.Argument(help="Where to write the model directory.")],
    arch: Annotated[str, typer.Option(help="open_clip architecture.")] = "ViT-B-32",
    pretrained: Annotated[
        str | None, typer.Option(help="open_clip pretrained tag or checkpoint path; none = random.")
    ] = "laion2b_s34b_b79k",
    name: Annotated[str | None, typer.Option(help="Model name in the manifest.")] = None,
) -> None:
    """Export an open_clip model as a model directory (needs `pip install lookalike[export]`)."""
    from lookalike.embedding.export import export_open_clip

    try:
        path = export_open_clip(
            arch, None if pretrained in (None, "none") else pretrained, out_dir, name=name
        )
    except LookalikeError as exc:
        _fail(exc)
        return
    console.print(f"exported to {path}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
