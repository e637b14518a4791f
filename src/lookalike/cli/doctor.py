"""`lookalike doctor`: which stores this configuration uses, and whether each one answers."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from lookalike.cli.common import DataDir, load_settings, out, print_table


def doctor(
    json_out: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Check the catalog, vector engine, blob store and search cache that the settings name
    (LOOKALIKE_DATABASE_URL, LOOKALIKE_VECTORS, LOOKALIKE_BLOBS, LOOKALIKE_CACHE_URL).

    Works beside a running server. Exits 1 when a store does not answer.
    """
    from lookalike.health import probe_stores

    checks = probe_stores(load_settings(data_dir))
    if json_out:
        out.print_json(json.dumps({"stores": [c.as_dict() for c in checks]}))
    else:
        table = Table("store", "engine", "location", "status", "ms")
        for c in checks:
            status = "[green]ok[/]" if c.ok else f"[red]{escape(c.detail)}[/]"
            if c.ok and c.detail != "ok":
                status = f"[green]ok[/] ({escape(c.detail)})"
            table.add_row(c.role, c.engine, escape(c.location), status, f"{c.latency_ms:.0f}")
        print_table(table)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)
