"""What every `BlobStore` must do; runs once per backend in `conftest.BACKENDS`."""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from lookalike.core.errors import NotFound
from lookalike.storage import BlobStore

DATA = b"\x89PNG\r\n\x1a\n pretend this is a picture"
KEY = hashlib.sha256(DATA).hexdigest()

BAD_KEYS = [
    "",
    "../../etc/passwd",
    "/etc/passwd",
    KEY.upper(),
    KEY[:-1],
    KEY + "0",
    KEY[:62] + "/.",
    "ab/cd/" + KEY,
    KEY[:63] + "\x00",
    "g" * 64,
]


def test_put_returns_the_sha256_and_get_returns_the_bytes(blob_store: BlobStore) -> None:
    key = blob_store.put(DATA, content_type="image/png")
    assert key == KEY
    assert blob_store.get(key) == DATA
    assert blob_store.exists(key)


def test_empty_and_large_blobs(blob_store: BlobStore) -> None:
    large = bytes(range(256)) * 40_000  # 10 MB
    for data in (b"", large):
        key = blob_store.put(data, content_type="application/octet-stream")
        assert blob_store.get(key) == data


def test_put_is_idempotent(blob_store: BlobStore) -> None:
    first = blob_store.put(DATA, content_type="image/png")
    second = blob_store.put(DATA, content_type="image/png")
    assert first == second
    assert blob_store.iter_keys() == [first]


def test_delete(blob_store: BlobStore) -> None:
    key = blob_store.put(DATA, content_type="image/png")
    other = blob_store.put(b"other", content_type="image/png")
    blob_store.delete(key)
    assert not blob_store.exists(key)
    with pytest.raises(NotFound):
        blob_store.get(key)
    assert blob_store.iter_keys() == [other]
    blob_store.delete(key)  # absent: not an error
    assert blob_store.put(DATA, content_type="image/png") == key  # and it can come back


def test_missing_key(blob_store: BlobStore) -> None:
    assert not blob_store.exists(KEY)
    with pytest.raises(NotFound, match="No blob"):
        blob_store.get(KEY)
    with pytest.raises(NotFound):
        blob_store.open(KEY)


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_not_found_and_touch_nothing(blob_store: BlobStore, key: str) -> None:
    blob_store.put(DATA, content_type="image/png")
    assert not blob_store.exists(key)
    with pytest.raises(NotFound):
        blob_store.get(key)
    with pytest.raises(NotFound):
        blob_store.open(key)
    blob_store.delete(key)
    assert blob_store.iter_keys() == [KEY]


def test_iter_keys(blob_store: BlobStore) -> None:
    assert blob_store.iter_keys() == []
    keys = {blob_store.put(f"blob {i}".encode(), content_type="text/plain") for i in range(50)}
    assert blob_store.iter_keys() == sorted(keys)


def test_open_streams_the_bytes(blob_store: BlobStore) -> None:
    key = blob_store.put(DATA, content_type="image/png")
    with blob_store.open(key) as handle:
        assert handle.read(4) == DATA[:4]
        assert handle.read() == DATA[4:]


def test_concurrent_puts_of_the_same_bytes(blob_store: BlobStore) -> None:
    data = b"same picture from many uploads " * 10_000
    workers = 16
    start = threading.Barrier(workers)

    def put() -> str:
        start.wait()
        return blob_store.put(data, content_type="image/jpeg")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        keys = list(pool.map(lambda _: put(), range(workers)))
    assert set(keys) == {hashlib.sha256(data).hexdigest()}
    assert blob_store.iter_keys() == [keys[0]]
    assert blob_store.get(keys[0]) == data


def test_concurrent_puts_of_different_bytes(blob_store: BlobStore) -> None:
    blobs = [f"picture {i}".encode() * 1000 for i in range(64)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        keys = list(pool.map(lambda data: blob_store.put(data, content_type="image/jpeg"), blobs))
    assert blob_store.iter_keys() == sorted(keys)
    assert [blob_store.get(key) for key in keys] == blobs


def test_delete_unreferenced_keeps_what_is_referenced(blob_store: BlobStore) -> None:
    keys = [blob_store.put(bytes([i]) * 100, content_type="image/png") for i in range(4)]
    deleted = blob_store.delete_unreferenced(keys, lambda candidates: candidates & {keys[0]})
    assert deleted == sorted(keys[1:])
    assert blob_store.iter_keys() == [keys[0]]
    assert blob_store.delete_unreferenced(["not a key", keys[1]], lambda c: set()) == []


def test_a_writer_between_the_check_and_the_delete_keeps_its_blob(blob_store: BlobStore) -> None:
    # A writer of the same bytes commits its catalog row and stores the blob right after the
    # collector found it unreferenced: its put finds the file and returns, so only a collector
    # that asks again before the file is gone keeps the writer's original.
    key = blob_store.put(DATA, content_type="image/png")
    rows: set[str] = set()
    calls = 0

    def referenced(candidates: set[str]) -> set[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            found = candidates & rows
            rows.add(key)  # the writer commits its row...
            blob_store.put(DATA, content_type="image/png")  # ...and stores the same bytes
            return found
        return candidates & rows

    assert blob_store.delete_unreferenced([key], referenced) == []
    assert blob_store.get(key) == DATA
    assert blob_store.iter_keys() == [key]


def test_list_blobs_gives_size_and_time_of_writing(blob_store: BlobStore) -> None:
    before = time.time() - 5  # S3 and file systems keep whole or coarse seconds
    other = blob_store.put(b"other", content_type="image/png")
    blob_store.put(DATA, content_type="image/png")
    listed = blob_store.list_blobs()
    assert [b.name for b in listed] == sorted([KEY, other])
    assert {b.name: b.size for b in listed} == {KEY: len(DATA), other: 5}
    assert all(before <= b.modified <= time.time() + 5 for b in listed)


class _CollectorDied(Exception):
    pass


def _interrupted_delete(blob_store: BlobStore, key: str) -> None:
    """A collector that sets `key` aside and dies before it asks the catalog again."""
    calls = 0

    def referenced(candidates: set[str]) -> set[str]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise _CollectorDied
        return set()

    with pytest.raises(_CollectorDied):
        blob_store.delete_unreferenced([key], referenced)


@pytest.mark.parametrize("still_referenced", [True, False])
def test_clean_leftovers_finishes_an_interrupted_delete(
    blob_store: BlobStore, still_referenced: bool
) -> None:
    key = blob_store.put(DATA, content_type="image/png")
    _interrupted_delete(blob_store, key)
    assert not blob_store.exists(key)  # set aside, neither kept nor gone

    def referenced(candidates: set[str]) -> set[str]:
        return candidates if still_referenced else set()

    # Young leftovers may be a collector's at work right now: found only once old enough.
    assert blob_store.clean_leftovers(referenced, older_than=time.time() - 60) == []
    later = time.time() + 60
    found = blob_store.clean_leftovers(referenced, older_than=later, fix=False)
    assert len(found) == 1 and KEY in found[0]
    assert not blob_store.exists(key)  # fix=False changes nothing
    assert blob_store.clean_leftovers(referenced, older_than=later) == found
    assert blob_store.exists(key) is still_referenced
    if still_referenced:
        assert blob_store.get(key) == DATA
    assert blob_store.clean_leftovers(referenced, older_than=later) == []
    assert blob_store.iter_keys() == ([key] if still_referenced else [])
