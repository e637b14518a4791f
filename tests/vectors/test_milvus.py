"""Milvus only: its two index kinds, an outage and a restart, and what Milvus's names and
expression language make the engine escape. The contract suite (test_contract.py) runs too."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from backends import namespace_for
from backends.milvus import MilvusProcess
from lookalike.core.errors import InvalidInput, VectorStoreUnavailable
from lookalike.vectors.base import (
    DatetimeRange,
    Filter,
    IndexSettings,
    MatchAny,
    MatchValue,
    Point,
    VectorSpec,
)

from .test_contract import MANUAL, PAYLOAD_INDEXES, ulids, unit

pytest.importorskip("pymilvus", reason="the milvus extra is not installed")

from lookalike.vectors.milvus import MilvusIndex  # after the skip: pymilvus is an extra

DIM = 16

# `make unit` runs the Milvus tests beside the rest: they mostly wait on the server.
pytestmark = pytest.mark.milvus


# "x.y" escapes to "x_0y", which escapes to "x__0y"; the long ones pass Milvus's 255 characters.
ODD_NAMES = ["x.y", "x-y", "x_0y", "a" + "." * 127, "a" + "-" * 127]


@pytest.fixture
def milvus(milvus_server: str, tmp_path: Path) -> Iterator[MilvusIndex]:
    """An index on the session's server in a namespace of the test's own; drops what the
    tests here create."""
    index = MilvusIndex(milvus_server, namespace=namespace_for(tmp_path))
    yield index
    for name in ["photos", *ODD_NAMES]:
        index.drop_collection(name)
    index.close()


def _create(index: MilvusIndex, name: str, dim: int = DIM) -> None:
    index.create_collection(name, [VectorSpec("img", dim)], MANUAL, PAYLOAD_INDEXES)


@pytest.mark.parametrize("kind", ["hnsw", "ivf_flat"])
def test_both_index_kinds_answer(milvus_server: str, tmp_path: Path, kind: str) -> None:
    index = MilvusIndex(milvus_server, namespace=namespace_for(tmp_path), index=kind)  # type: ignore[arg-type]
    try:
        index.create_collection("c", [VectorSpec("img", DIM)], MANUAL, PAYLOAD_INDEXES)
        n = 2000
        ids, x = ulids(n), unit(n, seed=2)
        index.upsert(
            "c",
            [Point(i, {"img": v}, {"n": k}) for k, (i, v) in enumerate(zip(ids, x, strict=True))],
        )
        index.build_index("c", wait=True)
        status = index.status("c")
        assert status.points == n
        assert status.indexed_vectors == n
        for k in range(0, n, 100):
            hits = index.search("c", "img", x[k], limit=5)
            assert hits[0].id == ids[k]
            assert hits[0].score == pytest.approx(1.0, abs=1e-4)
        # Scores are cosine similarities, best first, and agree with an exact search.
        query = unit(1, seed=99)[0]
        approx = index.search("c", "img", query, limit=10, ef=256)
        exact = index.search("c", "img", query, limit=10, exact=True)
        truth = np.sort(x @ query)[::-1][:10]
        np.testing.assert_allclose([h.score for h in exact], truth, atol=1e-4)
        assert len({h.id for h in approx} & {h.id for h in exact}) >= 8
    finally:
        index.drop_collection("c")
        index.close()


def test_outage_is_unavailable_naming_milvus_and_data_survives_restart(
    private_milvus: MilvusProcess,
) -> None:
    uri = private_milvus.start()
    index = MilvusIndex(uri, namespace="outage", timeout_s=3)
    index.create_collection("c", [VectorSpec("img", DIM)], MANUAL, PAYLOAD_INDEXES)
    ids, x = ulids(50), unit(50)
    index.upsert("c", [Point(i, {"img": v}, {"owner": "ann"}) for i, v in zip(ids, x, strict=True)])
    assert index.count("c") == 50

    private_milvus.stop()
    for call in (
        lambda: index.search("c", "img", x[0]),
        lambda: index.count("c"),
        lambda: index.upsert("c", [Point(ids[0], {"img": x[0]})]),
    ):
        with pytest.raises(VectorStoreUnavailable) as caught:
            call()
        assert "Milvus" in caught.value.message
        assert uri in caught.value.message
        assert "Traceback" not in caught.value.message
    with pytest.raises(VectorStoreUnavailable, match="Milvus"):
        MilvusIndex(uri, namespace="outage", timeout_s=2)
    index.close()

    private_milvus.start()  # same directory, same port
    reopened = MilvusIndex(uri, namespace="outage")
    try:
        # A restarted Milvus answers before it has reloaded its collections (it replays its
        # log first): calls fail as unavailable until then.
        assert _once_recovered(lambda: reopened.count("c")) == 50
        assert reopened.search("c", "img", x[7], limit=1)[0].id == ids[7]
        assert reopened.retrieve("c", [ids[3]])[0].payload == {"owner": "ann"}
    finally:
        reopened.close()


def _once_recovered(call: Callable[[], int], timeout_s: float = 120.0) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except VectorStoreUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_an_unreachable_server_fails_at_open(tmp_path: Path) -> None:
    # Nothing listens on port 1.
    with pytest.raises(VectorStoreUnavailable) as caught:
        MilvusIndex("http://127.0.0.1:1", timeout_s=1)
    assert "Milvus at http://127.0.0.1:1" in caught.value.message


def test_odd_collection_names_stay_apart(milvus: MilvusIndex) -> None:
    """'.', '-' and '_' escape reversibly; names too long for Milvus end in a hash."""
    for dim, name in enumerate(ODD_NAMES, start=2):
        _create(milvus, name, dim)
    for dim, name in enumerate(ODD_NAMES, start=2):
        assert milvus.has_collection(name)
        assert milvus.vector_specs(name) == [VectorSpec("img", dim)]
    (pid,) = ulids(1)
    milvus.upsert("x.y", [Point(pid, {"img": np.ones(2, np.float32)})])
    assert milvus.count("x.y") == 1
    assert milvus.count("x-y") == 0
    milvus.drop_collection("x.y")
    assert not milvus.has_collection("x.y")
    assert milvus.has_collection("x-y")


def test_string_values_cannot_change_the_expression(milvus: MilvusIndex) -> None:
    """Quotes and backslashes in values and keys are escaped, in shadow fields and JSON alike."""
    _create(milvus, "photos")
    hostile = ['ann" or id != "', "b\\", 'c\\"', "d'e", "ünï 😀", 'f"]) or (["']
    ids, x = ulids(len(hostile) + 1), unit(len(hostile) + 1)
    points = [
        Point(pid, {"img": v}, {"owner": value, "note": value, 'we"ird\\key': value})
        for pid, v, value in zip(ids, x, [*hostile, "plain"], strict=True)
    ]
    milvus.upsert("photos", points)
    for k, value in enumerate(hostile):
        for key in ("owner", "note", 'we"ird\\key'):  # indexed, JSON, a key that needs escaping
            found = milvus.search(
                "photos", "img", x[0], limit=20, query_filter=Filter(must=(MatchValue(key, value),))
            )
            assert [h.id for h in found] == [ids[k]], (key, value)
    any_two = Filter(must=(MatchAny("note", (hostile[0], hostile[1])),))
    assert milvus.count("photos", any_two) == 2
    assert milvus.count("photos", Filter(must_not=(MatchValue("owner", hostile[0]),))) == len(
        hostile
    )


def test_a_datetime_range_needs_a_datetime_index(milvus: MilvusIndex) -> None:
    _create(milvus, "photos")
    later = Filter(must=(DatetimeRange("taken", gte=datetime(2024, 1, 1, tzinfo=UTC)),))
    with pytest.raises(InvalidInput, match="datetime payload index"):
        milvus.count("photos", later)


def test_int8_is_rescored_on_the_originals(milvus_server: str, tmp_path: Path) -> None:
    index = MilvusIndex(milvus_server, namespace=namespace_for(tmp_path))
    try:
        index.create_collection(
            "c", [VectorSpec("img", DIM)], IndexSettings(quantization="int8"), PAYLOAD_INDEXES
        )
        n = 1500
        ids, x = ulids(n), unit(n, seed=6)
        index.upsert("c", [Point(i, {"img": v}) for i, v in zip(ids, x, strict=True)])
        index.build_index("c", wait=True)
        query = unit(1, seed=7)[0]
        hits = index.search("c", "img", query, limit=5)
        by_id = dict(zip(ids, x @ query, strict=True))
        np.testing.assert_allclose([h.score for h in hits], [by_id[h.id] for h in hits], atol=1e-5)
    finally:
        index.drop_collection("c")
        index.close()
