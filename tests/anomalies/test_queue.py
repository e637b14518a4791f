"""The anomaly review queue on real ingests: scores after each batch, the full recompute job,
review state, and the queue's filters."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import select, update

from lookalike.anomalies.queue import (
    RECOMPUTE_JOB,
    AnomalyItem,
    list_anomalies,
    request_recompute,
    review_anomaly,
)
from lookalike.api.schemas import AnomalyItemOut
from lookalike.auth.tokens import Principal
from lookalike.catalog import Collection, Image, Job, utcnow
from lookalike.composition import Lookalike
from lookalike.core.config import Settings
from lookalike.core.errors import ImageNotFound, InvalidInput
from lookalike.demo.samples import derived_set
from lookalike.ingest.pipeline import IngestFile, NewRecord
from lookalike.records.service import create_collection, delete_images
from support import make_settings, noise_png, png, settle

SORTS = ("dnn", "density", "ood")


@pytest.fixture
def quiet_rt(settings: Settings) -> Iterator[Lookalike]:
    """A runtime whose background jobs run only when the test calls `run_pending`."""
    with Lookalike(settings, start=False) as runtime:
        runtime.ingest.start()
        yield runtime


def ingest(rt: Lookalike, coll: Collection, files: dict[str, bytes]) -> dict[str, str]:
    """Ingest each file as its own record; returns name -> image id."""
    items = [(NewRecord(name=n, owner="alice"), IngestFile(d, n)) for n, d in files.items()]
    results = rt.ingest.add_many(coll, items, wait=True)
    assert [r.status for r in results] == ["added"] * len(files)
    settle(rt)
    return {n: r.image_id for n, r in zip(files, results, strict=True) if r.image_id}


def cats(photos: dict[str, bytes]) -> dict[str, bytes]:
    """Nine photos of one kind: the cat and eight edited copies of it."""
    return {
        d.name: d.data for d in derived_set({"chelsea": photos["chelsea"]}, include_originals=True)
    }


def queue(rt: Lookalike, coll: Collection, **kwargs: object) -> list[AnomalyItem]:
    """The queue by an outlier score (dnn unless `sort` says otherwise)."""
    kwargs.setdefault("sort", "dnn")
    items, total = list_anomalies(rt.catalog, coll, limit=200, **kwargs)  # type: ignore[arg-type]
    assert total == len(items)
    return items


def scores(rt: Lookalike, coll: Collection) -> dict[str, tuple[float | None, ...]]:
    with rt.catalog.session() as s:
        rows = s.execute(
            select(Image.id, Image.anomaly_dnn, Image.anomaly_density, Image.anomaly_ood).where(
                Image.collection_id == coll.id
            )
        ).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def test_the_odd_image_tops_the_queue_right_after_ingest(
    quiet_rt: Lookalike, photos: dict[str, bytes]
) -> None:
    rt = quiet_rt
    coll = create_collection(rt, "default", "cats")
    ids = ingest(rt, coll, cats(photos))
    ids |= ingest(rt, coll, {"noise.png": noise_png()})
    for sort in SORTS:
        items = queue(rt, coll, sort=sort)
        assert len(items) == len(ids), sort  # every image scored, the first one too
        assert items[0].name == "noise.png", (sort, [(i.name, i.dnn) for i in items[:3]])
        ranked = [getattr(i, sort) for i in items]
        assert ranked == sorted(ranked, reverse=True)
    top = queue(rt, coll)[0]
    shown = AnomalyItemOut.model_validate(top)
    assert shown.preview_url == f"/api/images/{ids['noise.png']}/thumbnail"
    assert shown.scores.dnn == top.dnn
    assert top.record_id and not top.reviewed

    # Up to 2k + 1 images every search sees the whole collection: ingest left every score
    # exactly where a full recompute puts it.
    incremental = scores(rt, coll)
    assert rt.jobs.run_pending() == 0  # no recompute was queued behind the test's back
    job_id = request_recompute(rt.jobs, coll)
    assert rt.jobs.run_pending() == 1
    with rt.catalog.session() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.kind == RECOMPUTE_JOB and job.status == "done", job
        assert job.params["result"]["scored"] == len(ids)
        assert job.params["result"]["k"] == rt.settings.anomaly_k
    full = scores(rt, coll)
    assert set(full) == set(incremental)
    for image_id, values in full.items():
        assert values == pytest.approx(incremental[image_id], abs=1e-5)


def test_a_new_near_copy_lowers_its_neighbours_dnn(
    tmp_path: Path, models_dir: Path, photos: dict[str, bytes]
) -> None:
    # k = 2: 2k + 1 = 5 images, so the twelve photos take the incremental path proper.
    settings = make_settings(tmp_path / "data", models_dir, anomaly_k=2)
    names = [
        "astronaut", "coffee", "chelsea", "rocket", "camera", "coins",
        "moon", "page", "text", "brick", "grass", "hubble_deep_field",
    ]  # fmt: skip
    with Lookalike(settings, start=False) as rt:
        rt.ingest.start()
        coll = create_collection(rt, "default", "mixed")
        ids = ingest(rt, coll, {n: photos[n] for n in names})
        before = scores(rt, coll)
        assert all(v[0] is not None and v[2] is not None for v in before.values())

        copy = next(d for d in derived_set({"chelsea": photos["chelsea"]}) if "jpeg" in d.name)
        ids |= ingest(rt, coll, {"chelsea copy": copy.data})
        after = scores(rt, coll)
        cat, twin = ids["chelsea"], ids["chelsea copy"]
        # The copy is the cat's nearest image now: both have that distance as their dnn ...
        assert after[twin][0] is not None and after[twin][0] < 0.05
        assert after[cat][0] == pytest.approx(after[twin][0], abs=1e-5)
        assert after[cat][0] < before[cat][0]  # type: ignore[operator]
        # ... while the cat's density and ood wait for the recompute (documented drift).
        assert after[cat][1:] == before[cat][1:]
        unchanged = [i for i in before if i != cat]
        assert all(after[i][1:] == before[i][1:] for i in unchanged)

        rt.anomalies.recompute(coll.id)
        full = scores(rt, coll)
        assert full[cat][0] == pytest.approx(after[cat][0], abs=1e-5)
        assert full[cat][1] != pytest.approx(before[cat][1], abs=1e-3)
        # The newcomer's own scores were right from the start: dnn and ood exactly, density
        # up to its neighbours' estimated kdist (an upper bound, so never above the truth).
        assert full[twin][0] == pytest.approx(after[twin][0], abs=1e-5)
        assert full[twin][2] == pytest.approx(after[twin][2], abs=1e-5)
        assert after[twin][1] <= full[twin][1] + 1e-6  # type: ignore[operator]


def test_recompute_forgets_scores_of_images_that_left(
    quiet_rt: Lookalike, photos: dict[str, bytes]
) -> None:
    rt = quiet_rt
    coll = create_collection(rt, "default", "few")
    ids = ingest(rt, coll, {n: photos[n] for n in ("chelsea", "coffee", "rocket")})
    with rt.catalog.session() as s:
        s.execute(
            update(Image)
            .where(Image.collection_id == coll.id)
            .values(anomaly_at=utcnow() - timedelta(hours=1))
        )
    rt.vectors.delete(coll.id, [ids["rocket"]])  # vector gone, catalog row kept
    result = rt.anomalies.recompute(coll.id)
    assert (result["scored"], result["cleared"]) == (2, 1)
    assert scores(rt, coll)[ids["rocket"]] == (None, None, None)
    assert {i.name for i in queue(rt, coll)} == {"chelsea", "coffee"}

    # One image left has no neighbour: nothing to score it against.
    delete_images(rt, coll.id, [ids["coffee"], ids["rocket"]])
    with rt.catalog.session() as s:
        s.execute(update(Image).values(anomaly_at=utcnow() - timedelta(hours=1)))
    assert rt.anomalies.recompute(coll.id)["scored"] == 0
    assert queue(rt, coll) == []


def test_review_state_and_filters(quiet_rt: Lookalike, photos: dict[str, bytes]) -> None:
    rt = quiet_rt
    coll = create_collection(rt, "acme", "qa")
    ids = ingest(rt, coll, cats(photos))
    ids |= ingest(rt, coll, {"noise.png": noise_png()})
    alice = Principal(user="alice", tenant="acme")
    noise = ids["noise.png"]

    item = review_anomaly(rt.catalog, alice, noise, reviewed=True, note="scanner glitch")
    assert item.reviewed and item.reviewed_by == "alice" and item.review_note == "scanner glitch"
    assert item.reviewed_at is not None and item.name == "noise.png"
    assert noise not in {i.image_id for i in queue(rt, coll)}  # default: not reviewed yet
    assert [i.image_id for i in queue(rt, coll, reviewed="true")] == [noise]
    assert len(queue(rt, coll, reviewed="all")) == len(ids)

    again = review_anomaly(rt.catalog, alice, noise, reviewed=False)
    assert (again.reviewed, again.reviewed_at, again.reviewed_by, again.review_note) == (
        False,
        None,
        None,
        None,
    )
    assert queue(rt, coll)[0].image_id == noise

    # min_score keeps the images at or above it; paging is stable and counts them all.
    threshold = queue(rt, coll, sort="ood")[2].ood
    assert threshold is not None
    above = queue(rt, coll, sort="ood", min_score=threshold)
    assert len(above) == 3 and all((i.ood or 0) >= threshold for i in above)
    page, total = list_anomalies(rt.catalog, coll, sort="density", limit=4, offset=4)
    everything = queue(rt, coll, sort="density")
    assert total == len(everything) and page == everything[4:8]

    # Another tenant's image is not found, and stays as it was.
    with pytest.raises(ImageNotFound):
        review_anomaly(rt.catalog, Principal("mallory", "globex"), noise, reviewed=True)
    assert queue(rt, coll)[0].image_id == noise and not queue(rt, coll)[0].reviewed


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sort": "quality"},
        {"reviewed": "maybe"},
        {"limit": 0},
        {"limit": 201},
        {"offset": -1},
        {"min_score": float("nan")},
        {"min_score": float("inf")},
    ],
)
def test_bad_queue_parameters(quiet_rt: Lookalike, kwargs: dict[str, object]) -> None:
    coll = create_collection(quiet_rt, "default", "empty")
    with pytest.raises(InvalidInput):
        list_anomalies(quiet_rt.catalog, coll, **kwargs)  # type: ignore[arg-type]


def test_review_note_is_bounded(quiet_rt: Lookalike, photos: dict[str, bytes]) -> None:
    coll = create_collection(quiet_rt, "default", "notes")
    image = ingest(quiet_rt, coll, {"cat": photos["chelsea"]})["cat"]
    with pytest.raises(InvalidInput):
        review_anomaly(
            quiet_rt.catalog, Principal("a", "default"), image, reviewed=True, note="x" * 4001
        )


def test_scheduled_recompute_is_registered(settings: Settings) -> None:
    with Lookalike(
        settings.model_copy(update={"anomaly_recompute_interval_s": 60}), start=False
    ) as rt:
        kinds = [p.kind for p in rt.jobs._periodic]
        assert RECOMPUTE_JOB in kinds
    with Lookalike(
        settings.model_copy(update={"anomaly_recompute_interval_s": 0}), start=False
    ) as rt:
        assert RECOMPUTE_JOB not in [p.kind for p in rt.jobs._periodic]


def test_junk_tops_the_review_queue_and_says_why(rt: Lookalike, photos: dict[str, bytes]) -> None:
    """The sample photos plus a noise image, a blank one, an 8x8 one and a crushed JPEG: the
    four take the top four places, flagged with their reasons; no photo is flagged."""
    blank = PILImage.new("RGB", (640, 480), (200, 200, 200))
    tiny = PILImage.new("RGB", (8, 8), (255, 0, 0))
    crushed = io.BytesIO()
    astronaut = PILImage.open(io.BytesIO(photos["astronaut"])).convert("RGB")
    astronaut.resize((400, 400)).save(crushed, "JPEG", quality=6)
    junk = {
        "noise.png": noise_png(),
        "blank.png": png(blank),
        "tiny.png": png(tiny),
        "crushed.jpg": crushed.getvalue(),
    }
    coll = create_collection(rt, "default", "junk")
    ids = ingest(rt, coll, {**photos, **junk})
    flagged, total = list_anomalies(rt.catalog, coll, needs_review=True)
    assert total == len(flagged) == len(junk)
    assert {i.image_id for i in flagged} == {ids[name] for name in junk}
    why = {i.name: " ".join(i.reasons) for i in flagged}
    assert "noisy" in why["noise.png"]
    assert "blank or flat" in why["blank.png"]
    assert "tiny" in why["tiny.png"]
    assert "heavily compressed" in why["crushed.jpg"]
    everything, _ = list_anomalies(rt.catalog, coll, limit=200)
    assert [i.needs_review for i in everything] == [True] * 4 + [False] * len(photos)
    rest, rest_total = list_anomalies(rt.catalog, coll, needs_review=False, limit=200)
    assert rest_total == len(photos) and not any(i.reasons for i in rest)
