"""What only the S3 backend promises: its object names, multipart uploads, presigned URLs, clear
errors, and a whole runtime whose originals live in the bucket (against a real SeaweedFS)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select

from backends.s3 import SKIP_ENV, SeaweedS3
from lookalike.api.app import create_app
from lookalike.catalog import Image
from lookalike.composition import Lookalike
from lookalike.core.errors import Misconfigured, NotFound, StorageError
from lookalike.ingest.pipeline import IngestFile, NewRecord
from lookalike.records.service import create_collection
from lookalike.records.thumbnails import thumbnail_of
from lookalike.search import search_similar
from lookalike.storage import LocalBlobStore, open_blob_store
from support import free_port, make_settings, settle

# Without SKIP_S3_TESTS=1 a missing boto3 is a collection error, never a silent skip.
if os.environ.get(SKIP_ENV) == "1":
    pytest.importorskip("boto3")
import boto3

from lookalike.storage.s3 import MULTIPART_THRESHOLD, S3BlobStore

DATA = b"a picture, more or less"
KEY = hashlib.sha256(DATA).hexdigest()
PREFIX = "deployments/one"


@pytest.fixture
def store(s3_env: SeaweedS3, s3_bucket: str) -> Iterator[S3BlobStore]:
    yield S3BlobStore(s3_bucket, PREFIX, endpoint_url=s3_env.endpoint)
    client = s3_env.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=s3_bucket, Key=item["Key"])


def test_objects_are_named_by_hash_under_the_prefix(store: S3BlobStore, s3_env: SeaweedS3) -> None:
    store.put(DATA, content_type="image/png")
    head = s3_env.client().head_object(Bucket=store.bucket, Key=f"{PREFIX}/{KEY}")
    assert head["ContentType"] == "image/png"
    assert head["ContentLength"] == len(DATA)
    assert store.object_key(KEY) == f"{PREFIX}/{KEY}"


def test_other_objects_in_the_bucket_are_not_blobs(store: S3BlobStore, s3_env: SeaweedS3) -> None:
    store.put(DATA, content_type="image/png")
    client = s3_env.client()
    other = hashlib.sha256(b"other").hexdigest()
    client.put_object(Bucket=store.bucket, Key=other, Body=b"other")  # outside the prefix
    client.put_object(Bucket=store.bucket, Key=f"{PREFIX}/notes.txt", Body=b"hello")
    client.put_object(Bucket=store.bucket, Key=f"{PREFIX}/sub/{other}", Body=b"other")
    assert store.iter_keys() == [KEY]
    assert not store.exists(other)


def test_a_blob_over_the_threshold_goes_up_in_parts(store: S3BlobStore, s3_env: SeaweedS3) -> None:
    data = bytes(range(256)) * (MULTIPART_THRESHOLD // 256) + b"!"  # the threshold + 1 byte
    key = store.put(data, content_type="application/octet-stream")
    assert key == hashlib.sha256(data).hexdigest()
    etag = s3_env.client().head_object(Bucket=store.bucket, Key=store.object_key(key))["ETag"]
    # A multipart object's ETag is "<md5 of the parts' md5s>-<number of parts>".
    assert etag.strip('"').endswith("-2")
    assert store.get(key) == data
    assert store.put(data, content_type="application/octet-stream") == key  # found, not resent


def test_a_blob_under_the_threshold_goes_up_in_one_piece(
    store: S3BlobStore, s3_env: SeaweedS3
) -> None:
    data = b"x" * (MULTIPART_THRESHOLD - 1)
    key = store.put(data, content_type="application/octet-stream")
    etag = s3_env.client().head_object(Bucket=store.bucket, Key=store.object_key(key))["ETag"]
    assert etag.strip('"') == hashlib.md5(data).hexdigest()


def test_presigned_get_url(store: S3BlobStore, s3_env: SeaweedS3) -> None:
    store.put(DATA, content_type="image/png")
    url = store.presigned_get_url(KEY, expires_in=60)
    assert url.startswith(f"{s3_env.endpoint}/{store.bucket}/{PREFIX}/{KEY}?")
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=60" in url
    answer = httpx.get(url)
    assert answer.status_code == 200
    assert answer.content == DATA
    assert answer.headers["content-type"] == "image/png"
    with pytest.raises(NotFound):
        store.presigned_get_url("../" + KEY)


def test_presigned_put_url_takes_only_the_bytes_it_was_signed_for(store: S3BlobStore) -> None:
    url, headers = store.presigned_put_url(KEY, content_type="image/png", expires_in=60)
    assert "X-Amz-Signature=" in url
    wrong = httpx.put(url, content=b"other bytes", headers=headers)
    assert wrong.status_code == 400
    assert not store.exists(KEY)
    right = httpx.put(url, content=DATA, headers=headers)
    assert right.status_code == 200, right.text
    assert store.iter_keys() == [KEY]
    assert store.get(KEY) == DATA
    assert httpx.get(store.presigned_get_url(KEY)).content == DATA


def test_download_url_names_the_type_and_the_file(store: S3BlobStore, tmp_path: Path) -> None:
    store.put(DATA, content_type="application/octet-stream")
    url = store.download_url(
        KEY, content_type="image/jpeg", filename='C:\\photos\\"Zoë" 1.jpg', expires_in=60
    )
    assert url is not None
    answer = httpx.get(url)
    assert answer.status_code == 200 and answer.content == DATA
    assert answer.headers["content-type"] == "image/jpeg"
    disposition = answer.headers["content-disposition"]
    assert disposition.startswith('inline; filename="_Zo__ 1.jpg"')  # no path, no quotes
    assert "filename*=UTF-8''%22Zo%C3%AB%22%201.jpg" in disposition
    local = LocalBlobStore(tmp_path)
    assert local.download_url(KEY, content_type="image/png", filename=None, expires_in=60) is None


def test_staging_is_apart_from_the_blobs(store: S3BlobStore, s3_env: SeaweedS3) -> None:
    staging = store.upload_staging()
    url, headers = staging.staging_put_url("UPLOAD1", expires_in=60, content_length=len(DATA))
    assert url.startswith(f"{s3_env.endpoint}/{store.bucket}/{PREFIX}/uploads/UPLOAD1?")
    assert headers == {}
    assert httpx.put(url, content=DATA, headers={"Content-Type": "image/png"}).status_code == 200
    staging.staging_write("UPLOAD1.ticket", b"ticket")
    assert store.iter_keys() == [] and store.list_blobs() == []
    assert sorted(o.name for o in staging.staging_list()) == ["UPLOAD1", "UPLOAD1.ticket"]
    size, body = staging.staging_open("UPLOAD1")
    with body:
        assert (size, body.read()) == (len(DATA), DATA)
    staging.staging_delete(["UPLOAD1", "UPLOAD1.ticket", "absent"])
    assert staging.staging_list() == []
    for bad in ("../" + KEY, "a/b", "", ".hidden"):
        with pytest.raises(NotFound):
            staging.staging_open(bad)
        with pytest.raises(NotFound):
            staging.staging_put_url(bad, expires_in=60)


def test_clean_leftovers_aborts_abandoned_multipart_uploads(
    store: S3BlobStore, s3_env: SeaweedS3
) -> None:
    client = s3_env.client()
    started = client.create_multipart_upload(Bucket=store.bucket, Key=f"{PREFIX}/{KEY}")
    client.upload_part(
        Bucket=store.bucket,
        Key=f"{PREFIX}/{KEY}",
        UploadId=started["UploadId"],
        PartNumber=1,
        Body=b"p" * 1024,
    )

    def pending() -> list[str]:
        uploads = client.list_multipart_uploads(Bucket=store.bucket, Prefix=PREFIX)
        return [u["UploadId"] for u in uploads.get("Uploads", [])]

    assert pending() == [started["UploadId"]]
    assert store.clean_leftovers(lambda keys: set(), older_than=time.time() - 60) == []
    found = store.clean_leftovers(lambda keys: set(), older_than=time.time() + 60)
    assert found == [f"multipart:{PREFIX}/{KEY}"]
    assert pending() == []


def test_an_unreachable_endpoint_is_a_storage_error(s3_env: SeaweedS3, s3_bucket: str) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    where = rf"s3://{s3_bucket}/{PREFIX}/ at {endpoint}"
    with pytest.raises(StorageError, match=rf"{where}.*LOOKALIKE_S3_ENDPOINT"):
        S3BlobStore(s3_bucket, PREFIX, endpoint_url=endpoint)


def test_an_endpoint_lost_after_start_is_a_storage_error(
    store: S3BlobStore, s3_env: SeaweedS3
) -> None:
    store.put(DATA, content_type="image/png")
    # The server goes away: the store now talks to a port nothing listens on.
    store._client = _client_at(f"http://127.0.0.1:{free_port()}")
    for call in (
        lambda: store.get(KEY),
        lambda: store.exists(KEY),
        lambda: store.put(b"new", content_type="image/png"),
        lambda: store.delete(KEY),
        store.iter_keys,
    ):
        with pytest.raises(StorageError, match=r"Could not .* in the S3 blob store s3://"):
            call()


def test_a_missing_bucket_is_named(s3_env: SeaweedS3) -> None:
    with pytest.raises(Misconfigured, match="'no-such-bucket' does not exist"):
        S3BlobStore("no-such-bucket", endpoint_url=s3_env.endpoint)


def test_settings_choose_the_store(tmp_path: Path, s3_env: SeaweedS3, s3_bucket: str) -> None:
    local = open_blob_store(make_settings(tmp_path / "data", tmp_path / "models"))
    assert isinstance(local, LocalBlobStore) and local.root == tmp_path / "data" / "blobs"
    elsewhere = make_settings(tmp_path / "data", tmp_path / "models", blobs=str(tmp_path / "b"))
    moved = open_blob_store(elsewhere)
    assert isinstance(moved, LocalBlobStore) and moved.root == tmp_path / "b"
    s3 = open_blob_store(
        make_settings(
            tmp_path / "data",
            tmp_path / "models",
            blobs=f"s3://{s3_bucket}/{PREFIX}/",
            s3_endpoint=s3_env.endpoint,
        )
    )
    assert isinstance(s3, S3BlobStore)
    assert (s3.bucket, s3.prefix, s3.endpoint_url) == (s3_bucket, f"{PREFIX}/", s3_env.endpoint)
    with pytest.raises(ValidationError, match="s3://BUCKET/PREFIX"):
        make_settings(tmp_path / "data", tmp_path / "models", blobs="s3://X_/p")


def test_a_runtime_keeps_its_originals_in_the_bucket(
    tmp_path: Path,
    models_dir: Path,
    photos: dict[str, bytes],
    s3_env: SeaweedS3,
    s3_bucket: str,
) -> None:
    data_dir = tmp_path / "data"
    settings = make_settings(
        data_dir,
        models_dir,
        blobs=f"s3://{s3_bucket}/{PREFIX}",
        s3_endpoint=s3_env.endpoint,
        nsfw=False,
    )
    chosen = {name: photos[name] for name in ("astronaut", "chelsea", "coffee")}
    with Lookalike(settings) as rt, TestClient(create_app(runtime=rt)) as client:
        assert isinstance(rt.blobs, S3BlobStore)
        coll = create_collection(rt, "default", "photos")
        items = [
            (NewRecord(name=n, owner="o"), IngestFile(d, f"{n}.png")) for n, d in chosen.items()
        ]
        results = rt.ingest.add_many(coll, items, wait=True)
        assert [r.status for r in results] == ["added"] * len(chosen)
        settle(rt)
        with rt.catalog.session() as session:
            images = list(session.scalars(select(Image)))
            session.expunge_all()
        originals = {hashlib.sha256(d).hexdigest() for d in chosen.values()}
        assert {i.blob_key for i in images} == originals
        stored = set(S3BlobStore(s3_bucket, PREFIX, endpoint_url=s3_env.endpoint).iter_keys())
        assert originals <= stored
        thumbnails = {i.thumbnail_key for i in images}
        assert None not in thumbnails and thumbnails <= stored
        # Nothing of the blobs on local disk.
        blobs_dir = data_dir / "blobs"
        assert not blobs_dir.exists() or not any(p.is_file() for p in blobs_dir.rglob("*"))

        by_name = {r.filename: r.image_id for r in results}
        hits = search_similar(rt, "default", coll.id, image_bytes=chosen["coffee"], limit=1)
        assert hits[0].image_id == by_name["coffee.png"]
        image = next(i for i in images if i.id == by_name["coffee.png"])
        assert thumbnail_of(rt, image)[:4] == b"RIFF"  # WebP
        original = client.get(f"/api/images/{image.id}/original", follow_redirects=False)
        assert original.status_code == 307  # S3 serves it (tests/api/test_s3_uploads.py)
        assert httpx.get(original.headers["location"]).content == chosen["coffee"]
        assert client.get(f"/api/images/{image.id}/thumbnail").status_code == 200

        # S3 gone: the API answers with the domain error, not a stack trace.
        rt.blobs._client = _client_at(f"http://127.0.0.1:{free_port()}")
        lost = client.get(f"/api/images/{image.id}/thumbnail")
        assert lost.status_code == 503
        error = lost.json()["error"]
        assert error["code"] == "blob_store_unavailable"
        assert f"s3://{s3_bucket}/{PREFIX}/" in error["message"]


def _client_at(endpoint: str) -> object:
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(
            s3={"addressing_style": "path"}, retries={"max_attempts": 1}, connect_timeout=1
        ),
    )
