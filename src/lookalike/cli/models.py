"""`lookalike model list|pull|quantize|export`: the embedding models in the model cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lookalike.cli.common import (
    DataDir,
    RichDownloadProgress,
    console,
    load_settings,
    out,
    print_table,
)


def model_list(
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Known models and whether each is in the cache."""
    from lookalike.embedding import list_models

    models = list_models(load_settings(data_dir))
    if json_out:
        items = [
            {
                "name": m.name,
                "kind": m.kind,
                "dim": m.dim,
                "text": m.supports_text,
                "cached": m.cached,
                "model_id": m.model_id,
            }
            for m in models
        ]
        out.print_json(json.dumps({"models": items}))
        return
    table = Table("name", "kind", "dim", "text", "cached", "model id")
    for m in models:
        table.add_row(
            m.name,
            m.kind,
            str(m.dim),
            "yes" if m.supports_text else "no",
            "yes" if m.cached else "no",
            m.model_id or "",
        )
    print_table(table)


def model_pull(
    name: Annotated[str, typer.Argument(help="Model name (see `lookalike model list`).")],
    data_dir: DataDir = None,
) -> None:
    """Fetch (or build) a model into the cache."""
    from lookalike.embedding import pull_model

    bar = RichDownloadProgress(console)
    try:
        path = pull_model(load_settings(data_dir), name, progress=bar)
    finally:
        bar.close()
    console.print(f"{name}: ready in {path}")


def model_quantize(
    name: Annotated[str, typer.Argument(help="Model to quantize (see `lookalike model list`).")],
    out_name: Annotated[str | None, typer.Option(help="Name of the new model.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Make an int8 variant NAME-int8 (about 2x faster on CPUs; vectors differ slightly)."""
    from lookalike.embedding.quantize import quantize_model

    path = quantize_model(load_settings(data_dir), name, out_name=out_name)
    console.print(f"{path.name}: ready in {path}")


def model_export(
    out_dir: Annotated[Path, typer.Argument(help="Where to write the model directory.")],
    arch: Annotated[str, typer.Option(help="open_clip architecture.")] = "ViT-B-32",
    pretrained: Annotated[
        str | None, typer.Option(help="open_clip pretrained tag or checkpoint path; none = random.")
    ] = "laion2b_s34b_b79k",
    name: Annotated[str | None, typer.Option(help="Model name in the manifest.")] = None,
) -> None:
    """Export an open_clip model as a model directory.

    Needs torch and open_clip: `pip install "lookalike\\[export]"`.
    """
    from lookalike.embedding.export import export_open_clip

    path = export_open_clip(
        arch, None if pretrained in (None, "none") else pretrained, out_dir, name=name
    )
    console.print(f"exported to {path}")
