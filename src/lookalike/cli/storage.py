"""`lookalike sweep-storage`: delete what the blob store holds that nothing will use again."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from lookalike.cli.common import DataDir, console, load_settings, open_runtime, out


def sweep_storage(
    check: Annotated[bool, typer.Option("--check", help="Only report, delete nothing.")] = False,
    grace_hours: Annotated[
        float, typer.Option(help="Keep unreferenced blobs younger than this.", min=0)
    ] = 1.0,
    upload_ttl_minutes: Annotated[
        float, typer.Option(help="Delete staged uploads untouched for this long.", min=1)
    ] = 15.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Sweep the blob store (a local directory or an S3 bucket): originals and thumbnails no
    image names any more, direct uploads never ingested, and what interrupted deletes left.

    Run it from cron (or a Kubernetes CronJob) beside the server. Exits 1 with --check when
    there is something to sweep.
    """
    from lookalike.ingest.reconcile import sweep_storage as run_sweep

    with open_runtime(load_settings(data_dir)) as rt:
        swept = run_sweep(
            rt, fix=not check, grace_s=grace_hours * 3600, upload_ttl_s=upload_ttl_minutes * 60
        )
    found = {
        "orphan_blobs": swept.orphan_blobs,
        "stale_uploads": swept.stale_uploads,
        "leftovers": swept.leftovers,
    }
    if json_out:
        out.print_json(json.dumps({**found, "deleted": swept.fixed}))
    else:
        verb = "deleted" if swept.fixed else "found"
        console.print(
            f"{verb} {len(swept.orphan_blobs)} unreferenced blobs, "
            f"{len(swept.stale_uploads)} stale uploads, {len(swept.leftovers)} leftovers"
        )
    if check and any(found.values()):
        raise typer.Exit(1)
