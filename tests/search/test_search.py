"""Search by image, by image id and by text, with filters; errors for what cannot be answered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from PIL import ImageOps
from pydantic import ValidationError

from lookalike.api.schemas import HitOut
from lookalike.catalog import Collection
from lookalike.composition import Lookalike
from lookalike.core.errors import (
    CollectionNotFound,
    ImageNotFound,
    InvalidImage,
    InvalidInput,
    TextSearchUnavailable,
)
from lookalike.ingest.pipeline import IngestFile, NewRecord
from lookalike.records.service import create_collection
from lookalike.search import SearchFilters, search_similar
from support import jpeg, make_settings, open_image


@pytest.fixture
def loaded(rt: Lookalike, photos: dict[str, bytes]) -> tuple[Lookalike, Collection, dict[str, str]]:
    coll = create_collection(rt, "default", "photos")
    items = []
    for i, (name, data) in enumerate(sorted(photos.items())):
        tags = ("even",) if i % 2 == 0 else ("odd",)
        owner = "alice" if name in ("chelsea", "coffee") else "bob"
        items.append(
            (
                NewRecord(
                    name=name, owner=owner, tags=(*tags, "all"), description=f"the {name} photo"
                ),
                IngestFile(data, name),
            )
        )
    results = rt.ingest.add_many(coll, items, wait=True)
    ids = {r.filename or "": r.image_id or "" for r in results}
    return rt, coll, ids


def test_a_transformed_copy_finds_its_original(
    loaded: tuple[Lookalike, Collection, dict[str, str]], photos: dict[str, bytes]
) -> None:
    rt, _, ids = loaded
    for name in ("chelsea", "coffee", "astronaut"):
        query = open_image(photos[name])
        query = ImageOps.mirror(query.resize((query.width // 2, query.height // 2)))
        hits = search_similar(rt, "default", "photos", image_bytes=jpeg(query, 70), limit=3)
        assert hits[0].image_id == ids[name]
        assert hits[0].name == name
        assert hits[0].description == f"the {name} photo"
        # The service knows no URLs; the API's shape of a hit links its thumbnail.
        assert HitOut.model_validate(hits[0]).preview_url == f"/api/images/{ids[name]}/thumbnail"
        assert hits[0].score > hits[1].score


def test_search_by_image_id_leaves_the_image_out(
    loaded: tuple[Lookalike, Collection, dict[str, str]],
) -> None:
    rt, coll, ids = loaded
    hits = search_similar(rt, "default", coll.id, image_id=ids["chelsea"], limit=50)
    assert ids["chelsea"] not in {h.image_id for h in hits}
    assert len(hits) == len(ids) - 1
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    again = search_similar(rt, "default", coll.id, image_id=ids["chelsea"], limit=50)
    assert [h.image_id for h in again] == [h.image_id for h in hits]  # stable


def test_filters(loaded: tuple[Lookalike, Collection, dict[str, str]]) -> None:
    rt, coll, ids = loaded

    def names(filters: SearchFilters, **kw: object) -> set[str]:
        hits = search_similar(
            rt,
            "default",
            coll.id,
            image_id=ids["camera"],
            limit=50,
            filters=filters,
            include_payload=True,
            **kw,
        )  # type: ignore[arg-type]
        return {h.name for h in hits}

    assert names(SearchFilters(owner="alice")) == {"chelsea", "coffee"}
    even = names(SearchFilters(tags_any=["even"]))
    odd = names(SearchFilters(tags_any=["odd"]))
    assert even and odd and not even & odd
    assert names(SearchFilters(tags_all=["even", "all"])) == even - {"camera"}
    assert names(SearchFilters(tags_none=["even"])) == odd
    now = datetime.now(UTC)
    assert names(SearchFilters(created_after=now + timedelta(hours=1))) == set()
    assert len(names(SearchFilters(created_after=now - timedelta(hours=1)))) == len(ids) - 1
    assert names(SearchFilters(record_ids=[])) == set(ids) - {"camera"}


def test_limit_and_threshold(loaded: tuple[Lookalike, Collection, dict[str, str]]) -> None:
    rt, coll, ids = loaded
    assert len(search_similar(rt, "default", coll.id, image_id=ids["coffee"], limit=2)) == 2
    every = search_similar(rt, "default", coll.id, image_id=ids["coffee"], limit=50)
    cut = (every[2].score + every[3].score) / 2
    above = search_similar(
        rt, "default", coll.id, image_id=ids["coffee"], limit=50, score_threshold=cut
    )
    assert [h.image_id for h in above] == [h.image_id for h in every[:3]]
    page = search_similar(rt, "default", coll.id, image_id=ids["coffee"], limit=2, offset=2)
    assert [h.image_id for h in page] == [h.image_id for h in every[2:4]]
    with pytest.raises(InvalidInput):
        search_similar(rt, "default", coll.id, image_id=ids["coffee"], limit=0)


def test_errors(loaded: tuple[Lookalike, Collection, dict[str, str]]) -> None:
    rt, coll, _ = loaded
    with pytest.raises(CollectionNotFound):
        search_similar(rt, "default", "nope", text="cat")
    with pytest.raises(ImageNotFound):
        search_similar(rt, "default", coll.id, image_id="01JDZZZZZZZZZZZZZZZZZZZZZZ")
    with pytest.raises(CollectionNotFound):
        search_similar(rt, "other-tenant", coll.id, image_id="x")
    with pytest.raises(TextSearchUnavailable, match="text"):
        search_similar(rt, "default", coll.id, text="a cat")
    with pytest.raises(InvalidImage):
        search_similar(rt, "default", coll.id, image_bytes=b"not an image")
    with pytest.raises(InvalidInput):
        search_similar(rt, "default", coll.id, text="a", image_id="b")


def test_text_search_with_a_clip_model(
    tmp_path,
    models_dir,
    tiny_clip: str,  # type: ignore[no-untyped-def]
    photos: dict[str, bytes],
) -> None:
    settings = make_settings(tmp_path / "clip", models_dir, model=tiny_clip)
    with Lookalike(settings) as rt:
        coll = create_collection(rt, "default", "clip")
        assert coll.model == tiny_clip
        rt.ingest.add_many(
            coll,
            [(NewRecord(name=n, owner="a"), IngestFile(d)) for n, d in photos.items()],
            wait=True,
        )
        hits = search_similar(rt, "default", coll.id, text="a photo of a cat", limit=5)
        assert len(hits) == 5
        again = search_similar(rt, "default", coll.id, text="a photo of a cat", limit=5)
        assert [h.image_id for h in again] == [h.image_id for h in hits]
        other = search_similar(rt, "default", coll.id, text="rocket launch at night", limit=5)
        assert [h.score for h in other] != [h.score for h in hits]


def test_boolean_filter_dsl(loaded: tuple[Lookalike, Collection, dict[str, str]]) -> None:
    rt, coll, ids = loaded

    def names(raw: dict[str, object]) -> set[str]:
        filters = SearchFilters.model_validate(raw)
        hits = search_similar(
            rt, "default", coll.id, image_id=ids["camera"], limit=50, filters=filters
        )
        return {h.name for h in hits}

    everyone = set(ids) - {"camera"}
    alice = {"chelsea", "coffee"}
    assert names({"must": [{"key": "owner", "match": "alice"}]}) == alice
    assert names({"must_not": [{"key": "owner", "match": "alice"}]}) == everyone - alice
    assert names(
        {
            "should": [
                {"key": "owner", "match": "alice"},
                {"key": "tags", "any": ["odd"]},
            ]
        }
    ) == alice | names({"tags_any": ["odd"]})
    nested = {
        "must": [
            {"key": "tags", "match": "all"},
            {"must_not": [{"key": "owner", "any": ["bob"]}]},
        ]
    }
    assert names(nested) == alice
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert names({"must": [{"key": "created_at", "range": {"gte": soon}}]}) == set()
    assert names({"must": [{"key": "created_at", "range": {"lt": soon}}]}) == everyone
    assert names({"must": [{"key": "width", "range": {"gte": 10_000}}]}) == set()


@pytest.mark.parametrize(
    "raw",
    [
        {"must": [{"key": "tags", "range": {"gt": 1}}]},
        {"must": [{"key": "owner", "match": "a", "any": ["b"]}]},
        {"must": [{"key": "owner"}]},
        {"must": [{"key": "collection_id", "match": "x"}]},
        {"must": [{"key": "created_at", "range": {"gt": "2026-01-01T00:00:00"}}]},
        {"must": [{"key": "quality", "range": {}}]},
        {"must": [{"must": [{"must": [{"must": [{"must": [{"key": "owner", "match": "a"}]}]}]}]}]},
        {"must": [{"key": "owner", "match": str(i)} for i in range(65)]},
        {"must": [{"key": "owner", "match": "a", "extra": 1}]},
    ],
    ids=[
        "range-on-keyword",
        "two-tests",
        "no-test",
        "unknown-field",
        "naive-datetime",
        "empty-range",
        "too-deep",
        "too-many",
        "unknown-key",
    ],
)
def test_malformed_filters_are_refused(raw: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SearchFilters.model_validate(raw)


def test_phash_gate_keeps_near_duplicates_only(
    loaded: tuple[Lookalike, Collection, dict[str, str]], photos: dict[str, bytes]
) -> None:
    rt, coll, ids = loaded
    copy = open_image(photos["coffee"])
    copy = copy.resize((copy.width * 3 // 4, copy.height * 3 // 4))
    rt.ingest.add(coll, NewRecord(name="coffee copy", owner="x"), [IngestFile(jpeg(copy, 80))],
                  wait=True)  # fmt: skip
    hits = search_similar(rt, "default", coll.id, image_id=ids["coffee"], limit=20, phash_gate=6)
    assert [h.name for h in hits] == ["coffee copy"]
    query = jpeg(open_image(photos["coffee"]).resize((300, 200)), 70)
    hits = search_similar(rt, "default", coll.id, image_bytes=query, limit=20, phash_gate=6)
    assert {h.name for h in hits} == {"coffee", "coffee copy"}
    with pytest.raises(InvalidInput, match="query image"):
        search_similar(rt, "default", coll.id, text="x", phash_gate=6)
    with pytest.raises(InvalidInput):
        search_similar(rt, "default", coll.id, image_id=ids["coffee"], phash_gate=40)


def test_phash_candidate_filter_never_misses() -> None:
    import random

    from lookalike.imaging.hashes import phash_chunks
    from lookalike.imaging.phash_index import MAX_GATE, candidate_filter
    from lookalike.vectors.base import MatchAny

    rng = random.Random(1)
    for _ in range(300):
        query = rng.getrandbits(64)
        distance = rng.randint(0, MAX_GATE)
        other = query
        for bit in rng.sample(range(64), distance):
            other ^= 1 << bit
        flt = candidate_filter(f"{query:016x}", distance)
        chunks = phash_chunks(f"{other:016x}")
        assert any(isinstance(c, MatchAny) and chunks[c.key] in c.values for c in flt.should), (
            hex(query),
            hex(other),
            distance,
        )
