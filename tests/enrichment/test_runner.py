"""Enrichment end to end on a real runtime: searchable first, every stage's result afterwards,
one image's failure is its own, a thumbnail is made on first request, and a process killed
between the two paths leaves work that the next one finishes."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from lookalike.catalog import Collection, Image, ImageStage
from lookalike.composition import Lookalike
from lookalike.enrichment.runner import StageBatch
from lookalike.ingest.pipeline import IngestFile, NewRecord
from lookalike.quality.nsfw import INPUT_SIZE
from lookalike.quality.stages import SAFE_PROMPTS, UNSAFE_PROMPTS, NsfwStage, zero_shot_nsfw
from lookalike.records.service import create_collection
from lookalike.records.thumbnails import thumbnail_of
from support import make_settings

STAGES = ["thumbnail", "quality", "nsfw", "duplicate", "anomaly", "ocr"]
# What a photo's stages end as: OCR reads only documents' pages unless a collection asks for all.
FINISHED = {**dict.fromkeys(STAGES, "done"), "ocr": "skipped"}


def ingest(rt: Lookalike, collection: Collection, files: Mapping[str, bytes]) -> dict[str, str]:
    """Name -> image id, every file added and searchable."""
    items = [(NewRecord(name=n, owner="o"), IngestFile(d, f"{n}.png")) for n, d in files.items()]
    results = rt.ingest.add_many(collection, items, wait=True)
    assert [r.status for r in results] == ["added"] * len(files)
    return {n: str(r.image_id) for n, r in zip(files, results, strict=True)}


def images_by_id(rt: Lookalike) -> dict[str, Image]:
    with rt.catalog.session() as session:
        images = {i.id: i for i in session.scalars(select(Image))}
        session.expunge_all()
    return images


def shrunk(data: bytes) -> bytes:
    """The same photo at 90%: a near-exact duplicate."""
    image = PILImage.open(io.BytesIO(data)).convert("RGB")
    out = io.BytesIO()
    image.resize((image.width * 9 // 10, image.height * 9 // 10)).save(out, "PNG")
    return out.getvalue()


def test_searchable_first_then_every_stage(
    tmp_path: Path, models_dir: Path, photos: dict[str, bytes]
) -> None:
    files = dict(photos)
    files["astronaut_copy"] = shrunk(photos["astronaut"])
    settings = make_settings(tmp_path / "data", models_dir, enrichment=False)
    with Lookalike(settings) as rt:
        assert rt.enrichment.stage_names == STAGES
        coll = create_collection(rt, "default", "photos")
        ids = ingest(rt, coll, files)
        # Searchable: every vector is there, with nothing of enrichment done yet.
        assert rt.vectors.count(coll.id) == len(files)
        for image in images_by_id(rt).values():
            assert image.status == "embedded"
            assert (image.thumbnail_key, image.quality_score, image.nsfw_score) == (None,) * 3
            assert image.anomaly_dnn is None and image.duplicate_tier is None
            assert rt.enrichment.queue.of_image(image.id) == dict.fromkeys(STAGES, "pending")
        assert rt.enrichment.queue.outstanding(coll.id) == len(files) * len(STAGES)

        while rt.enrichment.run_once(limit=8):
            pass
        images = images_by_id(rt)
        for image_id, image in images.items():
            assert rt.enrichment.queue.of_image(image_id) == FINISHED
            assert image.thumbnail_key and rt.blobs.exists(image.thumbnail_key)
            assert image.quality_score is not None and 0 <= image.quality_score <= 1
            assert image.nsfw_score is not None and 0 <= image.nsfw_score <= 1
            assert image.anomaly_dnn is not None
        copy = images[ids["astronaut_copy"]]
        assert (copy.duplicate_tier, copy.duplicate_of) == ("near_exact", ids["astronaut"])
        # The scores reached the vector payload, where filters read them.
        points = {p.id: p for p in rt.vectors.retrieve(coll.id, list(ids.values()))}
        for image_id, image in images.items():
            assert points[image_id].payload["quality"] == image.quality_score
            assert points[image_id].payload["nsfw"] == image.nsfw_score


class BreaksOn:
    """A stage that fails on one image (and records what it was given)."""

    name = "breaks"

    def __init__(self, bad: str) -> None:
        self.bad = bad
        self.seen: list[str] = []

    def pixels_for(self, collection: Collection) -> int | None:
        return 64

    def needs_vector(self, collection: Collection) -> bool:
        return True

    def run(self, batch: StageBatch) -> Mapping[str, str]:
        self.seen.extend(batch.image_ids)
        for item in batch.items:
            assert item.pixels is not None and min(item.pixels.image.size) >= 64
            assert item.vector is not None and item.vector.shape == (batch.collection.dim,)
        return {self.bad: "cannot do this one"} if self.bad in batch.image_ids else {}


def test_one_images_failure_is_its_own_and_is_retried(
    tmp_path: Path, models_dir: Path, photos: dict[str, bytes]
) -> None:
    settings = make_settings(
        tmp_path / "data", models_dir, enrichment=False, enrichment_max_attempts=2, nsfw=False
    )
    with Lookalike(settings) as rt:
        coll = create_collection(rt, "default", "photos")
        files = {n: photos[n] for n in ("coffee", "rocket", "camera")}
        stage = BreaksOn(bad="")
        rt.enrichment.register(stage)
        ids = ingest(rt, coll, files)
        stage.bad = ids["rocket"]
        while rt.enrichment.run_once():
            pass
        assert sorted(stage.seen) == sorted([*ids.values(), ids["rocket"]])  # tried twice
        states = {n: rt.enrichment.queue.of_image(i) for n, i in ids.items()}
        assert states["rocket"]["breaks"] == "failed"
        assert states["coffee"]["breaks"] == states["camera"]["breaks"] == "done"
        # The other stages of the failing image went on (OCR: a photo, with collections reading
        # only documents' pages by default, has nothing to read).
        assert {v for k, v in states["rocket"].items() if k not in ("breaks", "ocr")} == {"done"}
        assert states["rocket"]["ocr"] == "skipped"


def test_a_thumbnail_is_made_on_first_request_and_kept(
    tmp_path: Path, models_dir: Path, photos: dict[str, bytes]
) -> None:
    settings = make_settings(tmp_path / "data", models_dir, enrichment=False, nsfw=False)
    with Lookalike(settings) as rt:
        coll = create_collection(rt, "default", "photos")
        image_id = ingest(rt, coll, {"coffee": photos["coffee"]})["coffee"]
        image = images_by_id(rt)[image_id]
        data = thumbnail_of(rt, image)
        thumb = PILImage.open(io.BytesIO(data))
        assert thumb.format == "WEBP" and max(thumb.size) == settings.thumbnail_size
        stored = images_by_id(rt)[image_id]
        assert stored.thumbnail_key is not None and rt.blobs.get(stored.thumbnail_key) == data
        assert rt.enrichment.queue.of_image(image_id)["thumbnail"] == "done"
        assert rt.enrichment.queue.of_image(image_id)["quality"] == "pending"


def test_clip_nsfw_score_comes_from_the_embedding(
    tmp_path: Path, models_dir: Path, tiny_clip: str, photos: dict[str, bytes]
) -> None:
    settings = make_settings(tmp_path / "data", models_dir, model=tiny_clip, enrichment=False)
    with Lookalike(settings) as rt:
        coll = create_collection(rt, "default", "photos")
        stage = next(s for s in rt.enrichment.stages if isinstance(s, NsfwStage))
        # No pixels and no detector for a CLIP model: the embedding is all it reads.
        assert stage.pixels_for(coll) is None and stage.needs_vector(coll)
        ids = ingest(rt, coll, {n: photos[n] for n in ("coffee", "astronaut", "chelsea")})
        while rt.enrichment.run_once():
            pass
        embedder = rt.models.for_collection(coll)
        prompts = embedder.embed_texts([*UNSAFE_PROMPTS, *SAFE_PROMPTS])
        points = rt.vectors.retrieve(coll.id, list(ids.values()), with_vectors=True)
        vectors = np.stack([p.vectors[coll.vector_name] for p in points])
        expected = zero_shot_nsfw(vectors, prompts)
        images = images_by_id(rt)
        for point, score in zip(points, expected, strict=True):
            assert images[point.id].nsfw_score == pytest.approx(score, abs=1e-4)


def test_nudenet_runs_batched_for_an_image_only_model(
    tmp_path: Path, models_dir: Path, photos: dict[str, bytes]
) -> None:
    settings = make_settings(tmp_path / "data", models_dir, enrichment=False)
    with Lookalike(settings) as rt:
        coll = create_collection(rt, "default", "photos")
        stage = next(s for s in rt.enrichment.stages if isinstance(s, NsfwStage))
        assert stage.pixels_for(coll) == INPUT_SIZE and not stage.needs_vector(coll)
        ids = ingest(rt, coll, {n: photos[n] for n in ("coffee", "astronaut", "chelsea")})
        while rt.enrichment.run_once():
            pass
        images = images_by_id(rt)
        for name, image_id in ids.items():
            one = PILImage.open(io.BytesIO(photos[name])).convert("RGB")
            alone = stage.detector.score(one)
            assert alone is not None
            # Batched and alone agree (the batch decodes at the detector's size: close, not equal).
            assert images[image_id].nsfw_score == pytest.approx(alone, abs=0.05)


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from lookalike.composition import Lookalike
    from lookalike.demo.samples import sample_photos
    from lookalike.ingest.pipeline import IngestFile, NewRecord
    from lookalike.records.service import create_collection
    sys.path.insert(0, sys.argv[3])
    from support import make_settings

    settings = make_settings(Path(sys.argv[1]), Path(sys.argv[2]), enrichment=False)
    rt = Lookalike(settings)
    coll = create_collection(rt, "default", "photos")
    items = [(NewRecord(name=n, owner="o"), IngestFile(d, n)) for n, d in sample_photos().items()]
    results = rt.ingest.add_many(coll, items, wait=True)
    # Half of the enrichment claimed and running when the process dies.
    rt.enrichment.queue.claim(rt.enrichment.stage_names, 10)
    print("searchable", sum(r.status == "added" for r in results), flush=True)
    time.sleep(600)
    """
)


def test_a_process_killed_between_the_two_paths_leaves_work_a_restart_finishes(
    tmp_path: Path, models_dir: Path, photos: dict[str, bytes]
) -> None:
    data_dir = tmp_path / "data"
    tests_dir = str(Path(__file__).resolve().parents[1])
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data_dir), str(models_dir), tests_dir],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.split() == ["searchable", str(len(photos))], line
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()

    settings = make_settings(data_dir, models_dir, enrichment_lease_s=1.0)
    with Lookalike(settings) as rt:
        assert rt.enrichment.queue.outstanding() == len(photos) * len(STAGES)
        assert rt.enrichment.wait_idle(timeout=120)
        images = images_by_id(rt)
        assert len(images) == len(photos)
        for image_id, image in images.items():
            assert rt.enrichment.queue.of_image(image_id) == FINISHED
            assert image.thumbnail_key is not None and image.quality_score is not None
            assert image.nsfw_score is not None and image.anomaly_dnn is not None


class BrokenStage(BreaksOn):
    """A stage whose declaration itself fails: the whole batch of its collection cannot run."""

    name = "broken"

    def needs_vector(self, collection: Collection) -> bool:
        raise RuntimeError("cannot say")


def test_a_batch_that_cannot_run_at_all_counts_an_attempt_for_each_stage(
    tmp_path: Path, models_dir: Path, photos: dict[str, bytes]
) -> None:
    settings = make_settings(
        tmp_path / "data", models_dir, enrichment=False, enrichment_max_attempts=2, nsfw=False
    )
    with Lookalike(settings) as rt:
        coll = create_collection(rt, "default", "photos")
        rt.enrichment.register(BrokenStage(bad=""))
        ids = ingest(rt, coll, {n: photos[n] for n in ("coffee", "rocket")})
        assert rt.enrichment.drain() == 4  # two images, tried twice
        for image_id in ids.values():
            states = rt.enrichment.queue.of_image(image_id)
            assert set(states.values()) == {"failed"}, states
        with rt.catalog.session() as session:
            errors = set(session.scalars(select(ImageStage.error)))
        assert errors == {"RuntimeError: cannot say"}
