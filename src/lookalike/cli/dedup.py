"""`lookalike dedup`: sweep a collection for duplicates."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from lookalike.auth.tokens import DEFAULT_TENANT
from lookalike.cli.common import (
    CollectionOpt,
    DataDir,
    TenantOpt,
    console,
    load_settings,
    open_runtime,
    out,
    print_table,
)


def dedup(
    collection: CollectionOpt,
    phash_gate: Annotated[
        int | None, typer.Option(help="pHash bits for near_exact (model default).", min=0, max=11)
    ] = None,
    near_exact: Annotated[
        float | None,
        typer.Option(help="Cosine near_exact needs when an image has too few features."),
    ] = None,
    similar: Annotated[
        float | None, typer.Option(help="Cosine for similar (model default).")
    ] = None,
    geometric_check: Annotated[
        bool | None,
        typer.Option(
            "--geometric-check/--no-geometric-check",
            help="Decide near_exact by local features under one homography (default on).",
        ),
    ] = None,
    tenant: TenantOpt = DEFAULT_TENANT,
    json_out: Annotated[
        bool, typer.Option("--json", help='Print {"clusters": [...]} as JSON.')
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Sweep a collection for duplicates: clusters with their tier and suggested keeper."""
    from lookalike.dedup.review import cluster_members
    from lookalike.dedup.sweep import run_sweep
    from lookalike.records.service import find_collection

    thresholds = {
        "phash_gate": phash_gate,
        "near_exact_cosine": near_exact,
        "similar_cosine": similar,
        "geometric_check": geometric_check,
    }
    with open_runtime(load_settings(data_dir)) as rt:
        coll = find_collection(rt, tenant, collection)
        with console.status(f"sweeping {coll.name}"):
            result = run_sweep(rt, coll, thresholds=thresholds)
        members = cluster_members(rt, result.clusters)
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
        print_table(table)
