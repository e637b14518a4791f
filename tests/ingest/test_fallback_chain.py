"""A collection with a fallback chain (`doubao>clip>offline`) through the real ingest pipeline,
vector engine and search, with Doubao played by a local stand-in that is switched off and on:
images ingested during the outage land in the fallback's own named vector and are searchable,
they are queued durably, and once Doubao answers again the re-embed worker moves them to
Doubao's vector, where searches then go. Every image's vector membership is checked against
what the catalog says of it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import select

from lookalike.catalog import Collection, Image
from lookalike.catalog.models import ReembedTask
from lookalike.composition import Lookalike
from lookalike.core.config import Settings
from lookalike.core.errors import InvalidInput
from lookalike.embedding.fallback import ChainModel, chain_of
from lookalike.ingest.pipeline import IngestFile, NewRecord
from lookalike.records.service import VectorOptions, create_collection
from lookalike.search.fallback import searched_as, vector_counts
from lookalike.search.service import search_similar
from provider_standin import KEY, ProviderStandIn, provider_standin
from support import make_settings, open_image, wait_until

TENANT = "acme"
BEFORE = ["astronaut", "coffee"]
DURING = ["chelsea", "rocket", "camera", "coins"]
LATE = ["grace_hopper"]


@pytest.fixture
def standin() -> Iterator[ProviderStandIn]:
    with provider_standin() as server:
        yield server


def chain_settings(tmp_path: Path, models_dir: Path, url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "model": "tiny-clip",
        "doubao_url": url,
        "doubao_api_key": KEY,
        "doubao_dimensions": 1024,
        "provider_retries": 1,
        "provider_retry_backoff_s": 0.01,
        "provider_timeout_s": 5.0,
        "provider_rate_limit_per_s": 0,
        "provider_image_size": 128,
        # Skip Doubao for ingest for the whole outage once it has failed; the re-embed worker
        # still asks it every time its tasks are due.
        "provider_down_s": 600.0,
        "reembed_poll_s": 0.1,
        "reembed_backoff_max_s": 0.4,
        "enrichment": True,
        "nsfw": False,
    }
    values.update(overrides)
    return make_settings(tmp_path / "data", models_dir, **values)


def ingest(
    rt: Lookalike, collection: Collection, names: Sequence[str], photos: dict[str, bytes]
) -> dict[str, str]:
    items = [
        (NewRecord(name=n, owner="alice"), IngestFile(photos[n], filename=f"{n}.jpg"))
        for n in names
    ]
    results = rt.ingest.add_many(collection, items, wait=True)
    assert [r.status for r in results] == ["added"] * len(names), results
    return {n: str(r.image_id) for n, r in zip(names, results, strict=True)}


def membership(rt: Lookalike, collection: Collection, ids: Sequence[str]) -> dict[str, set[str]]:
    """The named vectors each image's point holds, as the vector engine has them."""
    points = rt.vectors.retrieve(collection.id, list(ids), with_vectors=True)
    assert len(points) == len(ids)
    return {p.id: set(p.vectors) for p in points}


def catalog_models(rt: Lookalike, ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
    with rt.catalog.session() as session:
        rows = session.execute(
            select(Image.id, Image.status, Image.model_id).where(Image.id.in_(list(ids)))
        ).all()
    return {row.id: (row.status, row.model_id) for row in rows}


def check_truth(
    rt: Lookalike, collection: Collection, ids: Sequence[str], member: ChainModel
) -> None:
    """Each image is embedded, the catalog names `member` as its model, and its point holds
    `member`'s vector and no other model's."""
    assert membership(rt, collection, ids) == {i: {member.vector_name} for i in ids}
    assert catalog_models(rt, ids) == {i: ("embedded", member.model_id) for i in ids}


def top_hit(rt: Lookalike, collection: Collection, data: bytes) -> tuple[str, float, list[str]]:
    hits = search_similar(rt, TENANT, collection, image_bytes=data, limit=10)
    return hits[0].image_id, hits[0].score, [h.image_id for h in hits]


def test_an_outage_falls_back_and_the_queue_moves_images_back(
    tmp_path: Path,
    models_dir: Path,
    tiny_clip: str,
    standin: ProviderStandIn,
    photos: dict[str, bytes],
) -> None:
    settings = chain_settings(tmp_path, models_dir, standin.url)
    with Lookalike(settings) as rt:
        collection = create_collection(rt, TENANT, "shop", model="doubao>clip>offline")
        chain = chain_of(collection)
        assert [m.model for m in chain] == ["doubao", tiny_clip, "efficientnet-lite0"]
        assert (
            chain[0].model_id == collection.model_id == "doubao/doubao-embedding-vision-250615@1024"
        )
        # One named vector per model of the chain, each of its own size.
        specs = {s.name: s.dim for s in rt.vectors.vector_specs(collection.id)}
        assert specs == {m.vector_name: m.dim for m in chain}
        doubao, clip = chain[0], chain[1]

        # Doubao answers: images go to its vector.
        before = ingest(rt, collection, BEFORE, photos)
        check_truth(rt, collection, list(before.values()), doubao)
        assert rt.reembed.pending(collection.id) == 0

        # Doubao is down: the same pipeline embeds with the next model of the chain, into
        # that model's own vector, and queues the images for Doubao. (The re-embed worker is
        # held back meanwhile, so that the requests counted below are the pipeline's.)
        rt.reembed.stop()
        standin.mode = "500"
        during = ingest(rt, collection, DURING, photos)
        check_truth(rt, collection, list(during.values()), clip)
        check_truth(rt, collection, list(before.values()), doubao)  # untouched
        with rt.catalog.session() as session:
            queued = {
                t.image_id: (t.from_model_id, t.to_model_id)
                for t in session.scalars(select(ReembedTask))
            }
        assert queued == {i: (clip.model_id, doubao.model_id) for i in during.values()}
        # Each image was offered to Doubao once (its tries), then to the fallback; and once
        # Doubao has failed, new uploads skip it for the rest of the outage.
        failed_requests = sum(1 for r in standin.requests() if r.status == 500)
        assert 0 < failed_requests <= len(DURING) * (settings.provider_retries + 1)
        during |= ingest(rt, collection, LATE, photos)
        assert sum(1 for r in standin.requests() if r.status == 500) == failed_requests
        check_truth(rt, collection, list(during.values()), clip)

        # Searches go to the most complete vector, now the fallback's (5 images to 2), and
        # find the images embedded during the outage.
        assert vector_counts(rt.catalog, collection) == {doubao.model_id: 2, clip.model_id: 5}
        assert searched_as(rt.catalog, collection).vector_name == clip.vector_name
        best, score, found = top_hit(rt, collection, photos["chelsea"])
        assert best == during["chelsea"] and score > 0.99
        assert set(found) == set(during.values())
        # A query by a stored image searches the vector that image is in.
        by_id = search_similar(rt, TENANT, collection, image_id=before["coffee"], limit=5)
        assert [h.image_id for h in by_id] == [before["astronaut"]]

        # While Doubao stays down, the worker keeps the tasks and backs off.
        rt.reembed.start()
        assert wait_until(lambda: _min_attempts(rt) >= 2, timeout=30)
        assert rt.reembed.pending(collection.id) == len(during)
        check_truth(rt, collection, list(during.values()), clip)

        # Doubao is back: the worker moves every queued image to Doubao's vector.
        standin.mode = "ok"
        assert wait_until(lambda: rt.reembed.pending(collection.id) == 0, timeout=60)
        check_truth(rt, collection, [*before.values(), *during.values()], doubao)
        # The vectors are Doubao's answers for those images, not copies of anything else.
        stored = rt.vectors.retrieve(collection.id, [during["rocket"]], with_vectors=True)
        direct = rt.models.get("doubao").embed_images([open_image(photos["rocket"])])[0]
        assert float(stored[0].vectors[doubao.vector_name] @ direct) > 0.99

        # Searches use Doubao's vector again, over every image.
        assert searched_as(rt.catalog, collection).vector_name == doubao.vector_name
        best, score, found = top_hit(rt, collection, photos["chelsea"])
        assert best == during["chelsea"] and score > 0.99
        assert set(found) == {*before.values(), *during.values()}
        # The worker's success told ingest Doubao is back: new images go straight to it.
        after = ingest(rt, collection, ["moon"], photos)
        check_truth(rt, collection, list(after.values()), doubao)
        assert rt.reembed.pending(collection.id) == 0


def _min_attempts(rt: Lookalike) -> int:
    with rt.catalog.session() as session:
        attempts = session.scalars(select(ReembedTask.attempts)).all()
    return min(attempts, default=0)


def test_without_a_chain_nothing_falls_back(
    tmp_path: Path,
    models_dir: Path,
    tiny_clip: str,
    standin: ProviderStandIn,
    photos: dict[str, bytes],
) -> None:
    settings = chain_settings(tmp_path, models_dir, standin.url)
    with Lookalike(settings) as rt:
        collection = create_collection(rt, TENANT, "plain", model="doubao")
        assert "chain" not in collection.vector_settings
        assert [s.name for s in rt.vectors.vector_specs(collection.id)] == [collection.vector_name]
        standin.mode = "500"
        results = rt.ingest.add_many(
            collection,
            [(NewRecord(name="coffee", owner="alice"), IngestFile(photos["coffee"], "c.jpg"))],
            wait=True,
        )
        (image_id,) = [r.image_id for r in results]
        assert image_id is not None
        status, model_id = catalog_models(rt, [image_id])[image_id]
        assert status == "failed" and model_id is None
        assert rt.reembed.pending() == 0
        assert rt.vectors.retrieve(collection.id, [image_id]) == []


def test_a_chain_is_checked_when_the_collection_is_made(
    tmp_path: Path, models_dir: Path, tiny_clip: str, standin: ProviderStandIn
) -> None:
    settings = chain_settings(tmp_path, models_dir, standin.url)
    with Lookalike(settings) as rt:
        with pytest.raises(InvalidInput, match="each model once"):
            create_collection(rt, TENANT, "a", model="doubao>doubao")
        with pytest.raises(InvalidInput, match="use_crops"):
            create_collection(
                rt, TENANT, "b", model="doubao>clip", options=VectorOptions(use_crops=True)
            )
        # The same chain given as `fallback` names.
        made = create_collection(
            rt, TENANT, "c", model="doubao", options=VectorOptions(fallback=("offline",))
        )
        assert [m.model for m in chain_of(made)] == ["doubao", "efficientnet-lite0"]
        assert len(rt.vectors.vector_specs(made.id)) == 2


def test_the_queue_outlives_a_restart(
    tmp_path: Path,
    models_dir: Path,
    tiny_clip: str,
    standin: ProviderStandIn,
    photos: dict[str, bytes],
) -> None:
    # The worker does not run in the first process: the tasks are only in the catalog.
    settings = chain_settings(tmp_path, models_dir, standin.url, reembed_poll_s=3600.0)
    standin.mode = "500"
    with Lookalike(settings) as rt:
        collection = create_collection(rt, TENANT, "shop", model="doubao>clip")
        doubao, clip = chain_of(collection)
        ids = list(ingest(rt, collection, ["chelsea", "coffee"], photos).values())
        check_truth(rt, collection, ids, clip)
        assert rt.reembed.pending() == 2
    standin.mode = "ok"
    with Lookalike(settings.model_copy(update={"reembed_poll_s": 0.1})) as rt:
        assert wait_until(lambda: rt.reembed.pending() == 0, timeout=60)
        check_truth(rt, collection, ids, doubao)
