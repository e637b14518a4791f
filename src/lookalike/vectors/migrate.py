"""Copy a collection's points (vectors and payloads) from one engine to another, page by page,
so that moving from the embedded engine to a server needs no re-embedding.

The copy walks the source in id order; after each page it reports the id to continue from, which
the caller keeps (the CLI in a state file) so that an interrupted copy resumes where it stopped.
Upserts are idempotent: a page copied twice (a crash between the write and the report) is
harmless.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from lookalike.vectors.base import IndexSettings, PayloadType, VectorIndex

# Called after each page with the points copied in it and the id to resume from (None: done).
OnPage = Callable[[int, str | None], None]


def copy_collection(
    source: VectorIndex,
    target: VectorIndex,
    collection: str,
    *,
    settings: IndexSettings,
    payload_indexes: Mapping[str, PayloadType],
    resume_from: str | None = None,
    page_size: int = 256,
    on_page: OnPage | None = None,
) -> int:
    """Create `collection` on `target` with the source's vectors (a no-op if it is there with
    the same ones) and copy every point from `resume_from` on; returns how many were copied."""
    target.create_collection(collection, source.vector_specs(collection), settings, payload_indexes)
    copied = 0
    offset = resume_from
    while True:
        page, offset = source.scroll(collection, offset=offset, limit=page_size, with_vectors=True)
        if page:
            target.upsert(collection, page)
            copied += len(page)
        if on_page is not None:
            on_page(len(page), offset)
        if offset is None:
            return copied
