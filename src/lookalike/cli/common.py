"""What every command uses: the two consoles, the shared options, settings and the runtime.

Results (tables, JSON, tokens) go to stdout so they can be piped; messages, progress and errors
go to stderr. The runtime is imported only when a command opens it, so `--help` and the commands
that need only settings or the catalog start without loading models and engines.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from lookalike.core.config import Settings

if TYPE_CHECKING:
    from lookalike.composition import Lookalike

# Lines are not broken at the terminal's width (the terminal wraps them), so an id or a path
# in a message stays whole when copied.
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Data directory (default: LOOKALIKE_DATA_DIR).", show_default=False
    ),
]
CollectionOpt = Annotated[str, typer.Option("--collection", "-c", help="Collection name or id.")]
TenantOpt = Annotated[str, typer.Option(help="Tenant.")]


def print_table(table: Table) -> None:
    """`table` on stdout at its natural width: ids stay whole and copyable on a narrow
    terminal (the line wraps there instead of the id being cut to "01JD…")."""
    for column in table.columns:
        column.no_wrap = True
        column.overflow = "ignore"
    natural = Measurement.get(out, out.options.update(width=10_000), table).maximum
    if natural <= out.width:
        out.print(table)
        return
    # A console only lays a table out within its own width: print through a wider one.
    wide = Console(
        file=out.file,
        width=natural,
        color_system=out.color_system,  # type: ignore[arg-type]
        force_terminal=out.is_terminal,
        soft_wrap=True,
    )
    wide.print(table)


def load_settings(data_dir: Path | None, **overrides: object) -> Settings:
    """Settings from the environment, with the options the user gave (None: not given)."""
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)  # type: ignore[arg-type]


def open_runtime(settings: Settings) -> Lookalike:
    """The runtime on the data directory; use it as a context manager."""
    from lookalike.composition import Lookalike

    return Lookalike(settings)


def progress_bar(*, quiet: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=quiet,
    )


class RichDownloadProgress:
    """Model downloads drawn as one progress bar per file on stderr (or `console`)."""

    def __init__(self, console: Console | None = None) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, Any] = {}
        self._started = False

    def start(self, filename: str, total: int | None) -> None:
        if not self._started:
            self._progress.start()
            self._started = True
        self._tasks[filename] = self._progress.add_task(filename, total=total)

    def advance(self, filename: str, nbytes: int) -> None:
        self._progress.advance(self._tasks[filename], nbytes)

    def finish(self, filename: str) -> None:
        task = self._tasks[filename]
        total = self._progress.tasks[task].completed
        self._progress.update(task, total=total, completed=total)

    def close(self) -> None:
        if self._started:
            self._progress.stop()
            self._started = False
