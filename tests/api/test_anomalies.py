"""The anomaly review queue over HTTP: GET /api/qa/anomalies, review, recompute, feedback."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from lookalike.core.config import Settings
from lookalike.demo.samples import derived_set
from support import bearer, noise_png, settle, wait_until


@pytest.fixture
def client(secured_client: TestClient) -> TestClient:
    return secured_client


def _collection(
    client: TestClient, headers: dict[str, str], name: str, files: dict[str, bytes]
) -> tuple[str, dict[str, str]]:
    """A collection holding one record per file; returns its id and name -> image id."""
    coll = client.post("/api/collections", json={"name": name}, headers=headers)
    assert coll.status_code == 201, coll.text
    ids: dict[str, str] = {}
    for filename, data in files.items():
        r = client.post(
            f"/api/collections/{coll.json()['id']}/records?wait=true",
            headers=headers,
            data={"name": filename},
            files=[("images", (filename, data, "application/octet-stream"))],
        )
        assert r.status_code == 201, r.text
        ids[filename] = r.json()["results"][0]["image_id"]
    settle(client)
    return coll.json()["id"], ids


@pytest.fixture
def cats(client: TestClient, secured: Settings, photos: dict[str, bytes]) -> dict[str, Any]:
    """Tenant acme's collection "cats": the cat, three edited copies of it, and a noise image."""
    copies = derived_set(
        {"chelsea": photos["chelsea"]},
        transforms=[("jpeg", {"quality": 40}), ("crop", {"keep": 0.85}), ("flip", {})],
    )
    files = {"chelsea.png": photos["chelsea"]} | {d.name: d.data for d in copies}
    files["noise.png"] = noise_png()
    headers = bearer(secured, "alice", "acme")
    collection_id, ids = _collection(client, headers, "cats", files)
    return {"headers": headers, "collection_id": collection_id, "ids": ids}


def test_queue_lists_the_odd_image_first(client: TestClient, cats: dict[str, Any]) -> None:
    headers, ids = cats["headers"], cats["ids"]
    for sort in ("dnn", "density", "ood"):
        r = client.get(f"/api/qa/anomalies?collection=cats&sort={sort}", headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["total"] == len(ids) == len(body["items"])
        top = body["items"][0]
        assert top["image_id"] == ids["noise.png"], (sort, top)
        values = [item["scores"][sort] for item in body["items"]]
        assert values == sorted(values, reverse=True)
    assert set(top) == {
        "image_id",
        "record_id",
        "name",
        "scores",
        "reviewed",
        "reviewed_at",
        "reviewed_by",
        "review_note",
        "priority",
        "needs_review",
        "reasons",
        "preview_url",
    }
    assert top["name"] == "noise.png" and top["reviewed"] is False
    assert set(top["scores"]) == {"dnn", "density", "ood"}
    # The preview link works, and the image detail carries the same scores.
    assert client.get(top["preview_url"], headers=headers).status_code == 200
    detail = client.get(f"/api/images/{top['image_id']}", headers=headers).json()
    assert detail["anomaly"] == {**top["scores"], "reviewed_at": None}

    # By collection id too; paging with limit and offset.
    r = client.get(
        f"/api/qa/anomalies?collection={cats['collection_id']}&limit=2&offset=1", headers=headers
    )
    page = r.json()
    assert page["total"] == len(ids) and len(page["items"]) == 2
    assert page["items"][0]["image_id"] != ids["noise.png"]


def test_mark_reviewed_and_back(
    client: TestClient, cats: dict[str, Any], secured: Settings
) -> None:
    headers, noise = cats["headers"], cats["ids"]["noise.png"]
    bob = bearer(secured, "bob", "acme")
    r = client.post(
        f"/api/qa/anomalies/{noise}/review",
        headers=bob,
        json={"reviewed": True, "note": "scanner glitch"},
    )
    assert r.status_code == 200, r.text
    item = r.json()
    assert item["image_id"] == noise and item["reviewed"] is True
    assert item["reviewed_by"] == "bob" and item["review_note"] == "scanner glitch"
    assert item["reviewed_at"] and item["scores"]["dnn"] is not None

    queue = client.get("/api/qa/anomalies?collection=cats", headers=headers).json()
    assert noise not in [i["image_id"] for i in queue["items"]]
    assert queue["total"] == len(cats["ids"]) - 1
    done = client.get("/api/qa/anomalies?collection=cats&reviewed=true", headers=headers).json()
    assert [i["image_id"] for i in done["items"]] == [noise] and done["total"] == 1
    every = client.get("/api/qa/anomalies?collection=cats&reviewed=all", headers=headers).json()
    assert every["total"] == len(cats["ids"])
    detail = client.get(f"/api/images/{noise}", headers=headers).json()
    assert detail["anomaly"]["reviewed_at"] == item["reviewed_at"]

    r = client.post(f"/api/qa/anomalies/{noise}/review", headers=headers, json={"reviewed": False})
    assert r.status_code == 200
    assert (r.json()["reviewed"], r.json()["reviewed_by"], r.json()["review_note"]) == (
        False,
        None,
        None,
    )
    queue = client.get("/api/qa/anomalies?collection=cats", headers=headers).json()
    assert queue["items"][0]["image_id"] == noise


def test_min_score_filter(client: TestClient, cats: dict[str, Any]) -> None:
    headers = cats["headers"]
    everything = client.get("/api/qa/anomalies?collection=cats&sort=ood", headers=headers).json()
    threshold = everything["items"][1]["scores"]["ood"]
    r = client.get(
        f"/api/qa/anomalies?collection=cats&sort=ood&min_score={threshold}", headers=headers
    )
    assert r.json()["total"] == 2
    assert all(i["scores"]["ood"] >= threshold for i in r.json()["items"])


def test_feedback_from_the_queue(client: TestClient, cats: dict[str, Any]) -> None:
    headers = cats["headers"]
    top = client.get("/api/qa/anomalies?collection=cats", headers=headers).json()["items"][0]
    r = client.post(
        "/api/feedback",
        headers=headers,
        json={"image_id": top["image_id"], "action": "anomaly", "note": "not a photo"},
    )
    assert r.status_code == 201, r.text
    listed = client.get(f"/api/images/{top['image_id']}/feedback", headers=headers).json()
    assert [(f["action"], f["note"]) for f in listed["items"]] == [("anomaly", "not a photo")]


def test_recompute_job(client: TestClient, cats: dict[str, Any]) -> None:
    headers = cats["headers"]
    before = client.get("/api/qa/anomalies?collection=cats", headers=headers).json()
    r = client.post("/api/qa/anomalies/recompute", headers=headers, json={"collection": "cats"})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]

    def done() -> bool:
        job = client.get(f"/api/jobs/{job_id}", headers=headers).json()
        return bool(job["status"] in ("done", "failed"))

    assert wait_until(done)
    job = client.get(f"/api/jobs/{job_id}", headers=headers).json()
    assert job["status"] == "done", job
    assert job["kind"] == "anomaly_recompute" and job["collection_id"] == cats["collection_id"]
    assert job["result"]["scored"] == len(cats["ids"])
    after = client.get("/api/qa/anomalies?collection=cats", headers=headers).json()
    # Five images (<= 2k + 1): the scores ingest left were already exact.
    assert [i["image_id"] for i in after["items"]] == [i["image_id"] for i in before["items"]]
    for old, new in zip(before["items"], after["items"], strict=True):
        assert new["scores"] == pytest.approx(old["scores"], abs=1e-5)


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("collection=nope", 404, "collection_not_found"),
        ("", 422, "invalid_input"),
        ("collection=cats&sort=quality", 422, "invalid_input"),
        ("collection=cats&reviewed=maybe", 422, "invalid_input"),
        ("collection=cats&limit=0", 422, "invalid_input"),
        ("collection=cats&limit=201", 422, "invalid_input"),
        ("collection=cats&offset=-1", 422, "invalid_input"),
        ("collection=cats&min_score=nan", 422, "invalid_input"),
        ("collection=cats&min_score=high", 422, "invalid_input"),
    ],
)
def test_bad_queue_requests(
    client: TestClient, cats: dict[str, Any], query: str, status: int, code: str
) -> None:
    r = client.get(f"/api/qa/anomalies?{query}", headers=cats["headers"])
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code and r.json()["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [{}, {"reviewed": "yes"}, {"reviewed": True, "note": "x" * 4001}, {"reviewed": True, "x": 1}],
)
def test_bad_review_requests(client: TestClient, cats: dict[str, Any], body: Any) -> None:
    noise = cats["ids"]["noise.png"]
    r = client.post(f"/api/qa/anomalies/{noise}/review", headers=cats["headers"], json=body)
    assert r.status_code == 422, r.text
    r = client.post(
        "/api/qa/anomalies/01JDZZZZZZZZZZZZZZZZZZZZZZ/review",
        headers=cats["headers"],
        json={"reviewed": True},
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "image_not_found"
    r = client.post(
        "/api/qa/anomalies/recompute", headers=cats["headers"], json={"collection": "nope"}
    )
    assert r.status_code == 404
    assert client.get("/api/qa/anomalies?collection=cats").status_code == 401


def test_another_tenant_sees_and_changes_nothing(
    client: TestClient, cats: dict[str, Any], secured: Settings, photos: dict[str, bytes]
) -> None:
    a, b = cats["headers"], bearer(secured, "mallory", "globex")
    noise, cid = cats["ids"]["noise.png"], cats["collection_id"]
    # B has a collection of the same name: names resolve within the caller's tenant.
    _collection(client, b, "cats", {"rocket.png": photos["rocket"], "coins.png": photos["coins"]})
    before = client.get("/api/qa/anomalies?collection=cats&reviewed=all", headers=a).json()

    attempts: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"/api/qa/anomalies?collection={cid}", {}),
        ("POST", f"/api/qa/anomalies/{noise}/review", {"json": {"reviewed": True}}),
        ("POST", f"/api/qa/anomalies/{noise}/review", {"json": {"reviewed": False}}),
        ("POST", "/api/qa/anomalies/recompute", {"json": {"collection": cid}}),
        ("POST", "/api/feedback", {"json": {"image_id": noise, "action": "anomaly"}}),
    ]
    for method, path, kwargs in attempts:
        r = client.request(method, path, headers=b, **kwargs)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
    own = client.get("/api/qa/anomalies?collection=cats&reviewed=all", headers=b).json()
    assert {i["name"] for i in own["items"]} == {"rocket.png", "coins.png"}

    assert client.get("/api/qa/anomalies?collection=cats&reviewed=all", headers=a).json() == before
    jobs = client.get(f"/api/collections/{cid}/jobs", headers=a).json()
    assert jobs and all(j["kind"] != "anomaly_recompute" for j in jobs)
    assert client.get(f"/api/images/{noise}/feedback", headers=a).json()["total"] == 0
