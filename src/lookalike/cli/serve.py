"""`lookalike serve`, `lookalike demo` and `lookalike embed-server`: the long-running servers."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
from collections import Counter
from typing import Annotated

import typer

from lookalike.auth.tokens import ANONYMOUS, DEFAULT_TENANT
from lookalike.cli.common import DataDir, console, load_settings, open_runtime

# glibc's mallopt parameter for the number of arenas (M_ARENA_MAX in malloc.h).
_M_ARENA_MAX = -8


def cap_malloc_arenas(arenas: int = 2) -> None:
    """Let glibc's malloc keep `arenas` arenas, as MALLOC_ARENA_MAX=2 would, unless the operator
    set that variable. Call before any thread starts.

    By default each thread that allocates gets an arena of its own (up to 8 per core), and each
    keeps what was freed in it. With request, ingest and model threads all decoding images, a
    server then holds about 100 MB more and keeps creeping up: bench/soak.py measured 570 ->
    720 MB over minutes 1-5 by default and 464 -> 600 MB with two arenas, for the same load.
    """
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to tune
        ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, arenas)


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Run the HTTP API (and web app) on HOST:PORT."""
    import uvicorn

    from lookalike.api.app import create_app
    from lookalike.core.logs import configure_logging

    cap_malloc_arenas()
    settings = load_settings(data_dir, host=host, port=port)
    # JSON lines unless LOOKALIKE_LOG_FORMAT=text; the app writes its own access log (with route,
    # request id and tenant) instead of uvicorn's.
    configure_logging(settings.log_format or "json")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level="info",
        access_log=False,
    )


def embed_server(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int, typer.Option(help="Port.")] = 8001,
    data_dir: DataDir = None,
) -> None:
    """Run the embedding service (the model alone) on HOST:PORT; point the API at it with
    LOOKALIKE_EMBED_URL=http://HOST:PORT. It requires the key LOOKALIKE_EMBED_API_KEY (the API
    sends the same value); LOOKALIKE_EMBED_OPEN=true runs it without one, on loopback only."""
    import uvicorn

    from lookalike.embed_server.app import create_embed_app

    cap_malloc_arenas()
    settings = load_settings(data_dir, host=host)
    logging.getLogger("lookalike").setLevel(logging.INFO)
    # Checks the key against the address uvicorn binds below (settings.host).
    embed_app = create_embed_app(settings)
    uvicorn.run(embed_app, host=settings.host, port=port, log_level="info")


def demo(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    data_dir: DataDir = None,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve after loading.")
    ] = True,
) -> None:
    """Load the sample photos into a `demo` collection, then serve."""
    from lookalike.demo.samples import sample_photos
    from lookalike.ingest.pipeline import IngestFile, NewRecord
    from lookalike.records.service import get_or_create_collection

    cap_malloc_arenas()
    settings = load_settings(data_dir, host=host, port=port)
    photos = sample_photos()
    with open_runtime(settings) as rt:
        coll = get_or_create_collection(rt, DEFAULT_TENANT, "demo")
        items = [
            # The owner uploads get without sign-in, so the samples and uploads agree.
            (
                NewRecord(name=name, owner=ANONYMOUS.user, tags=("sample",)),
                IngestFile(data, f"{name}"),
            )
            for name, data in sorted(photos.items())
        ]
        results = rt.ingest.add_many(coll, items, wait=True)
        c = Counter(r.status for r in results)
        console.print(
            f"demo collection: {c['added']} added, {c['duplicate']} already there, "
            f"model {coll.model_id}"
        )
    if serve_after:
        serve(host=host, port=port, data_dir=data_dir)
