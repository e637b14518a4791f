"""A collection of a late-interaction (ColPali-style) model, end to end through the real pipeline
and Qdrant Edge: patch multivectors stored beside the pooled vector, search by image, image id and
text ranked by MaxSim (the mean of each query row's best patch similarity), delete, and the
one-vector features (duplicates, anomalies) on the pooled vector."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from sqlalchemy import select

from lookalike.catalog import Collection, Image, ImageStage
from lookalike.composition import Lookalike
from lookalike.core.errors import InvalidInput
from lookalike.dedup.sweep import run_sweep
from lookalike.embedding.late_interaction import patches_vector_name
from lookalike.embedding.testing import build_tiny_late_interaction_model
from lookalike.ingest.pipeline import IngestFile, NewRecord
from lookalike.records.service import VectorOptions, create_collection, delete_images
from lookalike.search.service import search_similar, search_with_mode
from support import jpeg, make_settings, open_image, settle

MODEL = "tiny-late-interaction"
DIM = 32
PATCHES = 16  # 32-pixel input, 8-pixel patches


@pytest.fixture(scope="module")
def li_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model cache of its own, holding only the tiny late-interaction model."""
    models = tmp_path_factory.mktemp("li-models")
    build_tiny_late_interaction_model(models / MODEL, dim=DIM)
    return models


@pytest.fixture
def li_rt(tmp_path: Path, li_models: Path) -> Iterator[Lookalike]:
    with Lookalike(make_settings(tmp_path / "data", li_models, model=MODEL)) as runtime:
        yield runtime


@pytest.fixture
def loaded(
    li_rt: Lookalike, photos: dict[str, bytes]
) -> tuple[Lookalike, Collection, dict[str, str]]:
    coll = create_collection(li_rt, "default", "pages")
    results = li_rt.ingest.add_many(
        coll,
        [
            (NewRecord(name=name, owner="a"), IngestFile(data, name))
            for name, data in photos.items()
        ],
        wait=True,
    )
    assert {r.status for r in results} == {"added"}
    return li_rt, coll, {r.filename or "": r.image_id or "" for r in results}


def _stored(rt: Lookalike, coll: Collection) -> dict[str, NDArray[np.float32]]:
    """Each image's patch multivector as the engine holds it."""
    patches = patches_vector_name(coll.vector_name)
    return {p.id: p.vectors[patches] for p in rt.vectors.iter_points(coll.id, with_vectors=True)}


def _reference(query: NDArray[np.float32], stored: dict[str, NDArray[np.float32]]) -> list:
    """MaxSim in numpy: per query row the best patch similarity, averaged; best first."""
    scores = {
        image_id: float((query.astype(np.float64) @ rows.astype(np.float64).T).max(axis=1).mean())
        for image_id, rows in stored.items()
    }
    return sorted(scores.items(), key=lambda kv: -kv[1])


def test_images_are_stored_as_patch_multivectors_beside_a_pooled_vector(
    loaded: tuple[Lookalike, Collection, dict[str, str]],
) -> None:
    rt, coll, ids = loaded
    assert coll.vector_settings["late_interaction"] is True
    specs = {s.name: s for s in rt.vectors.vector_specs(coll.id)}
    patches = patches_vector_name(coll.vector_name)
    assert specs[patches].multivector and specs[patches].dim == DIM
    assert not specs[coll.vector_name].multivector
    points = rt.vectors.retrieve(coll.id, list(ids.values()), with_vectors=True)
    assert len(points) == len(ids)
    for point in points:
        rows = point.vectors[patches]
        assert rows.shape == (PATCHES, DIM)
        np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-4)
        mean = rows.mean(axis=0)
        np.testing.assert_allclose(
            point.vectors[coll.vector_name], mean / np.linalg.norm(mean), atol=1e-4
        )


def test_search_by_image_finds_the_image_itself_first(
    loaded: tuple[Lookalike, Collection, dict[str, str]], photos: dict[str, bytes]
) -> None:
    rt, coll, ids = loaded
    for name in ("chelsea", "coffee", "astronaut", "rocket"):
        hits = search_similar(rt, "default", coll.id, image_bytes=photos[name], limit=3)
        assert hits[0].image_id == ids[name]
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)  # each patch meets itself
        assert hits[1].score < hits[0].score - 1e-3


def test_search_by_image_id_ranks_by_maxsim_of_its_patches(
    loaded: tuple[Lookalike, Collection, dict[str, str]],
) -> None:
    rt, coll, ids = loaded
    stored = _stored(rt, coll)
    for name in ("chelsea", "camera"):
        query_id = ids[name]
        hits = search_similar(rt, "default", coll.id, image_id=query_id, limit=50)
        others = {k: v for k, v in stored.items() if k != query_id}
        expected = _reference(stored[query_id], others)
        assert query_id not in {h.image_id for h in hits}
        assert [h.image_id for h in hits] == [i for i, _ in expected]
        for hit, (_, score) in zip(hits, expected, strict=True):
            assert hit.score == pytest.approx(score, abs=1e-4)


def test_text_search_ranks_by_maxsim_of_its_tokens(
    loaded: tuple[Lookalike, Collection, dict[str, str]],
) -> None:
    rt, coll, ids = loaded
    stored = _stored(rt, coll)
    embedder = rt.models.for_collection(coll)
    for text in ("a photo of a cat", "rocket launch at night in the sky"):
        tokens = embedder.embed_text_tokens([text])[0]
        expected = _reference(tokens, stored)
        hits = search_similar(rt, "default", coll.id, text=text, limit=len(ids))
        assert [h.image_id for h in hits] == [i for i, _ in expected]
        for hit, (_, score) in zip(hits, expected, strict=True):
            assert hit.score == pytest.approx(score, abs=1e-4)
            assert -1.0 <= hit.score <= 1.0
        # A threshold is on the same mean scale as the scores.
        cut = (expected[2][1] + expected[3][1]) / 2
        above = search_similar(
            rt, "default", coll.id, text=text, limit=len(ids), score_threshold=cut
        )
        assert [h.image_id for h in above] == [i for i, _ in expected[:3]]
    hybrid = search_with_mode(rt, "default", coll.id, text="a photo of a cat", mode="hybrid")
    assert hybrid.mode == "hybrid" and hybrid.hits


def test_delete_takes_the_image_out_of_search(
    loaded: tuple[Lookalike, Collection, dict[str, str]], photos: dict[str, bytes]
) -> None:
    rt, coll, ids = loaded
    gone = ids["coffee"]
    delete_images(rt, coll.id, [gone])
    assert rt.vectors.retrieve(coll.id, [gone]) == []
    hits = search_similar(rt, "default", coll.id, image_bytes=photos["coffee"], limit=50)
    assert gone not in {h.image_id for h in hits}
    assert len(hits) == len(ids) - 1
    text_hits = search_similar(rt, "default", coll.id, text="coffee cup", limit=50)
    assert gone not in {h.image_id for h in text_hits}


def test_enrichment_and_duplicates_work_on_the_pooled_vector(
    loaded: tuple[Lookalike, Collection, dict[str, str]], photos: dict[str, bytes]
) -> None:
    rt, coll, ids = loaded
    # A smaller re-encoded copy of one photo: a duplicate, found by its pooled vector.
    copy = open_image(photos["chelsea"])
    copy = jpeg(copy.resize((copy.width * 3 // 4, copy.height * 3 // 4)), 80)
    (added,) = rt.ingest.add_many(
        coll, [(NewRecord(name="copy", owner="a"), IngestFile(copy, "copy"))], wait=True
    )
    settle(rt)
    with rt.catalog.session() as session:
        statuses = set(session.scalars(select(Image.status).where(Image.collection_id == coll.id)))
        failed = session.execute(
            select(ImageStage.stage, ImageStage.error).where(
                ImageStage.collection_id == coll.id, ImageStage.status == "failed"
            )
        ).all()
        duplicate_of = session.scalar(select(Image.duplicate_of).where(Image.id == added.image_id))
    assert statuses == {"embedded"}
    assert failed == []
    assert duplicate_of == ids["chelsea"]
    clusters = run_sweep(rt, coll).clusters
    assert any(
        {ids["chelsea"], added.image_id} <= {m.image_id for m in c.members} for c in clusters
    )


def test_crops_are_refused_for_a_late_interaction_model(li_rt: Lookalike) -> None:
    with pytest.raises(InvalidInput, match="late-interaction"):
        create_collection(li_rt, "default", "crops", options=VectorOptions(use_crops=True))
