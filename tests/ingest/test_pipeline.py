"""Ingest end to end: catalog rows, blobs, thumbnails, vectors, idempotency, bad input, resume."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select
from ulid import ULID

from badfiles import png_bomb, text_named_jpg, truncated_jpeg
from lookalike.catalog import Image, Job, Record
from lookalike.composition import Lookalike
from lookalike.core.config import Settings
from lookalike.ingest.pipeline import IngestFile, NewRecord
from lookalike.ingest.reconcile import reconcile
from lookalike.records.service import create_collection
from lookalike.vectors.base import Point
from support import make_settings, settle, wait_until


def _state(rt: Lookalike, collection_id: str) -> tuple[int, int, int, int]:
    with rt.catalog.session() as s:
        images = s.scalar(select(func.count()).select_from(Image)) or 0
        records = s.scalar(select(func.count()).select_from(Record)) or 0
    return images, records, len(rt.blobs.iter_keys()), rt.vectors.count(collection_id)


def test_photos_are_stored_thumbnailed_and_embedded(
    rt: Lookalike, photos: dict[str, bytes]
) -> None:
    coll = create_collection(rt, "default", "photos")
    items = [
        (NewRecord(name=n, owner="alice", tags=("sample",)), IngestFile(d, f"{n}.png"))
        for n, d in photos.items()
    ]
    results = rt.ingest.add_many(coll, items, wait=True)
    assert [r.status for r in results] == ["added"] * len(photos)
    settle(rt)
    with rt.catalog.session() as s:
        images = s.scalars(select(Image)).all()
        names = {i.id: i.record.name for i in images}
        assert {i.status for i in images} == {"embedded"}
        assert all(i.model_id == coll.model_id for i in images)
        jobs = s.scalars(select(Job)).all()
        assert {j.status for j in jobs} == {"done"}
    assert rt.vectors.count(coll.id) == len(photos)
    for image in images:
        assert image.blob_key and rt.blobs.get(image.blob_key) == photos[names[image.id]]
        assert image.thumbnail_key is not None
        thumb = PILImage.open(io.BytesIO(rt.blobs.get(image.thumbnail_key)))
        assert thumb.format == "WEBP"
        assert max(thumb.size) <= rt.settings.thumbnail_size
        assert len(image.phash or "") == 16
    point = rt.vectors.retrieve(coll.id, [images[0].id])[0]
    assert point.payload["owner"] == "alice"
    assert point.payload["tags"] == ["sample"]
    assert point.payload["sha256"] == images[0].sha256


def test_same_bytes_twice_give_the_same_image(rt: Lookalike, photos: dict[str, bytes]) -> None:
    coll = create_collection(rt, "default", "dups")
    data = photos["chelsea"]
    (first,) = rt.ingest.add(coll, NewRecord(name="cat", owner="a"), [IngestFile(data)], wait=True)
    before = _state(rt, coll.id)
    (again,) = rt.ingest.add(coll, NewRecord(name="cat2", owner="a"), [IngestFile(data)], wait=True)
    assert again.status == "duplicate"
    assert again.image_id == first.image_id and again.record_id == first.record_id
    assert _state(rt, coll.id) == before  # no second record, blob or vector


def test_duplicates_within_one_batch(rt: Lookalike, photos: dict[str, bytes]) -> None:
    coll = create_collection(rt, "default", "batch")
    data = photos["coffee"]
    results = rt.ingest.add_many(
        coll, [(NewRecord(name=f"c{i}", owner="a"), IngestFile(data)) for i in range(4)], wait=True
    )
    assert sorted(r.status for r in results) == ["added", "duplicate", "duplicate", "duplicate"]
    assert len({r.image_id for r in results}) == 1
    assert _state(rt, coll.id)[:2] == (1, 1)


def test_several_images_in_one_record(rt: Lookalike, photos: dict[str, bytes]) -> None:
    coll = create_collection(rt, "default", "shop")
    target = NewRecord(name="Espresso cup", owner="shop", description="white cup")
    files = [IngestFile(photos["coffee"]), IngestFile(photos["chelsea"])]
    results = rt.ingest.add(coll, target, files, wait=True)
    assert {r.record_id for r in results} == {results[0].record_id}
    with rt.catalog.session() as s:
        record = s.get(Record, results[0].record_id)
        assert record is not None and len(record.images) == 2


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (text_named_jpg, "invalid_image"),
        (truncated_jpeg, "invalid_image"),
        (png_bomb, "image_too_large"),
        (lambda: b"", "invalid_image"),
    ],
    ids=["text-named-jpg", "truncated-jpeg", "png-bomb", "empty"],
)
def test_bad_files_are_rejected_and_change_nothing(
    rt: Lookalike, photos: dict[str, bytes], make: object, code: str
) -> None:
    coll = create_collection(rt, "default", "bad")
    rt.ingest.add(coll, NewRecord(name="ok", owner="a"), [IngestFile(photos["camera"])], wait=True)
    settle(rt)
    before = _state(rt, coll.id)
    (result,) = rt.ingest.add(
        coll,
        NewRecord(name="bad", owner="a"),
        [IngestFile(make(), "x.jpg")],
        wait=True,  # type: ignore[operator]
    )
    assert result.status == "rejected"
    assert result.error_code == code
    assert result.reason
    assert _state(rt, coll.id) == before


def test_file_over_the_byte_limit(
    tmp_path: Path, models_dir: Path, photos: dict[str, bytes]
) -> None:
    settings = make_settings(tmp_path / "d", models_dir, max_image_bytes=10_000)
    with Lookalike(settings) as rt:
        coll = create_collection(rt, "default", "small")
        path = tmp_path / "big.png"
        path.write_bytes(photos["astronaut"])
        (result,) = rt.ingest.add_paths(coll, [path], owner="a")
        assert result.status == "rejected"
        assert result.error_code == "image_too_large"
        assert "10000" in (result.reason or "")
        assert _state(rt, coll.id) == (0, 0, 0, 0)


def test_a_restart_resumes_pending_work(settings: Settings, photos: dict[str, bytes]) -> None:
    # First process: rows, jobs and blobs are written, then it stops before embedding.
    first = Lookalike(settings, start=False)
    coll = create_collection(first, "default", "resume")
    embedder = first.models.for_collection(coll)
    for name in ("chelsea", "coffee"):
        result, item = first.ingest._prepare(
            coll,
            embedder,
            NewRecord(name=name, owner="a"),
            IngestFile(photos[name]),
        )
        assert result.status == "added" and item is not None
    first.vectors.close()
    first.catalog.close()

    with Lookalike(settings) as second:

        def statuses() -> set[str]:
            with second.catalog.session() as s:
                return {i.status for i in s.scalars(select(Image)).all()}

        assert wait_until(lambda: statuses() == {"embedded"})
        assert second.vectors.count(coll.id) == 2


def test_reconcile_repairs_drift(rt: Lookalike, photos: dict[str, bytes]) -> None:
    coll = create_collection(rt, "default", "drift")
    results = rt.ingest.add_many(
        coll,
        [(NewRecord(name=n, owner="a"), IngestFile(photos[n])) for n in ("chelsea", "coffee")],
        wait=True,
    )
    kept, lost = (r.image_id or "" for r in results)
    orphan = Point(id=str(ULID()), vectors={coll.vector_name: np.ones(coll.dim, np.float32)})
    rt.vectors.upsert(coll.id, [orphan])
    rt.vectors.delete(coll.id, [lost])

    report = reconcile(rt, coll)
    assert (report.orphan_vectors, report.missing_vectors) == (1, 1)
    assert wait_until(lambda: {p.id for p in rt.vectors.iter_points(coll.id)} == {kept, lost})
    assert reconcile(rt, coll, fix=False).orphan_vectors == 0
    assert wait_until(lambda: reconcile(rt, coll, fix=False).missing_vectors == 0)


def test_quality_score_is_stored_and_filterable(rt: Lookalike, photos: dict[str, bytes]) -> None:
    from PIL import ImageFilter

    from lookalike.search import SearchFilters, search_similar

    coll = create_collection(rt, "default", "quality")
    sharp = PILImage.open(io.BytesIO(photos["astronaut"])).convert("RGB")
    blurred = sharp.filter(ImageFilter.GaussianBlur(6))
    buf = io.BytesIO()
    blurred.save(buf, "PNG")
    results = rt.ingest.add_many(
        coll,
        [
            (NewRecord(name="sharp", owner="a"), IngestFile(photos["astronaut"])),
            (NewRecord(name="blurred", owner="a"), IngestFile(buf.getvalue())),
            (NewRecord(name="query", owner="a"), IngestFile(photos["coffee"])),
        ],
        wait=True,
    )
    settle(rt)
    with rt.catalog.session() as s:
        scores = {i.id: i.quality_score for i in s.scalars(select(Image)).all()}
    sharp_q, blurred_q = scores[results[0].image_id], scores[results[1].image_id]
    assert sharp_q is not None and blurred_q is not None
    assert sharp_q > blurred_q
    cut = (sharp_q + blurred_q) / 2
    hits = search_similar(
        rt, "default", coll.id, image_id=results[2].image_id, filters=SearchFilters(min_quality=cut)
    )
    assert {h.name for h in hits} == {"sharp"}


def test_an_image_deleted_before_its_vector_is_written_stops_nothing(
    rt: Lookalike, photos: dict[str, bytes]
) -> None:
    """Its batch is written without it, and later uploads still finish (the writer lives on)."""
    import threading

    from lookalike.records.service import delete_record

    coll = create_collection(rt, "default", "gone")
    rt.ingest.pause()  # embedded, not written: the record can go first
    (result,) = rt.ingest.add(
        coll, NewRecord(name="soon gone", owner="a"), [IngestFile(photos["coffee"], "c.png")]
    )
    assert result.status == "added" and result.record_id
    delete_record(rt, "default", result.record_id)
    rt.ingest.unpause()
    assert rt.ingest.wait_idle(timeout=60)

    done: list[object] = []
    later = threading.Thread(
        target=lambda: done.extend(
            rt.ingest.add(
                coll,
                NewRecord(name="later", owner="a"),
                [IngestFile(photos["rocket"], "r.png")],
                wait=True,
            )
        ),
        daemon=True,
    )
    later.start()
    later.join(timeout=60)
    assert [getattr(r, "status", None) for r in done] == ["added"]
    assert rt.vectors.count(coll.id) == 1
    assert rt.enrichment.queue.of_image(result.image_id or "") == {}
