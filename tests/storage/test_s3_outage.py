"""An S3 blob store that goes down mid-work, against a real SeaweedFS that the test stops and
starts again (same directory, same ports).

While it is down: an upload is refused with a 503 that names the bucket, and leaves nothing
behind (no record, no image, no job); thumbnails answer 503 and /readyz says the blobs are not
ok; searches go on (the vectors are not in S3); an original is still redirected to S3 (the URL
is signed locally), where the client's download fails. Enrichment that needs an original waits
without spending its attempts. Once S3 is back, the waiting enrichment finishes, uploads work
again, and the originals and thumbnails are served.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from backends.s3 import SKIP_ENV, SeaweedProcess
from lookalike.api.app import create_app
from lookalike.catalog import Image, ImageStage, Job, Record
from lookalike.composition import Lookalike
from support import make_settings, wait_until

if os.environ.get(SKIP_ENV) == "1":
    pytest.importorskip("boto3")

BUCKET = "outage"
PREFIX = "deployments/outage"
WHERE = f"s3://{BUCKET}/{PREFIX}/"
BEFORE = ["chelsea", "coffee", "rocket"]
LATE = "camera"  # ingested just before the outage, its enrichment not yet run
DURING = "coins"  # refused during the outage, accepted after it


def upload(client: TestClient, name: str, data: bytes, *, wait: bool = True) -> Any:
    return client.post(
        f"/api/collections/shop/records?wait={str(wait).lower()}",
        data={"name": name},
        files=[("images", (f"{name}.png", data, "image/png"))],
    )


def added(client: TestClient, name: str, data: bytes, *, wait: bool = True) -> dict[str, Any]:
    r = upload(client, name, data, wait=wait)
    assert r.status_code == 201, r.text
    (result,) = r.json()["results"]
    assert result["status"] == "added", result
    return result  # type: ignore[no-any-return]


def blobs_check(client: TestClient) -> tuple[int, dict[str, Any]]:
    r = client.get("/readyz")
    return r.status_code, next(s for s in r.json()["stores"] if s["role"] == "blobs")


def catalog_counts(rt: Lookalike) -> dict[str, int]:
    with rt.catalog.session() as session:
        return {
            "records": session.scalar(select(func.count()).select_from(Record)) or 0,
            "images": session.scalar(select(func.count()).select_from(Image)) or 0,
            "jobs": session.scalar(select(func.count()).select_from(Job)) or 0,
        }


def stage_errors(rt: Lookalike) -> list[tuple[str, str, str | None]]:
    """Every failed stage with its error: what an assertion shows when one failed."""
    with rt.catalog.session() as session:
        rows = session.scalars(select(ImageStage).where(ImageStage.status == "failed"))
        return [(s.image_id, s.stage, s.error) for s in rows]


def stages_of(rt: Lookalike, image_id: str) -> dict[str, tuple[str, int]]:
    with rt.catalog.session() as session:
        rows = session.scalars(select(ImageStage).where(ImageStage.image_id == image_id))
        return {s.stage: (s.status, s.attempts) for s in rows}


def test_an_s3_outage_refuses_uploads_cleanly_and_enrichment_waits(
    tmp_path: Path,
    models_dir: Path,
    photos: dict[str, bytes],
    private_seaweed: SeaweedProcess,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = private_seaweed
    server.client().create_bucket(Bucket=BUCKET)
    settings = make_settings(
        tmp_path / "data",
        models_dir,
        blobs=f"s3://{BUCKET}/{PREFIX}",
        s3_endpoint=server.endpoint,
        nsfw=False,
    )
    with Lookalike(settings) as rt, TestClient(create_app(runtime=rt)) as client:
        assert client.post("/api/collections", json={"name": "shop"}).status_code == 201
        kept = {name: added(client, name, photos[name]) for name in BEFORE}
        assert wait_until(lambda: rt.enrichment.queue.outstanding() == 0, timeout=120)
        coffee = kept["coffee"]["image_id"]
        assert client.get(f"/api/images/{coffee}/thumbnail").status_code == 200

        # One more image whose enrichment (the thumbnail among it) has not run when S3 goes.
        rt.enrichment.stop()
        late = added(client, LATE, photos[LATE], wait=False)["image_id"]
        rt.ingest.wait_idle()
        assert stages_of(rt, late)["thumbnail"] == ("pending", 0)

        server.stop()
        before = catalog_counts(rt)

        # An upload is refused as a whole, with the store's own error, and nothing is kept.
        r = upload(client, DURING, photos[DURING])
        assert r.status_code == 503, r.text
        error = r.json()["error"]
        assert error["code"] == "blob_store_unavailable"
        assert WHERE in error["message"]
        assert catalog_counts(rt) == before
        with rt.catalog.session() as session:
            sha = hashlib.sha256(photos[DURING]).hexdigest()
            assert session.scalar(select(Image).where(Image.sha256 == sha)) is None
            assert session.scalar(select(Record).where(Record.name == DURING)) is None
            assert not session.scalars(select(Job).where(Job.status != "done")).all()

        # Thumbnails come from S3: 503 naming it; /readyz says the blobs are down.
        r = client.get(f"/api/images/{coffee}/thumbnail")
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "blob_store_unavailable"
        assert WHERE in r.json()["error"]["message"]
        status, blobs = blobs_check(client)
        assert status == 503 and not blobs["ok"]
        # An original is still a redirect (presigning is local), to an S3 that does not answer.
        r = client.get(f"/api/images/{coffee}/original", follow_redirects=False)
        assert r.status_code == 307
        with pytest.raises(httpx.ConnectError):
            httpx.get(r.headers["location"])

        # Searches need no S3: by a stored image, and by an uploaded one (never stored).
        r = client.post("/api/search/similar", json={"collection": "shop", "image_id": coffee})
        assert r.status_code == 200, r.text
        r = client.post(
            "/api/search/similar",
            data={"collection": "shop", "limit": "1"},
            files={"file": ("q.png", photos["coffee"], "image/png")},
        )
        assert r.status_code == 200, r.text
        assert r.json()["hits"][0]["image_id"] == coffee

        # Enrichment meets the outage: it hands its claim back untried, and waits.
        with caplog.at_level(logging.WARNING, logger="lookalike.enrichment.runner"):
            rt.enrichment.start()
            assert wait_until(
                lambda: "enrichment waits for a store that is down" in caplog.text, timeout=60
            )
        assert wait_until(lambda: stages_of(rt, late)["thumbnail"] == ("pending", 0), timeout=30)
        assert not stage_errors(rt)

        server.start()
        status, blobs = blobs_check(client)
        assert status == 200 and blobs["ok"]

        # The waiting enrichment is done now, on its first counted try.
        assert wait_until(lambda: rt.enrichment.queue.outstanding() == 0, timeout=120)
        late_stages = stages_of(rt, late)
        assert late_stages["thumbnail"] == ("done", 1), (late_stages, stage_errors(rt))
        with rt.catalog.session() as session:
            assert session.get(Image, late).thumbnail_key is not None  # type: ignore[union-attr]
        assert not stage_errors(rt)

        # Uploads work again; originals (from S3, by redirect) and thumbnails are served.
        again = added(client, DURING, photos[DURING])["image_id"]
        for image_id, name in ((again, DURING), (late, LATE), (coffee, "coffee")):
            r = client.get(f"/api/images/{image_id}/original", follow_redirects=False)
            assert r.status_code == 307, r.text
            assert r.headers["location"].startswith(f"{server.endpoint}/{BUCKET}/{PREFIX}/")
            assert httpx.get(r.headers["location"]).content == photos[name]
            r = client.get(f"/api/images/{image_id}/thumbnail")
            assert r.status_code == 200 and r.content[:4] == b"RIFF", name
