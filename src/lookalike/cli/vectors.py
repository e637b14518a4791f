"""`lookalike migrate-vectors`: copy every collection's vectors and payloads from one vector
engine to another (the embedded engine to a Milvus, Qdrant or pgvector server, say), with a
progress bar, resuming an interrupted copy where it stopped."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import Progress, TaskID

from lookalike.cli.common import DataDir, console, load_settings, progress_bar
from lookalike.core.config import Settings


def migrate_vectors(
    source: Annotated[
        str,
        typer.Option("--from", help="Engine to copy from, as LOOKALIKE_VECTORS names it."),
    ],
    target: Annotated[
        str, typer.Option("--to", help="Engine to copy to, as LOOKALIKE_VECTORS names it.")
    ],
    collection: Annotated[
        list[str] | None,
        typer.Option("--collection", "-c", help="Only this collection (name or id); repeatable."),
    ] = None,
    restart: Annotated[
        bool, typer.Option("--restart", help="Start over instead of resuming an earlier run.")
    ] = False,
    page_size: Annotated[int, typer.Option(help="Points per write.", min=1, max=10_000)] = 256,
    data_dir: DataDir = None,
) -> None:
    """Copy the vectors of every collection (or those given) from --from to --to, without
    re-embedding. Stop the server first when either side is the embedded engine (`edge`).

    An interrupted run resumes where it stopped; then set LOOKALIKE_VECTORS to the target.
    """
    from lookalike.catalog import Catalog, Collection
    from lookalike.ingest.payload import PAYLOAD_INDEXES
    from lookalike.search.cache import with_search_cache
    from lookalike.vectors import open_vector_index
    from lookalike.vectors.base import IndexSettings
    from lookalike.vectors.migrate import copy_collection

    settings = load_settings(data_dir)
    if source == target:
        console.print("[red]--from and --to name the same engine; nothing to copy[/]")
        raise typer.Exit(2)
    catalog = Catalog(settings.catalog_url)
    try:
        with catalog.session() as session:
            rows = session.query(Collection).order_by(Collection.created_at).all()
    finally:
        catalog.close()
    wanted = set(collection or [])
    chosen = [c for c in rows if not wanted or c.id in wanted or c.name in wanted]
    unknown = wanted - {c.id for c in chosen} - {c.name for c in chosen}
    if unknown:
        console.print(f"[red]no collection named {escape(', '.join(sorted(unknown)))}[/]")
        raise typer.Exit(2)

    state_path = _state_path(settings, source, target)
    state = {} if restart else _read_state(state_path)
    src = open_vector_index(settings.model_copy(update={"vectors": _checked(source)}))
    try:
        # Writes through the cache wrapper retire the target's cached searches, if any.
        dst = with_search_cache(
            open_vector_index(settings.model_copy(update={"vectors": _checked(target)})), settings
        )
    except BaseException:
        src.close()
        raise
    run = _Run(state_path, state)
    try:
        with progress_bar() as progress:
            run.progress = progress
            for coll in chosen:
                if run.state.get(coll.id, {}).get("finished") or not src.has_collection(coll.id):
                    continue  # copied by an earlier run, or nothing ever embedded into it
                run.begin(coll.id, coll.name, src.count(coll.id))
                index = IndexSettings(
                    hnsw_m=coll.vector_settings.get("hnsw_m", settings.hnsw_m),
                    hnsw_ef_construct=coll.vector_settings.get(
                        "hnsw_ef_construct", settings.hnsw_ef_construct
                    ),
                    quantization=coll.vector_settings.get("quantization", settings.quantization),
                    indexing_threshold=settings.indexing_threshold,
                )
                copy_collection(
                    src,
                    dst,
                    coll.id,
                    settings=index,
                    payload_indexes=PAYLOAD_INDEXES,
                    resume_from=run.state[coll.id].get("offset"),
                    page_size=page_size,
                    on_page=run.page_done,
                )
                dst.build_index(coll.id, wait=True)
        mismatched = [
            (c.name, src.count(c.id), dst.count(c.id))
            for c in chosen
            if src.has_collection(c.id) and src.count(c.id) != dst.count(c.id)
        ]
    finally:
        src.close()
        dst.close()
    for name, have, got in mismatched:
        console.print(f"[red]{escape(name)}: {have} points at the source, {got} at the target[/]")
    if mismatched:
        raise typer.Exit(1)
    console.print(
        f"copied {run.copied} points of {len(chosen)} collections; now set "
        f"LOOKALIKE_VECTORS={escape(target)} and start the server"
    )


class _Run:
    """What has been copied, kept in a state file after every page so that a rerun resumes."""

    def __init__(self, path: Path, state: dict[str, Any]) -> None:
        self.path = path
        self.state = state
        self.copied = 0
        self.progress: Progress | None = None
        self._started = time.monotonic()
        self._collection = ""
        self._task: TaskID | None = None

    def begin(self, collection_id: str, name: str, total: int) -> None:
        self._collection = collection_id
        entry = self.state.setdefault(collection_id, {"copied": 0, "offset": None})
        if self.progress is not None:
            self._task = self.progress.add_task(
                name, total=total, completed=entry["copied"], rate=""
            )

    def page_done(self, count: int, offset: str | None) -> None:
        entry = self.state[self._collection]
        entry["copied"] += count
        entry["offset"] = offset
        entry["finished"] = offset is None
        _write_state(self.path, self.state)
        self.copied += count
        if self.progress is not None and self._task is not None:
            rate = self.copied / max(time.monotonic() - self._started, 1e-6)
            self.progress.update(self._task, advance=count, rate=f"{rate:.0f} points/s")


def _checked(url: str) -> str:
    # The same names and the same checks as the setting itself.
    return Settings.model_validate({"vectors": url}).vectors


def _state_path(settings: Settings, source: str, target: str) -> Path:
    key = hashlib.sha256(f"{source}\n{target}\n{settings.vectors_namespace}".encode()).hexdigest()
    return settings.data_dir / "migrations" / f"vectors-{key[:12]}.json"


def _read_state(path: Path) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return loaded


def _write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)
