"""`lookalike apikey create|list|revoke`: API keys, kept in the catalog.

These open the catalog alone, not the runtime, so keys can be managed while a server holds the
data directory.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from lookalike.auth.tokens import DEFAULT_TENANT
from lookalike.cli.common import DataDir, console, load_settings, out, print_table

if TYPE_CHECKING:
    from lookalike.catalog import Catalog


def apikey_create(
    user: Annotated[str, typer.Option(help="User the key acts as.")],
    tenant: Annotated[str, typer.Option(help="Tenant the user belongs to.")] = DEFAULT_TENANT,
    name: Annotated[str, typer.Option(help="What the key is for.")] = "",
    data_dir: DataDir = None,
) -> None:
    """Print a new API key for USER in TENANT (shown only this once)."""
    from lookalike.auth.apikeys import create_api_key

    catalog = _catalog(data_dir)
    try:
        row, key = create_api_key(catalog, tenant=tenant, user=user, name=name)
    finally:
        catalog.close()
    console.print(f"API key {row.id} (prefix {row.prefix}); it is not shown again:")
    out.print(key, soft_wrap=True, markup=False, highlight=False)


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
    print_table(table)


def apikey_revoke(
    key: Annotated[str, typer.Argument(help="The key's id or prefix.")],
    data_dir: DataDir = None,
) -> None:
    """Revoke an API key: requests with it are refused from now on."""
    from lookalike.auth.apikeys import revoke_api_key

    catalog = _catalog(data_dir)
    try:
        row = revoke_api_key(catalog, key)
    finally:
        catalog.close()
    console.print(f"revoked API key {row.id} (prefix {row.prefix}, {row.user}@{row.tenant})")


def _catalog(data_dir: Path | None) -> Catalog:
    from lookalike.catalog import Catalog

    catalog = Catalog(load_settings(data_dir).catalog_url)
    catalog.migrate()
    return catalog
