"""`lookalike anomalies`: the review queue of the most unusual images."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from lookalike.api.schemas import AnomalyItemOut, AnomalyPage
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


def anomalies(
    collection: CollectionOpt,
    sort: Annotated[
        str, typer.Option(help="Rank by: review (junk and outliers first), dnn, density or ood.")
    ] = "review",
    show_all: Annotated[
        bool, typer.Option("--all", help="Also the images below the review cut-off.")
    ] = False,
    limit: Annotated[int, typer.Option(help="Number of images.", min=1, max=200)] = 20,
    recompute: Annotated[
        bool, typer.Option("--recompute", help="Recompute every score first.")
    ] = False,
    tenant: TenantOpt = DEFAULT_TENANT,
    json_out: Annotated[
        bool, typer.Option("--json", help='Print {"items": [...], "total": N} as JSON.')
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """The anomaly review queue: the images that need review (junk and outliers), not reviewed
    yet; --all lists the others after them."""
    from lookalike.anomalies.queue import list_anomalies
    from lookalike.records.service import find_collection

    with open_runtime(load_settings(data_dir)) as rt:
        coll = find_collection(rt, tenant, collection)
        if recompute:
            result = rt.anomalies.recompute(coll.id)
            console.print(f"scored {result['scored']} images in {result['seconds']} s")
        items, total = list_anomalies(
            rt.catalog, coll, sort=sort, limit=limit, needs_review=None if show_all else True
        )
    if json_out:
        page = AnomalyPage(items=[AnomalyItemOut.model_validate(i) for i in items], total=total)
        out.print_json(page.model_dump_json())
        return
    title = f"{total} not reviewed" if show_all else f"{total} need review"
    table = Table("priority", "ood", "name", "image id", "why", title=title)
    for i in items:
        why = "; ".join(i.reasons) or "-"
        table.add_row(_score(i.priority), _score(i.ood), i.name, i.image_id, why)
    print_table(table)


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
