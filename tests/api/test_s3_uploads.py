"""Blobs on S3, through the API: presigned PUTs from S3 itself, ingest by key, originals by
presigned GET, and no original on the API's disk (against a real SeaweedFS).

The test client reaches only the app; what goes to S3 goes through httpx, as a browser's
request would, so S3's own checks of the signature, the expiry and the length are what answer.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from backends.s3 import SKIP_ENV, SeaweedS3, delete_under
from lookalike.api.app import create_app
from lookalike.auth.tokens import Principal
from lookalike.composition import Lookalike
from lookalike.core.errors import NotFound
from lookalike.ingest.uploads import presign_upload, take_upload
from support import make_settings, wait_until

if os.environ.get(SKIP_ENV) == "1":
    pytest.importorskip("boto3")

ULID = re.compile(r"uploads/[0-9A-Z]{26}")


@contextmanager
def _api(
    tmp_path: Path, models_dir: Path, server: SeaweedS3, bucket: str, **overrides: Any
) -> Iterator[tuple[TestClient, Lookalike, str]]:
    """An API whose blobs live under a prefix of their own in `bucket`; yields the client, the
    runtime and the prefix (emptied afterwards)."""
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    settings = make_settings(
        tmp_path / "data",
        models_dir,
        blobs=f"s3://{bucket}/{prefix}",
        s3_endpoint=server.endpoint,
        nsfw=False,
        **overrides,
    )
    try:
        with Lookalike(settings) as rt, TestClient(create_app(runtime=rt)) as client:
            assert client.post("/api/collections", json={"name": "up"}).status_code == 201
            yield client, rt, prefix
    finally:
        delete_under(server.client(), bucket, prefix)


@pytest.fixture
def api(
    tmp_path: Path, models_dir: Path, s3_env: SeaweedS3, s3_bucket: str
) -> Iterator[tuple[TestClient, Lookalike, str]]:
    with _api(tmp_path, models_dir, s3_env, s3_bucket) as value:
        yield value


def _staged(server: SeaweedS3, bucket: str, prefix: str) -> list[str]:
    answer = server.client().list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/uploads/")
    return sorted(item["Key"] for item in answer.get("Contents", []))


def _files_holding(root: Path, data: bytes) -> list[Path]:
    """Files under `root` that hold `data`, or are named by its sha256."""
    sha = hashlib.sha256(data).hexdigest()
    return [
        path
        for path in root.rglob("*")
        if path.is_file() and (sha in path.name or data in path.read_bytes())
    ]


def _big_png(seed: int = 1) -> bytes:
    """A noise PNG over 1 MiB: Starlette would spool it to a temporary file."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (700, 700, 3), dtype=np.uint8)).save(buf, "PNG")
    assert buf.tell() > 1024 * 1024
    return buf.getvalue()


def test_a_browser_upload_goes_to_the_bucket_and_never_to_disk(
    api: tuple[TestClient, Lookalike, str],
    s3_env: SeaweedS3,
    s3_bucket: str,
    photos: dict[str, bytes],
) -> None:
    client, rt, prefix = api
    data = photos["chelsea"]
    # As web/src/lib/upload.ts asks today: no size, then a PUT with the file's Content-Type.
    p = client.post("/api/images/presign", json={"collection": "up", "filename": "cat.png"})
    assert p.status_code == 201, p.text
    presigned = p.json()
    assert ULID.fullmatch(presigned["key"])
    assert presigned["method"] == "PUT" and presigned["headers"] == {}
    assert presigned["max_bytes"] == rt.settings.max_image_bytes
    assert presigned["url"].startswith(
        f"{s3_env.endpoint}/{s3_bucket}/{prefix}/{presigned['key']}?"
    )
    put = httpx.put(presigned["url"], content=data, headers={"Content-Type": "image/png"})
    assert put.status_code == 200, put.text
    # The API's own upload endpoint takes nothing in S3 mode.
    token_url = "/api/uploads/" + jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256")
    assert client.put(token_url, content=data).status_code == 404

    r = client.post("/api/images/ingest", json={"key": presigned["key"], "record": {"name": "Cat"}})
    assert r.status_code == 202, r.text
    result = r.json()
    assert result["status"] == "added"
    assert _staged(s3_env, s3_bucket, prefix) == []  # the bytes and the ticket are gone
    again = client.post("/api/images/ingest", json={"key": presigned["key"], "record_id": "x"})
    assert again.status_code == 404
    assert "ingested already" in again.json()["error"]["message"]
    assert rt.ingest.wait_idle(timeout=120)
    assert client.get(f"/api/images/{result['image_id']}").json()["status"] == "embedded"

    # The original: a redirect to a presigned GET that S3 answers as the validated type.
    original = client.get(f"/api/images/{result['image_id']}/original", follow_redirects=False)
    assert original.status_code == 307
    assert "private" in original.headers["cache-control"]
    location = original.headers["location"]
    assert location.startswith(f"{s3_env.endpoint}/{s3_bucket}/{prefix}/")
    served = httpx.get(location)
    assert served.status_code == 200
    assert served.content == data
    assert served.headers["content-type"] == "image/png"
    assert 'filename="cat.png"' in served.headers["content-disposition"]
    assert "immutable" in served.headers["cache-control"]

    assert _files_holding(rt.settings.data_dir, data) == []


def test_batch_uploads_stay_in_memory(
    api: tuple[TestClient, Lookalike, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, rt, _ = api
    spooled: list[object] = []
    real = tempfile.TemporaryFile

    def watched(*args: Any, **kwargs: Any) -> Any:
        spooled.append(args or kwargs)
        return real(*args, **kwargs)

    # Starlette's spool rolls over into tempfile.TemporaryFile, which on Linux has no name to
    # find on disk afterwards: watching the call is the one way to see it.
    monkeypatch.setattr(tempfile, "TemporaryFile", watched)
    data = _big_png()
    files = [("images", ("big.png", data, "image/png"))]
    r = client.post("/api/images/batch", data={"collection": "up"}, files=files)
    assert r.status_code == 202, r.text
    assert r.json()[0]["status"] == "added"
    assert spooled == []
    assert rt.ingest.wait_idle(timeout=120)
    assert _files_holding(rt.settings.data_dir, data) == []


def test_s3_refuses_tampered_expired_and_wrong_sized_uploads(
    api: tuple[TestClient, Lookalike, str],
    s3_env: SeaweedS3,
    s3_bucket: str,
    photos: dict[str, bytes],
) -> None:
    client, rt, prefix = api
    data = photos["coffee"]

    def presign(**extra: Any) -> dict[str, Any]:
        p = client.post("/api/images/presign", json={"collection": "up", **extra})
        assert p.status_code == 201, p.text
        return dict(p.json())

    tampered = presign(size=len(data))["url"]
    at = tampered.index("X-Amz-Signature=") + len("X-Amz-Signature=")
    tampered = tampered[:at] + ("0" if tampered[at] != "0" else "1") + tampered[at + 1 :]
    refused = httpx.put(tampered, content=data)
    assert refused.status_code == 403 and "SignatureDoesNotMatch" in refused.text

    # A URL made for `size` bytes takes no other length, a byte more or a byte less.
    sized = presign(size=len(data))
    for body in (data + b"!", data[:-1]):
        wrong = httpx.put(sized["url"], content=body)
        assert wrong.status_code == 403, wrong.text
    assert httpx.put(sized["url"], content=data).status_code == 200

    over = client.post(
        "/api/images/presign",
        json={"collection": "up", "size": rt.settings.max_image_bytes + 1},
    )
    assert over.status_code == 413
    assert over.json()["error"]["code"] == "image_too_large"

    collection = client.get("/api/collections/up").json()["id"]
    short = presign_upload(
        rt.settings, rt.blobs, Principal("local", "default"), collection, ttl_s=1
    )

    def expired() -> bool:
        answer = httpx.put(short.url, content=data)
        return answer.status_code == 403 and "expired" in answer.text

    # Until it expires the URL works; each try before that only overwrites the staged object.
    assert wait_until(expired, timeout=15)
    assert _staged(s3_env, s3_bucket, prefix)  # the sized upload, waiting for its ingest


def test_an_upload_over_the_limit_is_refused_at_ingest(
    tmp_path: Path, models_dir: Path, s3_env: SeaweedS3, s3_bucket: str
) -> None:
    limit = 4096
    with _api(tmp_path, models_dir, s3_env, s3_bucket, max_image_bytes=limit) as (client, _, p):
        # Without a size the URL cannot bound the length; the ingest reads no byte of it.
        presigned = client.post("/api/images/presign", json={"collection": "up"}).json()
        assert httpx.put(presigned["url"], content=b"x" * (limit + 1)).status_code == 200
        r = client.post("/api/images/ingest", json={"key": presigned["key"], "record_id": "x"})
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "image_too_large"
        assert _staged(s3_env, s3_bucket, p) == []
        empty = client.post("/api/images/presign", json={"collection": "up"}).json()
        assert httpx.put(empty["url"], content=b"").status_code == 200
        r = client.post("/api/images/ingest", json={"key": empty["key"], "record_id": "x"})
        assert r.status_code == 422 and "empty" in r.json()["error"]["message"]


def test_unknown_foreign_and_unsent_keys_are_named(
    api: tuple[TestClient, Lookalike, str], s3_env: SeaweedS3, s3_bucket: str
) -> None:
    client, rt, prefix = api

    def ingest(key: str) -> Any:
        return client.post("/api/images/ingest", json={"key": key, "record_id": "x"})

    unknown = ingest("uploads/01JAAAAAAAAAAAAAAAAAAAAAAA")
    assert unknown.status_code == 404 and "nothing was uploaded" in unknown.text
    assert ingest("../../etc/passwd").status_code == 422

    presigned = client.post("/api/images/presign", json={"collection": "up"}).json()
    unsent = ingest(presigned["key"])
    assert unsent.status_code == 404 and "PUT the file" in unsent.text

    # Another tenant cannot take it, even knowing the key.
    assert httpx.put(presigned["url"], content=b"bytes").status_code == 200
    with pytest.raises(NotFound, match="nothing was uploaded"):
        take_upload(rt.settings, rt.blobs, "someone-else", presigned["key"])
    assert take_upload(rt.settings, rt.blobs, "default", presigned["key"]).data == b"bytes"

    # A ticket written into the bucket without the server's secret is no ticket.
    upload_id = presigned["key"].split("/")[1]
    forged = jwt.encode(
        {"aud": "lookalike-upload", "sub": upload_id, "tenant": "default", "collection": "c"},
        "not-the-server-secret-" * 2,
        algorithm="HS256",
    )
    s3_env.client().put_object(
        Bucket=s3_bucket, Key=f"{prefix}/uploads/{upload_id}.ticket", Body=forged.encode()
    )
    refused = ingest(presigned["key"])
    assert refused.status_code == 404 and "nothing was uploaded" in refused.text
