"""Domain errors leave the command line as one red `error:` line and exit status 2, mapped once
here: commands raise `LookalikeError` (or let it through) and never catch it themselves."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from lookalike.cli.common import console
from lookalike.core.errors import LookalikeError


class ReportDomainErrors(TyperGroup):
    """The root command group. Every command, in nested groups too, runs inside its `invoke`, so
    this is the one place that sees their errors; click's own (usage, `--help`) pass untouched."""

    # `ctx` is click's Context before typer 0.29 and typer's own copy of it since: Any fits both.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except LookalikeError as exc:
            console.print(f"[red]error:[/red] {exc.message}")
            raise typer.Exit(2) from None
