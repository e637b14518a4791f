"""Keyword and hybrid text search on real components: the catalog's full-text index, the vector
engine's filters, an image-only model (keyword alone, and it says so) and a CLIP-like one (both
rankings fused by reciprocal rank, checked against a hand computation)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from typer.testing import CliRunner

from lookalike.api.app import create_app
from lookalike.catalog import Collection, ImageText, Record
from lookalike.cli import app
from lookalike.composition import Lookalike
from lookalike.core.errors import InvalidInput, TextSearchUnavailable
from lookalike.ingest.pipeline import IngestFile, NewRecord
from lookalike.records.service import create_collection
from lookalike.search import SearchFilters, search_similar
from lookalike.search.cache import search_cache_of
from lookalike.search.service import reciprocal_rank_fusion, search_page, search_with_mode
from support import make_settings, offline_cli_env, settle

# name, description, tags, owner
SHOP = {
    "chelsea": ("Chelsea the cat", "a tabby cat on a sofa", ("pet", "animal"), "alice"),
    "coffee": ("Coffee cup", "espresso in a white cup", ("drink",), "bob"),
    "rocket": ("Rocket launch", "a rocket on the launch pad", ("space",), "bob"),
    "astronaut": ("Astronaut portrait", "an astronaut in a space suit", ("space",), "alice"),
    "camera": ("Camera", "a man with a camera", ("person",), "bob"),
    "moon": ("Moon", "craters of the moon", ("space", "sky"), "bob"),
}


def _stock(
    rt: Lookalike, photos: dict[str, bytes], name: str = "shop"
) -> tuple[Collection, dict[str, str]]:
    coll = create_collection(rt, "default", name)
    items = [
        (
            NewRecord(name=title, description=description, tags=tags, owner=owner),
            IngestFile(photos[key], key),
        )
        for key, (title, description, tags, owner) in SHOP.items()
    ]
    results = rt.ingest.add_many(coll, items, wait=True)
    settle(rt)
    return coll, {r.filename or "": r.image_id or "" for r in results}


def _page_text(rt: Lookalike, coll: Collection, image_id: str, text: str) -> None:
    with rt.catalog.session() as s:
        s.add(ImageText(image_id=image_id, source="ocr", collection_id=coll.id, text=text))


@pytest.fixture
def shop(rt: Lookalike, photos: dict[str, bytes]) -> tuple[Lookalike, Collection, dict[str, str]]:
    coll, ids = _stock(rt, photos)
    return rt, coll, ids


def test_an_image_only_model_answers_a_text_by_keyword_and_says_so(
    shop: tuple[Lookalike, Collection, dict[str, str]],
) -> None:
    rt, coll, ids = shop
    found = search_with_mode(rt, "default", coll, text="rocket in space", mode="hybrid")
    assert found.mode == "keyword"
    assert len(found.notes) == 1 and "embeds images only" in found.notes[0]
    assert found.notes[0].count("efficientnet-lite0") == 1
    names = [h.name for h in found.hits]
    assert names[0] == "Rocket launch"  # both words; then the other space things
    assert set(names) == {"Rocket launch", "Astronaut portrait", "Moon"}
    assert all(h.matched == ("keyword",) for h in found.hits)
    scores = [h.score for h in found.hits]
    assert scores == sorted(scores, reverse=True)

    keyword = search_with_mode(rt, "default", coll, text="rocket in space", mode="keyword")
    assert keyword.mode == "keyword" and keyword.notes == []
    assert [h.image_id for h in keyword.hits] == [h.image_id for h in found.hits]
    # Vector mode, and the library's default, still refuse: that is what was asked for.
    with pytest.raises(TextSearchUnavailable):
        search_with_mode(rt, "default", coll, text="rocket", mode="vector")
    with pytest.raises(TextSearchUnavailable):
        search_similar(rt, "default", coll, text="rocket")
    page = search_page(rt, "default", coll, text="cat", mode="hybrid", limit=5)
    assert [h.image_id for h in page.hits] == [ids["chelsea"]]
    assert page.mode == "keyword" and page.cutoff is None and not page.weaker and not page.more


def test_filters_apply_to_keyword_hits(
    shop: tuple[Lookalike, Collection, dict[str, str]],
) -> None:
    rt, coll, ids = shop

    def found(filters: SearchFilters) -> set[str]:
        hits = search_similar(rt, "default", coll, text="space", mode="keyword", filters=filters)
        return {h.image_id for h in hits}

    assert found(SearchFilters()) == {ids["rocket"], ids["astronaut"], ids["moon"]}
    assert found(SearchFilters(owner="alice")) == {ids["astronaut"]}
    assert found(SearchFilters(tags_any=["sky"])) == {ids["moon"]}
    assert found(SearchFilters(tags_none=["sky"], owner="bob")) == {ids["rocket"]}
    assert found(SearchFilters(record_ids=["01JDZZZZZZZZZZZZZZZZZZZZZZ"])) == set()
    assert found(
        SearchFilters.model_validate({"must_not": [{"key": "owner", "match": "bob"}]})
    ) == {ids["astronaut"]}


def test_page_text_and_paging(shop: tuple[Lookalike, Collection, dict[str, str]]) -> None:
    rt, coll, ids = shop
    _page_text(rt, coll, ids["coffee"], "Menu: espresso 2.50, cappuccino 3.00")
    hits = search_similar(rt, "default", coll, text="cappuccino", mode="keyword")
    assert [h.image_id for h in hits] == [ids["coffee"]] and hits[0].name == "Coffee cup"
    every = search_similar(rt, "default", coll, text="space moon rocket", mode="keyword", limit=10)
    pages = [
        search_similar(
            rt, "default", coll, text="space moon rocket", mode="keyword", limit=1, offset=n
        )
        for n in range(len(every) + 1)
    ]
    assert [p[0].image_id for p in pages[:-1]] == [h.image_id for h in every] and pages[-1] == []
    # A renamed record is found by its new name at once (no vector write is involved).
    with rt.catalog.session() as s:
        s.execute(update(Record).where(Record.name == "Camera").values(name="Old Leica"))
    assert [
        h.image_id for h in search_similar(rt, "default", coll, text="leica", mode="keyword")
    ] == [ids["camera"]]


def test_mode_is_checked(shop: tuple[Lookalike, Collection, dict[str, str]]) -> None:
    rt, coll, ids = shop
    with pytest.raises(InvalidInput, match="text_query only"):
        search_similar(rt, "default", coll, image_id=ids["moon"], mode="keyword")
    with pytest.raises(InvalidInput, match="mode must be one of"):
        search_similar(rt, "default", coll, text="moon", mode="fuzzy")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="empty"):
        search_similar(rt, "default", coll, text="  ", mode="keyword")
    with pytest.raises(InvalidInput, match="use_crops"):
        search_similar(rt, "default", coll, text="moon", mode="keyword", use_crops=True)
    # Operators, quotes and SQL are words or nothing, never an error.
    for text in ('"', "moon*", "NEAR(moon", "'; DROP TABLE record; --", "-moon", "ü" * 900):
        search_similar(rt, "default", coll, text=text, mode="keyword")
    assert search_similar(rt, "default", coll, text="-moon space", mode="keyword")[0].name != "Moon"
    # Another tenant's collection of the same name holds the same words: never its hits.
    assert {
        h.image_id for h in search_similar(rt, "default", coll, text="cat", mode="keyword")
    } == {ids["chelsea"]}


def test_reciprocal_rank_fusion_by_hand() -> None:
    # a: 1/(1+1) + 2/(1+2) = 1.1667; b: 1/(1+2) = 0.3333; c: 1/(1+3) + 2/(1+1) = 1.25
    fused = reciprocal_rank_fusion([(1.0, ["a", "b", "c"]), (2.0, ["c", "a"])], k=1)
    assert [i for i, _ in fused] == ["c", "a", "b"]
    assert [round(s, 4) for _, s in fused] == [1.25, 1.1667, 0.3333]
    assert reciprocal_rank_fusion([(1.0, ["x"]), (1.0, ["y"])], k=60) == [
        ("x", 1 / 61),
        ("y", 1 / 61),
    ]  # ties by id


def test_hybrid_fuses_both_rankings_as_computed_by_hand(
    tmp_path: Path, models_dir: Path, tiny_clip: str, photos: dict[str, bytes]
) -> None:
    settings = make_settings(
        tmp_path / "clip",
        models_dir,
        model=tiny_clip,
        hybrid_rrf_k=5,
        hybrid_keyword_weight=2.0,
        hybrid_vector_weight=0.5,
    )
    with Lookalike(settings) as rt:
        coll, ids = _stock(rt, photos)
        text = "space rocket"
        vector = [h.image_id for h in search_similar(rt, "default", coll, text=text, limit=50)]
        keyword = [
            h.image_id
            for h in search_similar(rt, "default", coll, text=text, mode="keyword", limit=50)
        ]
        assert len(vector) == len(SHOP) and keyword[0] == ids["rocket"] and len(keyword) == 3
        expected: dict[str, float] = {}
        for rank, image_id in enumerate(keyword, 1):
            expected[image_id] = 2.0 / (5 + rank)
        for rank, image_id in enumerate(vector, 1):
            expected[image_id] = expected.get(image_id, 0.0) + 0.5 / (5 + rank)
        order = sorted(expected, key=lambda i: (-expected[i], i))

        found = search_with_mode(rt, "default", coll, text=text, mode="hybrid", limit=50)
        assert found.mode == "hybrid" and found.notes == []
        assert [h.image_id for h in found.hits] == order
        assert [h.score for h in found.hits] == pytest.approx([expected[i] for i in order])
        for h in found.hits:
            assert h.matched == (("keyword", "vector") if h.image_id in keyword else ("vector",))
        # A page of the fused ranking is that slice of it.
        middle = search_with_mode(rt, "default", coll, text=text, mode="hybrid", limit=2, offset=2)
        assert [h.image_id for h in middle.hits] == order[2:4]
        # The default of a person's search (search_page) is the caller's to pick; hybrid pages.
        page = search_page(rt, "default", coll, text=text, mode="hybrid", limit=3)
        assert [h.image_id for h in page.hits] == order[:3] and page.more


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
    except OSError:
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    import redis

    prefix = f"lookalike-test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def test_the_cache_keeps_only_the_vector_side(
    tmp_path: Path, models_dir: Path, tiny_clip: str, photos: dict[str, bytes], redis_prefix: str
) -> None:
    settings = make_settings(
        tmp_path / "cached",
        models_dir,
        model=tiny_clip,
        cache_url="redis://127.0.0.1:6379/0",
        redis_key_prefix=redis_prefix,
    )
    with Lookalike(settings) as rt:
        coll, ids = _stock(rt, photos)
        cache = search_cache_of(rt.vectors)
        assert cache is not None

        def hits() -> int:
            return cache.stats().requests["hit"]

        vector = search_similar(rt, "default", coll, text="tabby", limit=3)
        first = search_with_mode(rt, "default", coll, text="tabby", mode="hybrid", limit=3)
        assert first.hits[0].image_id == ids["chelsea"]
        before = hits()
        again = search_with_mode(rt, "default", coll, text="tabby", mode="hybrid", limit=3)
        assert hits() == before + 1  # the vector side came from the cache...
        assert [h.image_id for h in again.hits] == [h.image_id for h in first.hits]
        # ...the keyword side did not: new page text counts at once, with no vector write.
        _page_text(rt, coll, ids["moon"], "a tabby cat drawn on the moon")
        third = search_with_mode(rt, "default", coll, text="tabby", mode="hybrid", limit=3)
        assert hits() == before + 2
        assert "keyword" in next(h for h in third.hits if h.image_id == ids["moon"]).matched
        # A vector-mode search of the same text is not answered by a hybrid entry.
        assert search_similar(rt, "default", coll, text="tabby", limit=3) == vector


def test_the_api_and_the_command_line(
    tmp_path: Path,
    models_dir: Path,
    photos: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = make_settings(tmp_path / "data", models_dir)
    with Lookalike(settings) as rt, TestClient(create_app(runtime=rt)) as client:
        coll, ids = _stock(rt, photos)

        def post(body: dict[str, object]) -> tuple[int, dict[str, object]]:
            r = client.post("/api/search/similar", json={"collection": "shop", **body})
            return r.status_code, dict(r.json())

        status, answer = post({"text_query": "launch"})  # hybrid by default
        assert status == 200, answer
        assert answer["mode"] == "keyword" and "embeds images only" in str(answer["notes"])
        hits = answer["hits"]
        assert isinstance(hits, list) and hits[0]["image_id"] == ids["rocket"]
        assert hits[0]["matched"] == ["keyword"]
        status, answer = post(
            {"text_query": "launch", "mode": "keyword", "filter": {"owner": "alice"}}
        )
        assert status == 200 and answer["hits"] == [] and answer["notes"] == []
        status, answer = post({"text_query": "launch", "mode": "vector"})
        assert status == 422 and answer["error"]["code"] == "text_search_unavailable"  # type: ignore[index]
        status, answer = post({"image_id": ids["moon"], "mode": "hybrid"})
        assert status == 422 and "mode applies to text_query only" in str(answer)
        status, answer = post({"text_query": " ", "mode": "keyword"})
        assert status == 422 and answer["error"]["code"] == "invalid_input"  # type: ignore[index]
        status, answer = post({"text_query": "x", "mode": "semantic"})
        assert status == 422
        status, answer = post({"image_id": ids["moon"], "include_weaker": True})
        assert status == 200 and answer["mode"] == "vector"
        assert answer["hits"][0]["matched"] == ["vector"]  # type: ignore[index]
        coll_id = coll.id

    offline_cli_env(monkeypatch, tmp_path / "data", models_dir)
    runner = CliRunner()
    base = ["search", "--collection", coll_id]
    r = runner.invoke(app, [*base, "--text", "space", "--json"])
    assert r.exit_code == 0, r.output
    answer = json.loads(r.stdout)
    assert answer["mode"] == "keyword" and len(answer["hits"]) == 3
    r = runner.invoke(app, [*base, "--text", "space", "--mode", "keyword"])
    assert r.exit_code == 0 and "Moon" in r.output and "keyword" in r.output
    r = runner.invoke(app, [*base, "--text", "space"])
    assert r.exit_code == 0 and "images only" in " ".join(r.output.split())
    assert runner.invoke(app, [*base, "--text", "space", "--mode", "vector"]).exit_code == 2
    assert runner.invoke(app, [*base, "--text", "space", "--mode", "fuzzy"]).exit_code == 2
    assert (
        runner.invoke(app, [*base, "--image-id", ids["moon"], "--mode", "keyword"]).exit_code == 2
    )
