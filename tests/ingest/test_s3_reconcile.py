"""The reconciler's storage sweep: unreferenced blobs after a grace period, abandoned staged
uploads, leftovers of interrupted deletes, on the local store and on a real SeaweedFS."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from backends.s3 import SKIP_ENV, SeaweedS3, delete_under
from lookalike.auth.tokens import Principal
from lookalike.catalog import Image
from lookalike.composition import Lookalike
from lookalike.core.errors import NotFound
from lookalike.ingest.pipeline import IngestFile, NewRecord
from lookalike.ingest.reconcile import BLOB_GRACE_S, sweep_storage
from lookalike.ingest.uploads import UPLOAD_TTL_S, presign_upload, receive_upload, take_upload
from lookalike.records.service import create_collection, delete_record
from support import make_settings, settle

if os.environ.get(SKIP_ENV) == "1":
    pytest.importorskip("boto3")

OWNER = Principal("o", "default")


@pytest.fixture(params=["local", "s3"])
def rt(request: pytest.FixtureRequest, tmp_path: Path, models_dir: Path) -> Iterator[Lookalike]:
    overrides: dict[str, object] = {"nsfw": False}
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    if request.param == "s3":
        server: SeaweedS3 = request.getfixturevalue("s3_env")
        bucket: str = request.getfixturevalue("s3_bucket")
        overrides |= {"blobs": f"s3://{bucket}/{prefix}", "s3_endpoint": server.endpoint}
    try:
        with Lookalike(make_settings(tmp_path / "data", models_dir, **overrides)) as runtime:
            yield runtime
    finally:
        if request.param == "s3":
            delete_under(server.client(), bucket, prefix)


def _referenced_keys(rt: Lookalike) -> set[str]:
    with rt.catalog.session() as session:
        rows = session.execute(select(Image.blob_key, Image.thumbnail_key)).all()
    return {key for row in rows for key in row if key}


def _ingest(rt: Lookalike, photos: dict[str, bytes], *names: str) -> list[str]:
    coll = create_collection(rt, "default", f"c{uuid.uuid4().hex[:6]}")
    items = [(NewRecord(name=n, owner="o"), IngestFile(photos[n], f"{n}.png")) for n in names]
    results = rt.ingest.add_many(coll, items, wait=True)
    assert [r.status for r in results] == ["added"] * len(names)
    settle(rt)
    return [str(r.record_id) for r in results]


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _stage(rt: Lookalike, data: bytes) -> str:
    """A presigned upload, sent as a client would; returns its key."""
    coll = create_collection(rt, "default", f"s{uuid.uuid4().hex[:6]}")
    presigned = presign_upload(rt.settings, rt.blobs, OWNER, coll.id)
    if rt.blobs.upload_staging() is None:
        token = presigned.url.rsplit("/", 1)[1]
        received = asyncio.run(receive_upload(rt.settings, rt.blobs, token, _chunks(data)))
        assert received == presigned.key
    else:
        assert httpx.put(presigned.url, content=data).status_code == 200
    return presigned.key


def test_orphan_blobs_go_after_the_grace_period(
    rt: Lookalike, photos: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    records = _ingest(rt, photos, "astronaut", "coffee")
    kept = _referenced_keys(rt)
    assert len(kept) == 4  # two originals, two thumbnails
    orphan = rt.blobs.put(b"no image names these bytes", content_type="image/png")

    young = sweep_storage(rt)
    assert young.orphan_blobs == []  # it may be a thumbnail whose row is on its way
    assert rt.blobs.exists(orphan)

    later = time.time() + BLOB_GRACE_S + 1
    check = sweep_storage(rt, now=later, fix=False)
    assert check.orphan_blobs == [orphan] and not check.fixed
    assert rt.blobs.exists(orphan)
    assert sweep_storage(rt, now=later).orphan_blobs == [orphan]
    assert set(rt.blobs.iter_keys()) == kept

    # A record deleted while its blobs could not be removed: the sweep finishes the job.
    coffee = hashlib.sha256(photos["coffee"]).hexdigest()
    monkeypatch.setattr(rt.blobs, "delete_unreferenced", lambda keys, referenced: [])
    delete_record(rt, "default", records[1])
    monkeypatch.undo()
    assert rt.blobs.exists(coffee)
    swept = sweep_storage(rt, now=later)
    assert coffee in swept.orphan_blobs and len(swept.orphan_blobs) == 2  # and its thumbnail
    assert set(rt.blobs.iter_keys()) == _referenced_keys(rt) and len(_referenced_keys(rt)) == 2


def test_abandoned_uploads_go_after_the_url_lifetime(
    rt: Lookalike, photos: dict[str, bytes]
) -> None:
    key = _stage(rt, photos["chelsea"])
    assert sweep_storage(rt).stale_uploads == []
    assert take_upload(rt.settings, rt.blobs, "default", key).data == photos["chelsea"]

    later = time.time() + UPLOAD_TTL_S + 1
    assert sweep_storage(rt, now=later, fix=False).stale_uploads == [key]
    assert sweep_storage(rt, now=later).stale_uploads == [key]
    with pytest.raises(NotFound):
        take_upload(rt.settings, rt.blobs, "default", key)
    assert sweep_storage(rt, now=later).stale_uploads == []
    staging = rt.blobs.upload_staging()
    if staging is not None:
        assert staging.staging_list() == []
    else:
        assert list((rt.settings.data_dir / "uploads").iterdir()) == []


def test_an_interrupted_delete_is_finished(rt: Lookalike, photos: dict[str, bytes]) -> None:
    _ingest(rt, photos, "rocket")
    kept = _referenced_keys(rt)
    orphan = rt.blobs.put(b"nobody's", content_type="image/png")

    questions: list[set[str]] = []

    def dies_on_second_question(keys: set[str]) -> set[str]:
        questions.append(keys)
        if len(questions) > 1:
            raise RuntimeError("the collector died")
        return set()

    # A collector that wrongly thought every blob unused, and died before asking again: the
    # originals are set aside, not gone, and the sweep puts back what the catalog names.
    with pytest.raises(RuntimeError):
        rt.blobs.delete_unreferenced([*kept, orphan], dies_on_second_question)
    assert rt.blobs.iter_keys() == []

    assert sweep_storage(rt).leftovers == []  # maybe a collector at work: not yet
    swept = sweep_storage(rt, now=time.time() + BLOB_GRACE_S + 1)
    assert len(swept.leftovers) == 3
    assert set(rt.blobs.iter_keys()) == kept
    rocket = hashlib.sha256(photos["rocket"]).hexdigest()
    assert rt.blobs.get(rocket) == photos["rocket"]
    assert sweep_storage(rt, now=time.time() + BLOB_GRACE_S + 1).leftovers == []
