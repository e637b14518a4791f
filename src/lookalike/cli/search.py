"""`lookalike search`: look-alikes of an image file, a stored image or a text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lookalike.api.schemas import HitOut
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
from lookalike.core.errors import InvalidInput


def search(
    collection: CollectionOpt,
    image: Annotated[Path | None, typer.Argument(help="Query image file.")] = None,
    text: Annotated[str | None, typer.Option("--text", help="Query text.")] = None,
    image_id: Annotated[str | None, typer.Option("--image-id", help="A stored image id.")] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode",
            help="How --text is matched: vector, keyword (names, descriptions, tags, page text) "
            "or hybrid (both fused; the default).",
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="Number of hits.", min=1, max=1000)] = 10,
    score_threshold: Annotated[float | None, typer.Option(help="Minimum score.")] = None,
    phash_gate: Annotated[
        int | None, typer.Option(help="Only images within this pHash distance (bits).", min=0)
    ] = None,
    show_all: Annotated[
        bool,
        typer.Option(
            "--all", help="Also list the weaker matches, below the model's relevance cut-off."
        ),
    ] = False,
    tenant: TenantOpt = DEFAULT_TENANT,
    json_out: Annotated[
        bool, typer.Option("--json", help='Print {"hits": [...]} as JSON.')
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Find look-alikes by IMAGE, --text or --image-id."""
    from lookalike.records.service import find_collection
    from lookalike.search.service import SEARCH_MODES, search_page

    settings = load_settings(data_dir)
    if sum(x is not None for x in (image, text, image_id)) != 1:
        raise InvalidInput("give exactly one of IMAGE, --text or --image-id")
    if mode is not None and text is None:
        raise InvalidInput("--mode applies to --text only; an image is matched by vector")
    if mode is not None and mode not in SEARCH_MODES:
        raise InvalidInput(f"--mode must be one of {', '.join(SEARCH_MODES)}")
    try:
        data = image.read_bytes() if image is not None else None
    except OSError as exc:
        raise InvalidInput(f"cannot read {image}: {exc.strerror}") from None
    with open_runtime(settings) as rt:
        page = search_page(
            rt,
            tenant,
            find_collection(rt, tenant, collection),
            image_bytes=data,
            image_id=image_id,
            text=text,
            limit=limit,
            score_threshold=score_threshold,
            include_weaker=show_all,
            include_payload=json_out,
            phash_gate=phash_gate,
            mode=mode or ("hybrid" if text is not None else None),
        )
    if json_out:
        hits_out = [HitOut.model_validate(h).model_dump(mode="json") for h in page.hits]
        answer = {"hits": hits_out, "more": page.more, "cutoff": page.cutoff}
        answer |= {"weaker": page.weaker, "mode": page.mode, "notes": page.notes}
        out.print_json(json.dumps(answer))
        return
    table = Table("score", "name", "image id", "record id", *(["matched"] if text else []))
    for h in page.hits:
        matched = [" + ".join(h.matched)] if text else []
        table.add_row(f"{h.score:.4f}", h.name, h.image_id, h.record_id, *matched)
    print_table(table)
    if not page.hits:
        console.print("no match")
    for note in page.notes:
        console.print(note)
    if page.weaker:
        console.print(
            f"weaker matches (below the relevance cut-off {page.cutoff:.2f}) are hidden; "
            "--all lists them"
        )
