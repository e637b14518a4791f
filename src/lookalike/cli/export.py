"""`lookalike export ...`: training data out of what people said about the images."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

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
)


def export_hard_negatives(
    collection: CollectionOpt,
    output: Annotated[
        Path | None, typer.Option("--out", "-o", help="JSON Lines file (default: stdout).")
    ] = None,
    tenant: TenantOpt = DEFAULT_TENANT,
    data_dir: DataDir = None,
) -> None:
    """Pairs people said do not belong together ("irrelevant" search feedback and "different"
    duplicate verdicts), one JSON object per line, for fine-tuning an embedding model."""
    from lookalike.dedup.review import hard_negatives

    with open_runtime(load_settings(data_dir)) as rt:
        rows = list(hard_negatives(rt, tenant, collection))
    lines = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
    if output is None:
        sys.stdout.write(lines)
    else:
        output.write_text(lines, encoding="utf-8")
        console.print(escape(f"{len(rows)} hard negatives written to {output}"))
    if not rows:
        # Say why on stderr, so a pipe of the JSON Lines stays clean.
        console.print(
            "no hard negatives yet: they come from people's decisions, i.e. search results "
            "marked irrelevant (POST /api/feedback, the web app's thumbs-down) and pairs "
            'marked "different" in the dedup review (POST /api/duplicates/pairs or a '
            'cluster\'s "not duplicate")'
        )
