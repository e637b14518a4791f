"""What only the local backend promises: its layout on disk, atomic writes, file paths."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from lookalike.core.errors import NotFound, StorageError
from lookalike.storage import LocalBlobStore

DATA = b"a picture, more or less"
KEY = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


def test_files_are_sharded_by_hash(store: LocalBlobStore) -> None:
    store.put(DATA, content_type="image/png")
    path = store.root / KEY[:2] / KEY[2:4] / KEY
    assert path.read_bytes() == DATA
    assert store.path_for(KEY) == path


def test_no_temporary_files_are_left(store: LocalBlobStore) -> None:
    for i in range(10):
        store.put(f"blob {i}".encode(), content_type="image/png")
    names = [name for _, _, files in os.walk(store.root) for name in files]
    assert len(names) == 10
    assert not [name for name in names if name.startswith(".")]


def test_a_failed_write_leaves_nothing_behind(
    store: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(StorageError, match="No space left"):
        store.put(DATA, content_type="image/png")
    monkeypatch.undo()
    assert store.iter_keys() == []
    assert [name for _, _, files in os.walk(store.root) for name in files] == []


def test_put_repairs_a_damaged_file(store: LocalBlobStore) -> None:
    store.put(DATA, content_type="image/png")
    store.path_for(KEY).write_bytes(DATA[:5])  # e.g. an interrupted copy from a backup
    assert store.put(DATA, content_type="image/png") == KEY
    assert store.get(KEY) == DATA


def test_iter_keys_ignores_strangers(store: LocalBlobStore) -> None:
    store.put(DATA, content_type="image/png")
    shard = store.root / KEY[:2] / KEY[2:4]
    (shard / ".tmp-123").write_bytes(b"half a blob")
    (shard / "notes.txt").write_text("hello")
    (store.root / "README").write_text("hello")
    (store.root / "zz").mkdir()
    misplaced = "0" * 64
    (shard / misplaced).write_bytes(b"wrong shard")
    assert store.iter_keys() == [KEY]


def test_path_for_missing_or_bad_key(store: LocalBlobStore) -> None:
    with pytest.raises(NotFound):
        store.path_for(KEY)
    with pytest.raises(NotFound):
        store.path_for("../" + KEY)


def test_a_new_store_on_existing_files_sees_them(tmp_path: Path) -> None:
    LocalBlobStore(tmp_path / "blobs").put(DATA, content_type="image/png")
    reopened = LocalBlobStore(tmp_path / "blobs")
    assert reopened.iter_keys() == [KEY]
    assert reopened.get(KEY) == DATA
