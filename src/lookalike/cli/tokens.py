"""`lookalike token create`: a signed bearer token, made from the settings alone."""

from __future__ import annotations

from typing import Annotated

import typer

from lookalike.auth.tokens import DEFAULT_TENANT, create_token
from lookalike.cli.common import DataDir, load_settings, out


def token_create(
    user: Annotated[str, typer.Option(help="User name.")],
    tenant: Annotated[str, typer.Option(help="Tenant the user belongs to.")] = DEFAULT_TENANT,
    days: Annotated[int, typer.Option(help="Valid for this many days.", min=1)] = 30,
    data_dir: DataDir = None,
) -> None:
    """Print a bearer token for USER in TENANT."""
    token = create_token(load_settings(data_dir), user=user, tenant=tenant, ttl_s=days * 86400)
    out.print(token, soft_wrap=True)
