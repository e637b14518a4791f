"""The `lookalike` command line. It opens the data directory directly (no server needed).

Each command lives in the module named for what a user types (`lookalike model pull` in
`models.py`, `lookalike serve`, `demo` and `embed-server` in `serve.py`); this file puts them
into one app, in the order `lookalike --help` lists them. Commands let domain errors through:
`errors.ReportDomainErrors` reports them, once for all.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from lookalike.cli import (
    anomalies,
    apikeys,
    ask,
    dedup,
    doctor,
    export,
    ingest,
    models,
    search,
    serve,
    storage,
    tokens,
    vectors,
)
from lookalike.cli.errors import ReportDomainErrors

app = typer.Typer(
    cls=ReportDomainErrors,
    help="Lookalike: image similarity search, visual quality control and image RAG.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


app.command()(serve.serve)
app.command("embed-server")(serve.embed_server)
app.command()(ingest.ingest)
app.command()(ingest.enrich)
app.command()(ingest.watch)
app.command()(search.search)
app.command()(ask.ask)
app.command()(anomalies.anomalies)
app.command()(dedup.dedup)
app.command()(serve.demo)
app.command()(ingest.reconcile)
app.command("sweep-storage")(storage.sweep_storage)
app.command()(doctor.doctor)
app.command("migrate-vectors")(vectors.migrate_vectors)

model_app = typer.Typer(help="List, fetch and export embedding models.", no_args_is_help=True)
model_app.command("list")(models.model_list)
model_app.command("pull")(models.model_pull)
model_app.command("quantize")(models.model_quantize)
model_app.command("export")(models.model_export)
app.add_typer(model_app, name="model")

token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
token_app.command("create")(tokens.token_create)
app.add_typer(token_app, name="token")

apikey_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
apikey_app.command("create")(apikeys.apikey_create)
apikey_app.command("list")(apikeys.apikey_list)
apikey_app.command("revoke")(apikeys.apikey_revoke)
app.add_typer(apikey_app, name="apikey")

export_app = typer.Typer(help="Export training data.", no_args_is_help=True)
export_app.command("hard-negatives")(export.export_hard_negatives)
app.add_typer(export_app, name="export")


def main() -> None:
    """The `lookalike` console script."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
