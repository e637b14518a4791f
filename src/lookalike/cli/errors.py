"""The root command group: domain errors leave the command line as one red `error:` line and
exit status 2, mapped once here (commands raise `LookalikeError` or let it through and never
catch it themselves), and `--help` shows on/off flags without a `<bool>` type."""

from __future__ import annotations

from typing import Any

import typer
from pydantic import ValidationError
from rich.markup import escape
from typer.core import TyperGroup

from lookalike.cli.common import console
from lookalike.core.errors import LookalikeError


class ReportDomainErrors(TyperGroup):
    """The root command group. Every command, in nested groups too, runs inside its `invoke`, so
    this is the one place that sees their errors; click's own (usage, `--help`) pass untouched.
    Every command is resolved through its `get_command`, the place to tidy their help."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _plain_flags(command, ctx)
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _plain_flags(self, ctx)
        super().format_help(ctx, formatter)

    # `ctx` is click's Context before typer 0.29 and typer's own copy of it since: Any fits both.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except LookalikeError as exc:
            # Messages are plain text: "lookalike[export]" must not be read as markup.
            console.print(f"[red]error:[/red] {escape(exc.message)}", soft_wrap=True)
            raise typer.Exit(2) from None
        except ValidationError as exc:
            # A LOOKALIKE_* variable (or .env line) the settings refuse: name it, not a trace.
            for error in exc.errors():
                name = "LOOKALIKE_" + "_".join(str(p) for p in error["loc"]).upper()
                reason = str(error["msg"]).removeprefix("Value error, ")
                console.print(f"[red]error:[/red] {escape(name)}: {escape(reason)}", soft_wrap=True)
            raise typer.Exit(2) from None


def _plain_flags(command: Any, ctx: Any) -> None:
    """Give on/off flags (`--json`, `--all`, `--help`) an empty metavar: typer's help would show
    them as taking a `<bool>` value, which they do not. (Typed `Any`: typer 0.29 carries its own
    copy of click, whose classes are not click's.)"""
    help_option = command.get_help_option(ctx)
    for param in [*command.params, *([help_option] if help_option else [])]:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _plain_flags(sub, ctx)
