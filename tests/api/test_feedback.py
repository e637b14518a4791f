"""Feedback on images: `POST /api/feedback` and `GET /api/images/{id}/feedback`."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from lookalike.catalog import Feedback
from lookalike.composition import Lookalike
from lookalike.core.config import Settings
from support import bearer


@pytest.fixture
def client(secured_client: TestClient) -> TestClient:
    return secured_client


def _record(
    client: TestClient, headers: dict[str, str], photos: dict[str, bytes], names: list[str]
) -> dict[str, Any]:
    coll = client.post("/api/collections", json={"name": "qa"}, headers=headers)
    assert coll.status_code in (201, 409)
    r = client.post(
        "/api/collections/qa/records?wait=true",
        headers=headers,
        data={"name": "rec"},
        files=[("images", (f"{n}.png", photos[n], "image/png")) for n in names],
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def _feedback_count(client: TestClient) -> int:
    rt: Lookalike = client.app.state.runtime  # type: ignore[attr-defined]
    with rt.catalog.session() as s:
        return int(s.scalar(select(func.count()).select_from(Feedback)) or 0)


def test_feedback_flow(client: TestClient, secured: Settings, photos: dict[str, bytes]) -> None:
    alice = bearer(secured, "alice", "acme")
    bob = bearer(secured, "bob", "acme")
    created = _record(client, alice, photos, ["chelsea", "coffee"])
    cat, cup = (r["image_id"] for r in created["results"])

    r = client.post(
        "/api/feedback",
        headers=alice,
        json={"image_id": cat, "action": "relevant", "query": {"image_id": cup}, "note": "yes"},
    )
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["user"] == "alice" and first["action"] == "relevant"
    assert first["image_id"] == cat and first["note"] == "yes" and first["score"] is None
    assert first["query"] == {"search_id": None, "image_id": cup, "text": None}

    r = client.post(
        "/api/feedback",
        headers=bob,
        json={"image_id": cat, "action": "duplicate", "query": "a cat", "score": 9},
    )
    assert r.status_code == 201, r.text
    r = client.post(
        "/api/feedback",
        headers=bob,
        json={"image_id": cat, "action": "anomaly", "query": {"search_id": "01JSEARCH"}},
    )
    assert r.status_code == 201, r.text

    page = client.get(f"/api/images/{cat}/feedback", headers=alice).json()
    assert page["total"] == 3
    assert [f["action"] for f in page["items"]] == ["anomaly", "duplicate", "relevant"]
    assert page["items"][1]["query"]["text"] == "a cat" and page["items"][1]["score"] == 9
    assert page["items"][0]["query"]["search_id"] == "01JSEARCH"
    assert [f["user"] for f in page["items"]] == ["bob", "bob", "alice"]
    assert client.get(f"/api/images/{cat}/feedback?limit=1&offset=2", headers=alice).json()[
        "items"
    ] == [first]
    assert client.get(f"/api/images/{cup}/feedback", headers=alice).json()["total"] == 0

    # Feedback goes with its image.
    assert (
        client.delete(f"/api/records/{created['record']['id']}", headers=alice).status_code == 204
    )
    assert _feedback_count(client) == 0


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"action": "relevant"}, 422, "invalid_input"),
        ({"image_id": "IMG", "action": "great"}, 422, "invalid_input"),
        ({"image_id": "IMG", "action": "relevant", "score": 11}, 422, "invalid_input"),
        ({"image_id": "IMG", "action": "relevant", "score": 0}, 422, "invalid_input"),
        ({"image_id": "IMG", "action": "relevant", "score": "5"}, 422, "invalid_input"),
        ({"image_id": "IMG", "action": "relevant", "note": "x" * 4001}, 422, "invalid_input"),
        ({"image_id": "IMG", "action": "relevant", "bogus": 1}, 422, "invalid_input"),
        ({"image_id": "IMG", "action": "relevant", "query": {"x": 1}}, 422, "invalid_input"),
        ({"image_id": "01JDZZZZZZZZZZZZZZZZZZZZZZ", "action": "relevant"}, 404, "image_not_found"),
        (
            {"image_id": "IMG", "action": "relevant", "query": {"image_id": "01JDZZZZZZZZZZZZZ"}},
            404,
            "image_not_found",
        ),
    ],
)
def test_bad_feedback_is_refused(
    client: TestClient,
    secured: Settings,
    photos: dict[str, bytes],
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    alice = bearer(secured, "alice", "acme")
    image_id = _record(client, alice, photos, ["coins"])["results"][0]["image_id"]
    if body.get("image_id") == "IMG":
        body = {**body, "image_id": image_id}
    r = client.post("/api/feedback", headers=alice, json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code and r.json()["error"]["message"]
    assert _feedback_count(client) == 0


def test_feedback_needs_credentials(client: TestClient) -> None:
    r = client.post("/api/feedback", json={"image_id": "x", "action": "relevant"})
    assert r.status_code == 401
    assert client.get("/api/images/x/feedback").status_code == 401


def test_feedback_is_tenant_scoped(
    client: TestClient, secured: Settings, photos: dict[str, bytes]
) -> None:
    alice = bearer(secured, "alice", "acme")
    mallory = bearer(secured, "mallory", "globex")
    theirs = _record(client, alice, photos, ["chelsea"])["results"][0]["image_id"]
    mine = _record(client, mallory, photos, ["rocket"])["results"][0]["image_id"]
    client.post("/api/feedback", headers=alice, json={"image_id": theirs, "action": "relevant"})

    r = client.get(f"/api/images/{theirs}/feedback", headers=mallory)
    assert r.status_code == 404 and r.json()["error"]["code"] == "image_not_found"
    r = client.post(
        "/api/feedback", headers=mallory, json={"image_id": theirs, "action": "anomaly"}
    )
    assert r.status_code == 404
    # Nor may another tenant's image be named as the query.
    r = client.post(
        "/api/feedback",
        headers=mallory,
        json={"image_id": mine, "action": "relevant", "query": {"image_id": theirs}},
    )
    assert r.status_code == 404
    assert _feedback_count(client) == 1
    assert client.get(f"/api/images/{theirs}/feedback", headers=alice).json()["total"] == 1
