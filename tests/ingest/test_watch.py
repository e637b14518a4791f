"""Folder watch: files already there, new files, changed files."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import select

from lookalike.catalog import Image, Record
from lookalike.composition import Lookalike
from lookalike.ingest.watcher import FolderWatcher
from lookalike.records.service import create_collection
from support import wait_until


def _records(rt: Lookalike) -> dict[str, list[str]]:
    with rt.catalog.session() as s:
        return {
            r.name: [i.sha256 for i in r.images if i.status == "embedded"]
            for r in s.scalars(select(Record)).all()
        }


def test_watch_picks_up_existing_new_and_changed_files(
    rt: Lookalike, tmp_path: Path, photos: dict[str, bytes]
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "cat.png").write_bytes(photos["chelsea"])
    coll = create_collection(rt, "default", "watched")
    watcher = FolderWatcher(rt, coll, inbox, owner="w", settle_s=0.2)
    watcher.start()
    try:
        assert wait_until(lambda: len(_records(rt).get("cat", [])) == 1)
        staging = tmp_path / "staging.png"
        staging.write_bytes(photos["coffee"])
        shutil.move(staging, inbox / "cup.png")
        (inbox / "sub").mkdir()
        (inbox / "sub" / "rocket.png").write_bytes(photos["rocket"])
        assert wait_until(lambda: {"cat", "cup", "rocket"} <= set(_records(rt)))

        old = _records(rt)["cat"]
        (inbox / "cat.png").write_bytes(photos["coins"])  # the file changes
        assert wait_until(lambda: _records(rt)["cat"] != old and len(_records(rt)["cat"]) == 1)
        # The old image's vector and blobs go right after its row: poll, do not race.
        assert wait_until(lambda: rt.vectors.count(coll.id) == 3)
        assert wait_until(lambda: len(rt.blobs.iter_keys()) == 6)  # old original + thumbnail gone
        with rt.catalog.session() as s:
            assert len(s.scalars(select(Image)).all()) == 3
    finally:
        watcher.stop()
