"""The `VectorIndex` contract. Every backend in conftest's `BACKENDS` must pass all of it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from ulid import ULID

from backends import Backend
from lookalike.core.errors import (
    Conflict,
    DataDirLocked,
    DimensionMismatch,
    InvalidInput,
    NotFound,
)
from lookalike.vectors.base import (
    DatetimeRange,
    Filter,
    HasId,
    IndexSettings,
    IsEmpty,
    MatchAny,
    MatchValue,
    PayloadType,
    Point,
    Range,
    VectorIndex,
    VectorSpec,
)

DIM = 16
C = "photos"
# Builds only when a test asks for one.
MANUAL = IndexSettings(indexing_threshold=10**9)
PAYLOAD_INDEXES: dict[str, PayloadType] = {
    "owner": "keyword",
    "tags": "keyword",
    "n": "integer",
    "quality": "float",
    "created_at": "datetime",
    "nsfw": "bool",
}
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def ulids(n: int, start: int = 0) -> list[str]:
    """Deterministic ids, in ascending order."""
    return [str(ULID.from_int((1_700_000_000_000 << 80) + start + i)) for i in range(n)]


def unit(rows: int, dim: int = DIM, seed: int = 0) -> NDArray[np.float32]:
    x = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    normed: NDArray[np.float32] = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return normed


def create(
    index: VectorIndex,
    settings: IndexSettings = MANUAL,
    vectors: tuple[VectorSpec, ...] = (VectorSpec("img", DIM),),
) -> None:
    index.create_collection(C, vectors, settings, PAYLOAD_INDEXES)


def fill(index: VectorIndex, n: int, seed: int = 0) -> tuple[list[str], NDArray[np.float32]]:
    ids, x = ulids(n), unit(n, seed=seed)
    index.upsert(
        C, [Point(i, {"img": v}, {"n": k}) for k, (i, v) in enumerate(zip(ids, x, strict=True))]
    )
    return ids, x


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


# --- collections --------------------------------------------------------------------


def test_create_has_drop(index: VectorIndex) -> None:
    assert not index.has_collection(C)
    specs = (VectorSpec("img", DIM), VectorSpec("crops", DIM, multivector=True))
    create(index, vectors=specs)
    assert index.has_collection(C)
    assert index.vector_specs(C) == list(specs)
    create(index, vectors=specs)  # same vectors: no-op
    with pytest.raises(Conflict):
        create(index, vectors=(VectorSpec("img", DIM + 1),))
    index.drop_collection(C)
    assert not index.has_collection(C)
    index.drop_collection(C)  # absent: fine
    with pytest.raises(NotFound):
        index.count(C)
    create(index)  # the name can be used again
    assert index.count(C) == 0


def test_unknown_collection_and_bad_names(index: VectorIndex) -> None:
    with pytest.raises(NotFound):
        index.search("nope", "img", unit(1)[0])
    with pytest.raises(NotFound):
        index.vector_specs("nope")
    with pytest.raises(InvalidInput):
        index.create_collection("../escape", [VectorSpec("img", DIM)], MANUAL, {})
    assert not index.has_collection("../escape")


# --- writes and reads ---------------------------------------------------------------


def test_upsert_retrieve_roundtrip(index: VectorIndex) -> None:
    create(index)
    ids, x = ulids(3), unit(3)
    payload = {
        "owner": "ann",
        "tags": ["cat", "red"],
        "quality": 0.5,
        "nsfw": False,
        "n": 3,
        "extra": {"nested": [1, 2], "none": None},
        "created_at": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
    }
    index.upsert(C, [Point(i, {"img": v}, payload) for i, v in zip(ids, x, strict=True)])
    got = index.retrieve(C, [ids[2], ulids(1, start=99)[0], ids[0]], with_vectors=True)
    assert [p.id for p in got] == [ids[2], ids[0]]  # order given, missing skipped
    assert got[0].payload == {**payload, "created_at": "2024-05-01T12:00:00Z"}
    np.testing.assert_allclose(got[0].vectors["img"], x[2], atol=1e-5)
    assert index.retrieve(C, [ids[1]])[0].vectors == {}  # no vectors unless asked


def test_reupsert_replaces(index: VectorIndex) -> None:
    create(index)
    (pid,), x = ulids(1), unit(2)
    index.upsert(C, [Point(pid, {"img": x[0]}, {"owner": "ann", "tags": ["cat"]})])
    index.upsert(C, [Point(pid, {"img": x[1]}, {"owner": "bob"})])
    assert index.count(C) == 1
    (point,) = index.retrieve(C, [pid], with_vectors=True)
    assert point.payload == {"owner": "bob"}
    np.testing.assert_allclose(point.vectors["img"], x[1], atol=1e-5)


def test_bad_points_write_nothing(index: VectorIndex) -> None:
    create(index)
    good, bad = ulids(2)
    ok = Point(good, {"img": unit(1)[0]})
    with pytest.raises(DimensionMismatch):
        index.upsert(C, [ok, Point(bad, {"img": unit(1, dim=DIM + 1)[0]})])
    with pytest.raises(InvalidInput):
        index.upsert(C, [ok, Point(bad, {"other": unit(1)[0]})])
    with pytest.raises(InvalidInput):
        index.upsert(C, [ok, Point("not-a-ulid", {"img": unit(1)[0]})])
    with pytest.raises(InvalidInput):
        index.upsert(C, [ok, Point(bad, {"img": np.full(DIM, np.nan, np.float32)})])
    assert index.count(C) == 0
    with pytest.raises(DimensionMismatch):
        index.search(C, "img", unit(1, dim=DIM - 1)[0])
    with pytest.raises(InvalidInput):
        index.search(C, "nope", unit(1)[0])


def test_set_payload_merges(index: VectorIndex) -> None:
    create(index)
    ids, _ = fill(index, 3)
    missing = ulids(1, start=500)[0]
    index.set_payload(C, [ids[0], missing], {"owner": "cyd", "tags": ["new"]})
    assert index.retrieve(C, [ids[0]])[0].payload == {"n": 0, "owner": "cyd", "tags": ["new"]}
    assert index.retrieve(C, [ids[1]])[0].payload == {"n": 1}
    assert index.count(C, Filter(must=(MatchValue("tags", "new"),))) == 1


def test_delete(index: VectorIndex) -> None:
    create(index)
    ids, x = fill(index, 10)
    index.delete(C, [ids[1], ids[3], ulids(1, start=500)[0]])
    assert index.count(C) == 8
    assert index.retrieve(C, [ids[1], ids[2]])[0].id == ids[2]
    hits = index.search(C, "img", x[1], limit=10)
    assert ids[1] not in {h.id for h in hits}


# --- filters --------------------------------------------------------------------------

N_FILTER = 60
FILTER_IDS = ulids(N_FILTER)


def filter_payload(i: int) -> dict[str, Any]:
    """Varied payloads: list fields, missing/null/empty fields, datetimes in several offsets."""
    tags = [t for bit, t in enumerate(("cat", "dog", "red", "blue")) if (i >> bit) & 1]
    offset = timezone(timedelta(hours=(i % 5) - 2))
    payload: dict[str, Any] = {
        "owner": ("ann", "bob", "cyd")[i % 3],
        "tags": tags,
        "n": i,
        "quality": round(i / N_FILTER, 4),
        "nsfw": i % 5 == 0,
        "created_at": (T0 + timedelta(hours=i)).astimezone(offset).isoformat(),
    }
    if i % 7 == 0:
        del payload["quality"]
    payload["note"] = [None, [], "x", ["y"]][i % 4] if i % 3 else "z"
    if i % 6 == 1:
        del payload["note"]
    return payload


def created(p: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(p["created_at"])


FilterCase = tuple[Filter, Callable[[int, Mapping[str, Any]], bool]]
FILTER_CASES: dict[str, FilterCase] = {
    "keyword": (Filter(must=(MatchValue("owner", "ann"),)), lambda i, p: p["owner"] == "ann"),
    "list_contains": (Filter(must=(MatchValue("tags", "cat"),)), lambda i, p: "cat" in p["tags"]),
    "integer": (Filter(must=(MatchValue("n", 7),)), lambda i, p: i == 7),
    "bool": (Filter(must=(MatchValue("nsfw", True),)), lambda i, p: p["nsfw"]),
    "any_keyword": (
        Filter(must=(MatchAny("owner", ("ann", "cyd")),)),
        lambda i, p: p["owner"] in ("ann", "cyd"),
    ),
    "any_list_shares_one": (
        Filter(must=(MatchAny("tags", ("red", "blue")),)),
        lambda i, p: bool({"red", "blue"} & set(p["tags"])),
    ),
    "any_integer": (Filter(must=(MatchAny("n", (1, 2, 3, 50)),)), lambda i, p: i in (1, 2, 3, 50)),
    "any_of_nothing": (Filter(must=(MatchAny("tags", ()),)), lambda i, p: False),
    "all_of_two_tags": (
        Filter(must=(MatchValue("tags", "cat"), MatchValue("tags", "dog"))),
        lambda i, p: {"cat", "dog"} <= set(p["tags"]),
    ),
    "range": (
        Filter(must=(Range("quality", gte=0.25, lt=0.5),)),
        lambda i, p: "quality" in p and 0.25 <= p["quality"] < 0.5,
    ),
    "range_open": (Filter(must=(Range("n", gt=50),)), lambda i, p: i > 50),
    "datetime": (
        Filter(
            must=(
                DatetimeRange(
                    "created_at", gte=T0 + timedelta(hours=10), lt=T0 + timedelta(hours=20)
                ),
            )
        ),
        lambda i, p: T0 + timedelta(hours=10) <= created(p) < T0 + timedelta(hours=20),
    ),
    "datetime_other_zone": (
        Filter(
            must=(
                DatetimeRange(
                    "created_at",
                    lte=(T0 + timedelta(hours=5)).astimezone(timezone(timedelta(hours=9))),
                ),
            )
        ),
        lambda i, p: created(p) <= T0 + timedelta(hours=5),
    ),
    "datetime_naive_is_utc": (
        Filter(must=(DatetimeRange("created_at", gt=datetime(2024, 1, 2, 0, 0)),)),
        lambda i, p: created(p) > datetime(2024, 1, 2, tzinfo=UTC),
    ),
    "has_id": (
        Filter(must=(HasId((FILTER_IDS[3], FILTER_IDS[40])),)),
        lambda i, p: i in (3, 40),
    ),
    "is_empty": (
        Filter(must=(IsEmpty("note"),)),
        lambda i, p: p.get("note") in (None, []),
    ),
    "nested": (
        Filter(
            must=(
                MatchValue("owner", "ann"),
                Filter(should=(MatchValue("tags", "cat"), Range("n", lt=10))),
            ),
            must_not=(MatchValue("nsfw", True),),
        ),
        lambda i, p: p["owner"] == "ann" and ("cat" in p["tags"] or i < 10) and not p["nsfw"],
    ),
    "should_only": (
        Filter(should=(MatchValue("owner", "bob"), MatchValue("tags", "dog"))),
        lambda i, p: p["owner"] == "bob" or "dog" in p["tags"],
    ),
    "must_not_list": (
        Filter(must_not=(MatchAny("tags", ("cat",)),)),
        lambda i, p: "cat" not in p["tags"],
    ),
    "must_not_ids": (
        Filter(must_not=(HasId((FILTER_IDS[0],)),), must=(Range("n", lt=5),)),
        lambda i, p: 0 < i < 5,
    ),
    "must_not_nested": (
        Filter(must_not=(Filter(must=(MatchValue("owner", "ann"), MatchValue("tags", "red"))),)),
        lambda i, p: not (p["owner"] == "ann" and "red" in p["tags"]),
    ),
}


@pytest.mark.parametrize("case", FILTER_CASES, ids=list(FILTER_CASES))
def test_filter(index: VectorIndex, case: str) -> None:
    create(index)
    x = unit(N_FILTER)
    payloads = [filter_payload(i) for i in range(N_FILTER)]
    index.upsert(C, [Point(pid, {"img": x[i]}, payloads[i]) for i, pid in enumerate(FILTER_IDS)])
    query_filter, predicate = FILTER_CASES[case]
    expected = {FILTER_IDS[i] for i in range(N_FILTER) if predicate(i, payloads[i])}

    assert index.count(C, query_filter) == len(expected)
    assert {p.id for p in index.iter_points(C, query_filter=query_filter)} == expected
    hits = index.search(C, "img", x[0], limit=N_FILTER, query_filter=query_filter)
    assert {h.id for h in hits} == expected


# --- search ---------------------------------------------------------------------------


def test_search_scores_and_threshold(index: VectorIndex) -> None:
    create(index)
    ids, x = fill(index, 200)
    query = unit(1, seed=9)[0]
    exact = x @ query
    hits = index.search(C, "img", query, limit=10, exact=True)
    assert [h.id for h in hits] == [ids[i] for i in np.argsort(-exact)[:10]]
    np.testing.assert_allclose([h.score for h in hits], np.sort(exact)[::-1][:10], atol=1e-4)
    assert hits[0].payload is not None
    assert "n" in hits[0].payload
    assert index.search(C, "img", query, limit=3, with_payload=False)[0].payload is None

    threshold = float(np.sort(exact)[::-1][6]) - 1e-4  # 7 points above
    above = index.search(C, "img", query, limit=50, score_threshold=threshold)
    assert len(above) == 7
    assert all(h.score >= threshold for h in above)


def test_offset_paging_is_stable(index: VectorIndex) -> None:
    create(index)
    fill(index, 300)
    query = unit(1, seed=4)[0]
    for exact in (True, False):
        top = index.search(C, "img", query, limit=15, exact=exact)
        pages = [index.search(C, "img", query, limit=5, offset=o, exact=exact) for o in (0, 5, 10)]
        assert [h.id for page in pages for h in page] == [h.id for h in top]


def test_count(index: VectorIndex) -> None:
    create(index)
    assert index.count(C) == 0
    fill(index, 25)
    assert index.count(C) == 25
    assert index.count(C, Filter(must=(Range("n", lt=10),))) == 10


def test_scroll_covers_every_id_once(index: VectorIndex) -> None:
    create(index)
    ids, _ = fill(index, 50)
    seen: list[str] = []
    offset: str | None = None
    while True:
        page, offset = index.scroll(C, limit=7, offset=offset)
        assert len(page) <= 7
        seen.extend(p.id for p in page)
        if offset is None:
            break
    assert seen == sorted(ids)  # id order, each once
    even = Filter(must=(MatchAny("n", tuple(range(0, 50, 2))),))
    assert [p.id for p in index.iter_points(C, query_filter=even)] == ids[::2]
    page, _ = index.scroll(C, limit=2, with_vectors=True)
    assert page[0].vectors["img"].shape == (DIM,)


def test_multivector_maxsim(index: VectorIndex) -> None:
    create(index, vectors=(VectorSpec("img", DIM), VectorSpec("crops", DIM, multivector=True)))
    rng = np.random.default_rng(3)
    ids = ulids(40)
    crops = [unit(int(rng.integers(1, 5)), seed=100 + k) for k in range(40)]
    index.upsert(C, [Point(i, {"crops": c}) for i, c in zip(ids, crops, strict=True)])
    query = unit(3, seed=7)

    def maxsim(doc: NDArray[np.float32]) -> float:
        return float((query @ doc.T).max(axis=1).sum())

    expected = sorted(((maxsim(c), i) for i, c in zip(ids, crops, strict=True)), reverse=True)[:5]
    hits = index.search(C, "crops", query, limit=5, exact=True)
    assert [h.id for h in hits] == [i for _, i in expected]
    np.testing.assert_allclose([h.score for h in hits], [s for s, _ in expected], atol=1e-4)
    # One vector is a query of one row.
    single = index.search(C, "crops", crops[5][0], limit=1)
    assert single[0].id == ids[5]
    (back,) = index.retrieve(C, [ids[5]], with_vectors=True)
    assert back.vectors["crops"].shape == crops[5].shape
    with pytest.raises(DimensionMismatch):
        index.upsert(C, [Point(ids[0], {"crops": unit(2, dim=DIM + 2)})])


# --- isolation and selective filters ---------------------------------------------------------


def test_collections_are_isolated(index: VectorIndex) -> None:
    """Two collections (two tenants' collections, say) with the same ids and vectors: nothing
    done to one is seen in the other."""
    other = "others"
    create(index)
    index.create_collection(other, [VectorSpec("img", DIM)], MANUAL, PAYLOAD_INDEXES)
    ids, x = ulids(40), unit(40)
    index.upsert(C, [Point(i, {"img": v}, {"owner": "ann"}) for i, v in zip(ids, x, strict=True)])
    index.upsert(
        other, [Point(i, {"img": v}, {"owner": "bob"}) for i, v in zip(ids, x, strict=True)]
    )
    index.delete(other, ids[:10])
    index.set_payload(other, ids[10:20], {"tags": ["moved"]})

    assert index.count(C) == 40
    assert index.count(other) == 30
    assert index.count(C, Filter(must=(MatchValue("owner", "bob"),))) == 0
    assert index.count(C, Filter(must=(MatchValue("tags", "moved"),))) == 0
    hits = index.search(C, "img", x[3], limit=40)
    assert len(hits) == 40
    assert all(h.payload == {"owner": "ann"} for h in hits)
    assert [p.id for p in index.retrieve(other, ids[:12])] == ids[10:12]
    assert {p.payload["owner"] for p in index.iter_points(other)} == {"bob"}
    index.drop_collection(other)
    assert index.count(C) == 40
    assert index.search(C, "img", x[5], limit=1)[0].id == ids[5]


@pytest.mark.parametrize("built", [False, True], ids=["unindexed", "indexed"])
def test_selective_filter_is_not_under_fetched(index: VectorIndex, built: bool) -> None:
    """A filter that 1% of the points pass still returns `limit` hits, the true nearest ones
    among those points (an engine that filters after an approximate search returns fewer)."""
    n, rare_every = 5000, 100
    create(index)
    ids, x = ulids(n), unit(n, seed=4)
    index.upsert(
        C,
        [
            Point(i, {"img": v}, {"owner": "rare" if k % rare_every == 7 else "common", "n": k})
            for k, (i, v) in enumerate(zip(ids, x, strict=True))
        ],
    )
    if built:
        index.build_index(C, wait=True)
    rare = np.arange(n) % rare_every == 7
    only_rare = Filter(must=(MatchValue("owner", "rare"),))
    recalls = []
    for q in unit(10, seed=5):
        hits = index.search(C, "img", q, limit=10, query_filter=only_rare)
        assert len(hits) == 10
        assert all(h.payload is not None and h.payload["owner"] == "rare" for h in hits)
        truth = {ids[k] for k in np.argsort(-np.where(rare, x @ q, -np.inf))[:10]}
        recalls.append(len(truth & {h.id for h in hits}) / 10)
    assert float(np.mean(recalls)) >= 0.9
    # Fewer matches than the limit: all of them.
    few = Filter(must=(MatchAny("n", (7, 1507, 4907)),))
    assert {h.id for h in index.search(C, "img", x[0], limit=10, query_filter=few)} == {
        ids[7],
        ids[1507],
        ids[4907],
    }


# --- index builds -------------------------------------------------------------------------


@pytest.mark.parametrize("quantization", ["none", "int8"])
def test_exact_and_hnsw_after_build(index: VectorIndex, quantization: str) -> None:
    settings = IndexSettings(quantization=quantization, indexing_threshold=10**9)  # type: ignore[arg-type]
    create(index, settings)
    ids, x = fill(index, 1500)
    assert index.status(C).indexed_vectors == 0
    index.build_index(C, wait=True)
    status = index.status(C)
    assert status.points == 1500
    assert status.indexed_vectors == 1500
    assert not status.building
    for k in range(0, 1500, 75):
        assert index.search(C, "img", x[k], limit=1)[0].id == ids[k]
        assert index.search(C, "img", x[k], limit=1, exact=True)[0].id == ids[k]
        assert index.search(C, "img", x[k], limit=1, ef=128)[0].id == ids[k]


def test_maybe_build_index_after_threshold(index: VectorIndex) -> None:
    create(index, IndexSettings(indexing_threshold=300))
    fill(index, 200)
    assert index.maybe_build_index(C) is False  # below the threshold
    more, y = ulids(150, start=1000), unit(150, seed=1)
    index.upsert(C, [Point(i, {"img": v}) for i, v in zip(more, y, strict=True)])
    assert index.maybe_build_index(C) is True
    wait_until(lambda: index.status(C).indexed_vectors == 350 and not index.status(C).building)
    assert index.maybe_build_index(C) is False  # nothing new since
    assert index.search(C, "img", y[3], limit=1)[0].id == more[3]


def test_searches_and_writes_during_build(index: VectorIndex) -> None:
    """Searches from many threads are answered while the index builds; writes made meanwhile
    survive the switch to the built index."""
    create(index)
    n = 4000
    ids, x = fill(index, n)
    index.build_index(C)
    assert index.status(C).building

    stop = threading.Event()
    errors: list[BaseException] = []
    while_building = [0]

    def search_loop(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                k = int(rng.integers(10, n))  # ids[:10] get deleted meanwhile
                building = index.status(C).building
                hits = index.search(C, "img", x[k], limit=3)
                assert hits[0].id == ids[k]
                if building:
                    while_building[0] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=search_loop, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    # Writes while the copy is being indexed.
    new_ids, y = ulids(100, start=10_000), unit(100, seed=5)
    index.upsert(C, [Point(i, {"img": v}, {"n": -1}) for i, v in zip(new_ids, y, strict=True)])
    index.delete(C, ids[:10])
    index.set_payload(C, ids[10:20], {"owner": "during-build"})
    try:
        wait_until(lambda: not index.status(C).building)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    assert while_building[0] >= 20
    status = index.status(C)
    assert status.last_build_error is None
    assert status.points == n + 100 - 10
    assert index.retrieve(C, ids[:10]) == []
    assert index.count(C, Filter(must=(MatchValue("owner", "during-build"),))) == 10
    assert index.search(C, "img", y[7], limit=1)[0].id == new_ids[7]
    assert index.search(C, "img", x[500], limit=1)[0].id == ids[500]


def test_drop_or_close_during_build(open_index: Callable[[], VectorIndex]) -> None:
    index = open_index()
    create(index)
    fill(index, 2000)
    index.build_index(C)
    index.drop_collection(C)
    assert not index.has_collection(C)

    create(index)
    ids, x = fill(index, 2000)
    index.build_index(C)
    index.close()
    reopened = open_index()
    assert reopened.count(C) == 2000
    assert not reopened.status(C).building
    assert reopened.search(C, "img", x[9], limit=1)[0].id == ids[9]


# --- persistence and locking ----------------------------------------------------------------


def test_persistence_across_reopen(open_index: Callable[[], VectorIndex]) -> None:
    index = open_index()
    specs = (VectorSpec("img", DIM), VectorSpec("crops", DIM, multivector=True))
    create(index, vectors=specs)
    ids, x = fill(index, 500)
    index.build_index(C, wait=True)
    more = ulids(5, start=9000)
    index.upsert(
        C,
        [
            Point(i, {"img": v}, {"owner": "late"})
            for i, v in zip(more, unit(5, seed=8), strict=True)
        ],
    )
    index.close()

    reopened = open_index()
    assert reopened.has_collection(C)
    assert reopened.vector_specs(C) == list(specs)
    assert reopened.count(C) == 505
    assert reopened.status(C).indexed_vectors >= 500
    assert reopened.retrieve(C, [more[2]])[0].payload == {"owner": "late"}
    assert reopened.search(C, "img", x[42], limit=1)[0].id == ids[42]


def test_second_process_gets_data_dir_locked(
    backend: Backend, open_index: Callable[[], VectorIndex], data_dir: Path
) -> None:
    if not backend.locks_data_dir:
        pytest.skip(f"{backend.name}: a server engine takes no lock on a local data directory")
    index = open_index()
    create(index)
    script = (
        "import sys; from pathlib import Path\n"
        "from lookalike.core.errors import DataDirLocked\n"
        "sys.path.insert(0, sys.argv[3])\n"
        "from backends import Backend\n"
        "backend = Backend('b', sys.argv[1], eval(sys.argv[4]))\n"
        "try:\n"
        "    backend.open(Path(sys.argv[2])).close()\n"
        "except DataDirLocked as exc:\n"
        "    print(exc); sys.exit(3)\n"
    )
    here = str(Path(__file__).parent.parent)

    def other_process() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-c",
                script,
                backend.factory,
                str(data_dir),
                here,
                repr(backend.options),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )

    locked = other_process()
    assert locked.returncode == 3, locked.stderr
    assert str(data_dir) in locked.stdout
    with pytest.raises(DataDirLocked):  # a second instance in this process, too
        backend.open(data_dir)
    index.close()
    free = other_process()
    assert free.returncode == 0, free.stderr


# --- heavier ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_recall_and_no_freeze_while_building(index: VectorIndex) -> None:
    """12k clustered points indexed by the automatic policy while searches keep flowing: no
    pause in answers longer than a second, and recall@10 >= 0.95 (plain and filtered)."""
    n, dim = 12_000, 128
    rng = np.random.default_rng(11)
    centers = unit(200, dim=dim, seed=12)

    def draw(count: int) -> NDArray[np.float32]:
        x = centers[rng.integers(0, len(centers), count)]
        x = x + 0.05 * rng.standard_normal((count, dim)).astype(np.float32)
        normed: NDArray[np.float32] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return normed

    data, queries = draw(n), draw(50)
    ids = ulids(n)
    create(index, IndexSettings(indexing_threshold=4000), vectors=(VectorSpec("img", dim),))

    answered: list[float] = []
    stop = threading.Event()

    def search_loop() -> None:
        k = 0
        while not stop.is_set():
            index.search(C, "img", queries[k % len(queries)], limit=10, ef=64)
            answered.append(time.monotonic())
            k += 1

    searcher = threading.Thread(target=search_loop)
    searcher.start()
    try:
        for lo in range(0, n, 500):
            batch = range(lo, min(n, lo + 500))
            index.upsert(C, [Point(ids[i], {"img": data[i]}, {"n": i % 10}) for i in batch])
            index.maybe_build_index(C)
        index.build_index(C, wait=True)
    finally:
        stop.set()
        searcher.join()
    assert index.status(C).indexed_vectors == n
    gaps = np.diff(np.asarray(answered))
    assert gaps.max() < 1.0, f"searches paused for {gaps.max():.2f} s"

    for query_filter, mask in (
        (None, np.ones(n, bool)),
        (Filter(must=(MatchValue("n", 3),)), np.arange(n) % 10 == 3),
    ):
        recalls = []
        for q in queries:
            scores = np.where(mask, data @ q, -np.inf)
            truth = {ids[i] for i in np.argsort(-scores)[:10]}
            hits = index.search(C, "img", q, limit=10, ef=64, query_filter=query_filter)
            recalls.append(len(truth & {h.id for h in hits}) / 10)
        assert float(np.mean(recalls)) >= 0.95
