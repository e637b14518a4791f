"""One tenant never reads, changes or even confirms another tenant's ids, on any route."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from lookalike.catalog import Job
from lookalike.composition import Lookalike
from lookalike.core.config import Settings
from support import bearer, settle


@pytest.fixture
def client(secured_client: TestClient) -> TestClient:
    return secured_client


def _snapshot(client: TestClient, headers: dict[str, str], ids: dict[str, str]) -> dict[str, Any]:
    """Everything tenant A can see of its data, to compare before and after B's attempts."""
    image, collection = ids["image_id"], ids["collection_id"]
    return {
        "collections": client.get("/api/collections", headers=headers).json(),
        "collection": client.get(f"/api/collections/{collection}", headers=headers).json(),
        "records": client.get(f"/api/collections/{collection}/records", headers=headers).json(),
        "record": client.get(f"/api/records/{ids['record_id']}", headers=headers).json(),
        "image": client.get(f"/api/images/{image}", headers=headers).json(),
        "thumbnail": client.get(f"/api/images/{image}/thumbnail", headers=headers).content,
        "original": client.get(f"/api/images/{image}/original", headers=headers).content,
        "feedback": client.get(f"/api/images/{image}/feedback", headers=headers).json(),
        "pairs": client.get(f"/api/images/{image}/pairs", headers=headers).json(),
        "clusters": client.get(f"/api/collections/{collection}/clusters", headers=headers).json(),
        "search": client.post(
            "/api/search/similar",
            headers=headers,
            json={"collection": ids["collection_id"], "image_id": image},
        ).json(),
    }


def test_another_tenants_ids_are_not_found_anywhere(
    client: TestClient, secured: Settings, photos: dict[str, bytes]
) -> None:
    a = bearer(secured, "alice", "acme")
    b = bearer(secured, "mallory", "globex")
    coll = client.post("/api/collections", json={"name": "private"}, headers=a).json()
    r = client.post(
        f"/api/collections/{coll['id']}/records?wait=true",
        headers=a,
        data={"name": "cat"},
        files=[
            ("images", ("cat.png", photos["chelsea"], "image/png")),
            ("images", ("cup.png", photos["coffee"], "image/png")),
        ],
    )
    assert r.status_code == 201, r.text
    settle(client)
    ids = {
        "collection_id": coll["id"],
        "record_id": r.json()["record"]["id"],
        "image_id": r.json()["results"][0]["image_id"],
    }
    assert (
        client.post(
            "/api/feedback", headers=a, json={"image_id": ids["image_id"], "action": "relevant"}
        ).status_code
        == 201
    )
    # A "same" decision makes the two images a duplicate cluster, so cluster routes have an id.
    second = r.json()["results"][1]["image_id"]
    pair = {"image_a": ids["image_id"], "image_b": second, "verdict": "same"}
    assert client.post("/api/duplicates/pairs", headers=a, json=pair).status_code == 201
    swept_a = client.post("/api/search/cluster", headers=a, json={"collection": coll["id"]})
    ids["cluster_id"] = swept_a.json()["clusters"][0]["id"]
    # B has a collection and an image of its own, so "not found" is about ownership.
    own = client.post("/api/collections", json={"name": "private"}, headers=b).json()
    r = client.post(
        f"/api/collections/{own['id']}/records?wait=true",
        headers=b,
        data={"name": "rocket"},
        files=[("images", ("rocket.png", photos["rocket"], "image/png"))],
    )
    own_image = r.json()["results"][0]["image_id"]
    before = _snapshot(client, a, ids)

    cid, rid, iid = ids["collection_id"], ids["record_id"], ids["image_id"]
    png = [("images", ("x.png", photos["coins"], "image/png"))]
    attempts: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"/api/collections/{cid}", {}),
        ("GET", "/api/collections/private", {}),  # B's own collection of that name, not A's
        ("DELETE", f"/api/collections/{cid}", {}),
        ("GET", f"/api/collections/{cid}/records", {}),
        ("POST", f"/api/collections/{cid}/records", {"json": {"name": "intruder"}}),
        ("POST", f"/api/collections/{cid}/records", {"data": {"name": "x"}, "files": png}),
        ("GET", f"/api/records/{rid}", {}),
        ("DELETE", f"/api/records/{rid}", {}),
        ("POST", f"/api/records/{rid}/images", {"files": png}),
        ("GET", f"/api/images/{iid}", {}),
        ("GET", f"/api/images/{iid}/thumbnail", {}),
        ("GET", f"/api/images/{iid}/original", {}),
        ("GET", f"/api/images/{iid}/feedback", {}),
        ("POST", "/api/feedback", {"json": {"image_id": iid, "action": "irrelevant"}}),
        (
            "POST",
            "/api/feedback",
            {"json": {"image_id": own_image, "action": "relevant", "query": {"image_id": iid}}},
        ),
        ("POST", "/api/search/similar", {"json": {"collection": cid, "image_id": iid}}),
        ("POST", "/api/search/similar", {"json": {"collection": own["id"], "image_id": iid}}),
        ("POST", "/api/search/similar", {"json": {"collection": cid, "text_query": "cat"}}),
        (
            "POST",
            "/api/search/similar",
            {"data": {"collection": cid}, "files": {"file": ("q.png", photos["chelsea"])}},
        ),
        ("POST", "/api/v1/search-image", {"json": {"text": "cat", "collection": cid}}),
        ("POST", "/api/search/cluster", {"json": {"collection": cid}}),
        ("POST", "/api/search/cluster", {"json": {"collection": own["id"], "image_ids": [iid]}}),
        ("POST", "/api/duplicates/pairs", {"json": {**pair, "image_b": own_image}}),
        ("POST", f"/api/clusters/{ids['cluster_id']}/merge", {"json": {"mode": "drop"}}),
    ]
    for method, path, kwargs in attempts:
        r = client.request(method, path, headers=b, **kwargs)
        if path == "/api/collections/private":
            assert r.json()["id"] == own["id"]
            continue
        assert r.status_code == 404, (method, path, r.status_code, r.text)
        assert r.json()["error"]["message"]

    # Every other route that takes an id in its path, present or added later: never a 2xx.
    rt: Lookalike = client.app.state.runtime  # type: ignore[attr-defined]
    with rt.catalog.session() as s:
        job = s.scalars(select(Job.id)).first() or "01JDZZZZZZZZZZZZZZZZZZZZZZ"
    values = {**ids, "job_id": job}
    swept = 0
    for path, operations in client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        params = re.findall(r"{(\w+)}", path)
        if not params or not set(params) <= set(values):
            continue
        concrete = path.format(**{p: values[p] for p in params})
        for method in operations:
            r = client.request(method.upper(), concrete, headers=b, json={})
            assert r.status_code in (404, 415, 422), (method, path, r.status_code, r.text)
            swept += 1
    assert swept >= 12

    assert _snapshot(client, a, ids) == before
