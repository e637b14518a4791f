"""NSFW scores: the NudeNet detector run on our own preprocessing, stored at ingest, filterable."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from lookalike.catalog import Image
from lookalike.composition import Lookalike
from lookalike.ingest.pipeline import IngestFile, NewRecord
from lookalike.quality.nsfw import (
    EXPLICIT_LABELS,
    LABELS,
    NsfwDetector,
    detector_input,
    nudenet_model_path,
    shared_detector,
)
from lookalike.quality.stages import NsfwStage
from lookalike.records.service import create_collection
from lookalike.search import SearchFilters, search_similar
from support import jpeg, make_settings, open_image, settle, wait_until

# The sample photos hold no nudity; these are ordinary scenes, objects and portraits.
EVERYDAY = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "grace_hopper", "camera")


@pytest.fixture(scope="module")
def detector() -> NsfwDetector:
    if nudenet_model_path() is None:
        pytest.fail("the nudenet package (a dependency) is not installed")
    return shared_detector()


def test_the_model_ships_in_the_nudenet_wheel() -> None:
    path = nudenet_model_path()
    assert path is not None and path.name == "320n.onnx" and path.parent.name == "nudenet"


def test_sample_photos_score_low(detector: NsfwDetector, photos: dict[str, bytes]) -> None:
    scores = {name: detector.score(open_image(data)) for name, data in photos.items()}
    for name, score in scores.items():
        assert score is not None and 0.0 <= score <= 1.0, name
    for name in EVERYDAY:
        assert scores[name] < 0.3, (name, scores[name])
    # The score is the explicit classes' maximum: faces are seen, and do not count.
    astronaut = detector.class_scores(open_image(photos["astronaut"]))
    assert astronaut is not None
    assert astronaut["FACE_FEMALE"] > 0.5
    assert scores["astronaut"] == pytest.approx(
        max(astronaut[k] for k in EXPLICIT_LABELS), abs=1e-6
    )


def test_input_is_the_padded_square_scaled_to_320() -> None:
    image = PILImage.new("RGB", (640, 320), (255, 0, 0))
    batch = detector_input(image)
    assert batch.shape == (1, 3, 320, 320) and batch.dtype == np.float32
    # Top half: the red image; bottom half: the black padding.
    assert np.allclose(batch[0, :, :150, :], np.array([1.0, 0.0, 0.0])[:, None, None])
    assert np.all(batch[0, :, 170:, :] == 0.0)
    grey = detector_input(PILImage.new("L", (100, 100), 128))
    assert np.allclose(grey, 128 / 255, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("astronaut", None),
        ("coffee", None),
        ("chelsea", None),
        ("rocket", None),
        ("grace_hopper", None),
        ("motorcycle_left", (1800, 1215)),  # a large image: a strong downscale
        ("chelsea", (200, 133)),  # a small one: an upscale
        ("coffee", (150, 400)),  # portrait: padded on the right
    ],
)
def test_preprocessing_matches_nudenets_reference(
    detector: NsfwDetector, photos: dict[str, bytes], name: str, size: tuple[int, int] | None
) -> None:
    # Only the tests import nudenet's Python code (and so OpenCV); the service never does.
    reference = pytest.importorskip("nudenet.nudenet")
    image = open_image(photos[name])
    if size is not None:
        image = image.resize(size, PILImage.Resampling.BICUBIC)
    # Given an RGB array, nudenet's two channel swaps cancel out and the model gets RGB.
    expected = reference._read_image(np.asarray(image).copy(), 320)[0]
    ours = detector_input(image)
    assert ours.shape == expected.shape
    # Bit-exact, except OpenCV's first and last output row when upscaling (one grey level).
    assert np.abs(ours - expected).max() <= 1.01 / 255
    assert np.mean(ours != expected) < 0.005
    ours_scores = detector.class_scores(image)
    assert ours_scores is not None
    session = detector._load()
    assert session is not None
    theirs = session.run_one(expected)[0, 4:].max(axis=1)
    for i, label in enumerate(LABELS):
        assert ours_scores[label] == pytest.approx(float(theirs[i]), abs=1e-3), label


def test_a_missing_model_warns_once_and_scores_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, photos: dict[str, bytes]
) -> None:
    missing = NsfwDetector(tmp_path / "320n.onnx")
    image = open_image(photos["coffee"])
    with caplog.at_level(logging.WARNING, logger="lookalike.quality.nsfw"):
        assert missing.score(image) is None
        assert missing.class_scores(image) is None
        assert missing.score(image) is None
    warnings = [r for r in caplog.records if "NSFW scores are off" in r.getMessage()]
    assert len(warnings) == 1
    assert missing.unavailable_reason is not None and "nudenet" in missing.unavailable_reason


def test_concurrent_first_use_loads_once(photos: dict[str, bytes]) -> None:
    fresh = NsfwDetector()
    image = open_image(photos["chelsea"])
    results: list[float | None] = []
    threads = [
        threading.Thread(target=lambda: results.append(fresh.score(image))) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and len(set(results)) == 1 and results[0] is not None


# --- at ingest, in the payload, as a filter ---------------------------------------------------

NAMES = ("coffee", "rocket", "chelsea", "astronaut", "clock_motion")


def _ingest(
    rt: Lookalike, photos: dict[str, bytes], name: str = "moderated"
) -> tuple[str, dict[str, str]]:
    coll = create_collection(rt, "default", name)
    results = rt.ingest.add_many(
        coll,
        [(NewRecord(name=n, owner="a"), IngestFile(photos[n], n)) for n in NAMES],
        wait=True,
    )
    settle(rt)
    return coll.id, {r.filename or "": r.image_id or "" for r in results}


def test_ingest_stores_the_score_in_catalog_and_payload_and_it_filters(
    rt: Lookalike, photos: dict[str, bytes], detector: NsfwDetector
) -> None:
    coll_id, ids = _ingest(rt, photos)
    with rt.catalog.session() as s:
        rows = {i.id: i for i in s.scalars(select(Image)).all()}
    scores: dict[str, float] = {}
    for name, image_id in ids.items():
        stored = rows[image_id].nsfw_score
        assert stored is not None and 0.0 <= stored < 0.3, name
        (point,) = rt.vectors.retrieve(coll_id, [image_id])
        assert point.payload["nsfw"] == stored
        scores[name] = stored
    # No explicit image is needed to see the filter work: a bound between the two highest
    # scores must leave out exactly the highest-scoring image.
    ranked = sorted(scores, key=scores.__getitem__, reverse=True)
    top, second = ranked[0], ranked[1]
    assert scores[top] > scores[second]
    bound = (scores[top] + scores[second]) / 2
    query = jpeg(open_image(photos["astronaut"]).resize((256, 256)))

    def found(filters: SearchFilters | None) -> set[str]:
        hits = search_similar(rt, "default", coll_id, image_bytes=query, limit=50, filters=filters)
        return {h.name for h in hits}

    assert found(None) == set(NAMES)
    assert found(SearchFilters(max_nsfw=bound)) == set(NAMES) - {top}
    dsl = SearchFilters.model_validate({"must": [{"key": "nsfw", "range": {"gt": bound}}]})
    assert found(dsl) == {top}
    assert found(SearchFilters(max_nsfw=0.0)) == set()


def test_ingest_without_a_detector_keeps_the_image(
    tmp_path: Path, models_dir: Path, photos: dict[str, bytes]
) -> None:
    with Lookalike(make_settings(tmp_path / "off", models_dir, nsfw=False)) as rt:
        assert "nsfw" not in rt.enrichment.stage_names
        _, ids = _ingest(rt, photos, "unmoderated")
        with rt.catalog.session() as s:
            images = s.scalars(select(Image)).all()
        assert {i.status for i in images} == {"embedded"} and len(images) == len(ids)
        assert {i.nsfw_score for i in images} == {None}
        # Unknown is not known to be safe: a `max_nsfw` filter leaves such images out.
        hits = search_similar(
            rt,
            "default",
            "unmoderated",
            image_id=ids["coffee"],
            limit=50,
            filters=SearchFilters(max_nsfw=1.0),
        )
        assert hits == []

    with Lookalike(make_settings(tmp_path / "missing", models_dir)) as rt:
        stage = next(s for s in rt.enrichment.stages if isinstance(s, NsfwStage))
        stage.detector = NsfwDetector(tmp_path / "nowhere.onnx")
        _, ids = _ingest(rt, photos, "missing")
        with rt.catalog.session() as s:
            images = s.scalars(select(Image)).all()
        assert {i.status for i in images} == {"embedded"} and len(images) == len(ids)
        assert {i.nsfw_score for i in images} == {None}
        # Nothing to score with: the stage says so rather than "done".
        assert {rt.enrichment.queue.of_image(i)["nsfw"] for i in ids.values()} == {"skipped"}


def test_resumed_images_are_scored(
    tmp_path: Path, models_dir: Path, photos: dict[str, bytes]
) -> None:
    # First process: moderation off, stops after the prepare stage (rows pending, no score).
    first = Lookalike(make_settings(tmp_path / "data", models_dir, nsfw=False), start=False)
    coll = create_collection(first, "default", "resume")
    embedder = first.models.for_collection(coll)
    for name in ("coffee", "rocket"):
        result, item = first.ingest._prepare(
            coll, embedder, NewRecord(name=name, owner="a"), IngestFile(photos[name])
        )
        assert result.status == "added" and item is not None
        assert item.payload["nsfw"] is None
    first.vectors.close()
    first.catalog.close()

    with Lookalike(make_settings(tmp_path / "data", models_dir)) as second:

        def scored() -> dict[str, float | None]:
            with second.catalog.session() as s:
                return {
                    i.id: i.nsfw_score
                    for i in s.scalars(select(Image).where(Image.status == "embedded")).all()
                }

        assert wait_until(lambda: len(scored()) == 2)
        settle(second)
        for image_id, score in scored().items():
            assert score is not None and 0.0 <= score < 0.3
            (point,) = second.vectors.retrieve(coll.id, [image_id])
            assert point.payload["nsfw"] == score
