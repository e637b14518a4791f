"""Bulk mode: decoding and preparation in worker processes give what the threads give, and the
same refusals."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from badfiles import png_bomb, text_named_jpg, truncated_jpeg
from imaging.builders import streamed_png
from lookalike.catalog import Image
from lookalike.composition import Lookalike
from lookalike.ingest.pipeline import IngestFile, NewRecord
from lookalike.ingest.prepare import processes_for
from lookalike.records.service import create_collection
from support import make_settings


@pytest.mark.parametrize(
    ("setting", "cores", "expected"),
    [(-1, 1, 0), (-1, 2, 0), (-1, 4, 0), (-1, 8, 6), (-1, 64, 62), (0, 64, 0), (3, 2, 3)],
)
def test_processes_only_where_there_are_cores_to_spare(
    setting: int, cores: int, expected: int
) -> None:
    assert processes_for(setting, cores) == expected


BAD: dict[str, Callable[[], bytes]] = {
    "text.jpg": text_named_jpg,
    "truncated.jpg": truncated_jpeg,
    "bomb.png": png_bomb,
    "strip.png": lambda: streamed_png(1, 60_000),
}


def _ingest(
    tmp_path: Path, models_dir: Path, photos: dict[str, bytes], processes: int
) -> tuple[dict[str, tuple[object, ...]], dict[str, np.ndarray], dict[str, str | None]]:
    settings = make_settings(
        tmp_path / f"p{processes}", models_dir, ingest_processes=processes, enrichment=False
    )
    files = {**photos, **{name: make() for name, make in BAD.items()}}
    with Lookalike(settings) as rt:
        assert rt.ingest.prepare_processes == processes
        coll = create_collection(rt, "default", "bulk")
        items = [(NewRecord(name=n, owner="o"), IngestFile(d, n)) for n, d in files.items()]
        results = rt.ingest.add_many(coll, items, wait=True)
        codes = {r.filename or "": r.error_code for r in results}
        ids = {r.filename or "": r.image_id for r in results if r.status == "added"}
        with rt.catalog.session() as session:
            rows = {i.id: i for i in session.scalars(select(Image))}
            fields = {
                n: (rows[i].phash, rows[i].width, rows[i].height, rows[i].mime)
                for n, i in ids.items()
            }
        points = rt.vectors.retrieve(coll.id, list(ids.values()), with_vectors=True)
        by_id = {p.id: p.vectors[coll.vector_name] for p in points}
        vectors = {n: by_id[i] for n, i in ids.items()}
    return fields, vectors, codes


def test_worker_processes_prepare_exactly_what_threads_do(
    tmp_path: Path, models_dir: Path, photos: dict[str, bytes]
) -> None:
    threaded = _ingest(tmp_path, models_dir, photos, processes=0)
    pooled = _ingest(tmp_path, models_dir, photos, processes=2)
    assert pooled[0] == threaded[0]  # pHash, size, type of every photo
    assert set(pooled[1]) == set(photos)
    for name in photos:
        np.testing.assert_array_equal(pooled[1][name], threaded[1][name])
    assert pooled[2] == threaded[2]  # the same refusals, with the same codes
    assert {pooled[2][name] for name in BAD} == {
        "invalid_image",
        "image_too_large",
        "extreme_aspect_ratio",
    }
