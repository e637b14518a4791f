"""Presigned upload → ingest by key → job status; batch upload; back-pressure."""

from __future__ import annotations

from fastapi.testclient import TestClient
from httpx import Response

from badfiles import text_named_jpg
from lookalike.api.app import create_app
from lookalike.composition import Lookalike
from support import make_settings, wait_until


def _collection(client: TestClient) -> None:
    assert client.post("/api/collections", json={"name": "up"}).status_code == 201


def _job_status(client: TestClient, job_id: str) -> str:
    r = client.get(f"/api/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return str(r.json()["status"])


def test_presigned_upload_then_ingest(client: TestClient, photos: dict[str, bytes]) -> None:
    _collection(client)
    p = client.post("/api/images/presign", json={"collection": "up", "filename": "cat.png"})
    assert p.status_code == 201, p.text
    presigned = p.json()
    assert presigned["method"] == "PUT"
    assert presigned["key"].startswith("uploads/")
    r = client.put(presigned["url"], content=photos["chelsea"])
    assert r.status_code == 201, r.text
    assert r.json()["key"] == presigned["key"]

    r = client.post(
        "/api/images/ingest",
        json={"key": presigned["key"], "record": {"name": "Cat", "tags": ["pet"]}},
    )
    assert r.status_code == 202, r.text
    result = r.json()
    assert result["status"] == "added"
    assert wait_until(lambda: _job_status(client, result["job_id"]) == "done")
    image = client.get(f"/api/images/{result['image_id']}").json()
    assert image["status"] == "embedded"
    assert image["filename"] == "cat.png"
    # The staged bytes are gone once ingested.
    again = client.post("/api/images/ingest", json={"key": presigned["key"], "record_id": "x"})
    assert again.status_code == 404


def test_upload_url_is_checked(client: TestClient, photos: dict[str, bytes]) -> None:
    _collection(client)
    url = client.post("/api/images/presign", json={"collection": "up"}).json()["url"]
    forged = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")
    assert client.put(forged, content=photos["coins"]).status_code == 401
    assert client.put(url, content=b"").status_code == 422
    r = client.post("/api/images/ingest", json={"key": "../../etc/passwd", "record_id": "x"})
    assert r.status_code == 422


def test_bad_upload_is_rejected_with_reason(client: TestClient) -> None:
    _collection(client)
    p = client.post("/api/images/presign", json={"collection": "up"}).json()
    assert client.put(p["url"], content=text_named_jpg()).status_code == 201
    r = client.post("/api/images/ingest", json={"key": p["key"], "record": {"name": "x"}})
    assert r.status_code == 202
    assert r.json()["status"] == "rejected"
    assert r.json()["error"]["code"] == "invalid_image"
    assert client.get("/api/collections/up/records").json()["total"] == 0


def test_batch_upload(client: TestClient, photos: dict[str, bytes]) -> None:
    _collection(client)
    files = [("images", (f"{n}.png", photos[n], "image/png")) for n in ("coffee", "rocket")]
    files.append(("images", ("dup.png", photos["coffee"], "image/png")))
    r = client.post("/api/images/batch", data={"collection": "up", "tags": "b"}, files=files)
    assert r.status_code == 202, r.text
    results = r.json()
    # The two copies of the same bytes race; exactly one is added.
    assert sorted(x["status"] for x in results) == ["added", "added", "duplicate"]
    assert results[0]["image_id"] == results[2]["image_id"]
    for x in results:
        if x["status"] == "added":
            assert wait_until(lambda x=x: _job_status(client, x["job_id"]) == "done")
    records = client.get("/api/collections/up/records").json()["items"]
    names = {rec["name"] for rec in records}
    assert len(names) == 2
    assert "rocket" in names
    assert names & {"coffee", "dup"}  # whichever copy of the coffee photo won
    jobs = client.get("/api/collections/up/jobs?status=done").json()
    assert len(jobs) == 2


def test_full_queue_answers_503(tmp_path, models_dir, photos) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path / "q", models_dir, queue_size=1)
    with Lookalike(settings) as rt, TestClient(create_app(runtime=rt)) as client:
        _collection(client)
        rt.ingest.pause()

        def post(name: str) -> Response:
            files = [("images", (f"{name}.png", photos[name], "image/png"))]
            return client.post("/api/images/batch", data={"collection": "up"}, files=files)

        assert post("coins").status_code == 202
        assert wait_until(lambda: rt.ingest.queue_depth == 0)  # held by the paused embedder
        assert post("camera").status_code == 202  # fills the one queue slot
        refused = post("rocket")
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "5"
        assert refused.json()["error"]["code"] == "busy"
        rt.ingest.unpause()
        assert rt.ingest.wait_idle(timeout=60)
        assert post("rocket").status_code == 202
