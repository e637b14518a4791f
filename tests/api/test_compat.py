"""The image-search-worker contract: `/api/v1/search-image` and `/api/v1/create-feedback`."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from lookalike.api.app import create_app
from lookalike.auth.tokens import SEARCH_AUDIENCE, create_token, secret_key
from lookalike.catalog import Feedback, Image
from lookalike.composition import Lookalike
from lookalike.core.config import Settings
from support import bearer, make_settings

FILES = {"chelsea": "COCO_cat_000962.png", "coffee": "cup.png", "rocket": "launch.png"}


@pytest.fixture
def clip_settings(tmp_path: Path, models_dir: Path, tiny_clip: str) -> Settings:
    return make_settings(tmp_path / "compat", models_dir, model=tiny_clip, auth="on")


@pytest.fixture
def client(clip_settings: Settings) -> Iterator[TestClient]:
    with Lookalike(clip_settings) as rt, TestClient(create_app(runtime=rt)) as c:
        yield c


def _fill(
    client: TestClient, headers: dict[str, str], photos: dict[str, bytes], name: str = "coco"
) -> dict[str, Any]:
    coll = client.post("/api/collections", json={"name": name}, headers=headers)
    assert coll.status_code == 201, coll.text
    for photo, filename in FILES.items():
        r = client.post(
            f"/api/collections/{name}/records?wait=true",
            headers=headers,
            data={"name": f"record {photo}"},
            files=[("images", (filename, photos[photo], "image/png"))],
        )
        assert r.status_code == 201, r.text
    return coll.json()  # type: ignore[no-any-return]


def _feedback_rows(client: TestClient) -> list[Feedback]:
    rt: Lookalike = client.app.state.runtime  # type: ignore[attr-defined]
    with rt.catalog.session() as s:
        return list(s.scalars(select(Feedback).order_by(Feedback.created_at)).all())


def test_search_then_rate(
    client: TestClient, clip_settings: Settings, photos: dict[str, bytes]
) -> None:
    headers = bearer(clip_settings)
    coll = _fill(client, headers, photos)
    assert coll["supports_text"] is True

    r = client.post("/api/v1/search-image", headers=headers, json={"text": "tennis"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"text", "model_name", "matches", "jwt"}
    assert body["text"] == "tennis" and body["model_name"] == "tiny-clip"
    assert len(body["matches"]) == 3
    assert all(set(m) == {"image_name", "score"} for m in body["matches"])
    assert {m["image_name"] for m in body["matches"]} == set(FILES.values())
    scores = [m["score"] for m in body["matches"]]
    assert scores == sorted(scores, reverse=True)

    claims = jwt.decode(body["jwt"], options={"verify_signature": False})
    assert claims["tenant"] == "acme" and claims["sub"] == "alice"
    assert claims["aud"] == SEARCH_AUDIENCE and len(claims["sid"]) == 26
    assert 0 < claims["exp"] - time.time() <= clip_settings.search_token_ttl_s

    r = client.post("/api/v1/create-feedback", json={"user_feedback": 7, "jwt": body["jwt"]})
    assert r.status_code == 201, r.text
    assert r.json()["search_id"] == claims["sid"] and r.json()["user_feedback"] == 7
    (row,) = _feedback_rows(client)
    assert (row.score, row.search_id, row.tenant, row.user) == (7, claims["sid"], "acme", "alice")
    assert row.query_text == "tennis" and row.image_id is None and row.action is None

    # Rating the same search again replaces the score; a new search is a new row.
    r = client.post("/api/v1/create-feedback", json={"user_feedback": 3, "jwt": body["jwt"]})
    assert r.status_code == 200 and r.json()["id"] == row.id
    assert [f.score for f in _feedback_rows(client)] == [3]
    again = client.post(
        "/api/v1/search-image", headers=headers, json={"text": "cat", "limit": 1}
    ).json()
    assert len(again["matches"]) == 1
    r = client.post("/api/v1/create-feedback", json={"user_feedback": 10, "jwt": again["jwt"]})
    assert r.status_code == 201
    assert [f.score for f in _feedback_rows(client)] == [3, 10]


def test_image_name_falls_back_to_the_record_name(
    client: TestClient, clip_settings: Settings, photos: dict[str, bytes]
) -> None:
    headers = bearer(clip_settings)
    _fill(client, headers, photos)
    rt: Lookalike = client.app.state.runtime  # type: ignore[attr-defined]
    with rt.catalog.session() as s:
        s.execute(update(Image).values(filename=None))
    body = client.post("/api/v1/search-image", headers=headers, json={"text": "x"}).json()
    assert {m["image_name"] for m in body["matches"]} == {f"record {p}" for p in FILES}


def test_which_collection_is_searched(
    tmp_path: Path, models_dir: Path, tiny_clip: str, photos: dict[str, bytes]
) -> None:
    settings = make_settings(tmp_path / "which", models_dir, model=tiny_clip, auth="on")
    with Lookalike(settings) as rt, TestClient(create_app(runtime=rt)) as client:
        headers = bearer(settings)
        r = client.post("/api/v1/search-image", headers=headers, json={"text": "x"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "collection_not_found"
        _fill(client, headers, photos, "first")
        client.post("/api/collections", json={"name": "empty"}, headers=headers)

        def matches(**extra: Any) -> int:
            r = client.post("/api/v1/search-image", headers=headers, json={"text": "x", **extra})
            assert r.status_code == 200, r.text
            return len(r.json()["matches"])

        assert matches() == 3  # the first collection
        assert matches(collection="empty") == 0
        r = client.post(
            "/api/v1/search-image", headers=headers, json={"text": "x", "collection": "no"}
        )
        assert r.status_code == 404

    configured = settings.model_copy(update={"default_collection": "empty"})
    with Lookalike(configured) as rt, TestClient(create_app(runtime=rt)) as client:
        r = client.post("/api/v1/search-image", headers=bearer(settings), json={"text": "x"})
        assert r.status_code == 200 and r.json()["matches"] == []


def test_text_search_on_an_image_only_collection(
    tmp_path: Path, models_dir: Path, photos: dict[str, bytes]
) -> None:
    settings = make_settings(tmp_path / "imgonly", models_dir, auth="off")
    with Lookalike(settings) as rt, TestClient(create_app(runtime=rt)) as client:
        client.post("/api/collections", json={"name": "pics"})
        r = client.post("/api/v1/search-image", json={"text": "a cat"})
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "text_search_unavailable"
        assert r.json()["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"text": ""},
        {"text": "x" * 1001},
        {},
        {"text": "x", "limit": 0},
        {"text": "x", "bogus": 1},
        {"text": 5},
    ],
)
def test_bad_search_requests(
    client: TestClient, clip_settings: Settings, body: dict[str, Any]
) -> None:
    r = client.post("/api/v1/search-image", headers=bearer(clip_settings), json=body)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input"


def test_search_needs_credentials(client: TestClient) -> None:
    r = client.post("/api/v1/search-image", json={"text": "x"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_feedback_token_must_come_from_a_search(
    client: TestClient, clip_settings: Settings, photos: dict[str, bytes]
) -> None:
    headers = bearer(clip_settings)
    _fill(client, headers, photos)
    good = client.post("/api/v1/search-image", headers=headers, json={"text": "x"}).json()["jwt"]
    claims = jwt.decode(good, options={"verify_signature": False})
    secret = secret_key(clip_settings)

    def rate(token: str, score: Any = 5) -> Any:
        return client.post("/api/v1/create-feedback", json={"user_feedback": score, "jwt": token})

    refused = {
        "bearer token": create_token(clip_settings, user="alice", tenant="acme"),
        "forged": jwt.encode(claims, "some-other-secret-of-a-decent-length-123", "HS256"),
        "expired": jwt.encode({**claims, "exp": int(time.time()) - 5}, secret, "HS256"),
        "other audience": jwt.encode({**claims, "aud": "something-else"}, secret, "HS256"),
        "no search id": jwt.encode({k: v for k, v in claims.items() if k != "sid"}, secret),
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        "tampered": good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"),
        "garbage": "not-a-jwt",
    }
    for name, token in refused.items():
        r = rate(token)
        assert r.status_code == 401, (name, r.text)
        assert r.json()["error"]["code"] == "unauthorized"
    # The search token is no bearer token either.
    r = client.get("/api/collections", headers={"Authorization": f"Bearer {good}"})
    assert r.status_code == 401

    for score in (0, 11, -1, "5", 5.5, True, None):
        r = rate(good, score)
        assert r.status_code == 422, (score, r.text)
        assert r.json()["error"]["code"] == "invalid_input"
    r = client.post("/api/v1/create-feedback", json={"user_feedback": 5})
    assert r.status_code == 422
    assert _feedback_rows(client) == []
    assert rate(good, 1).status_code == 201


def test_tenants_search_only_their_own(
    client: TestClient, clip_settings: Settings, photos: dict[str, bytes]
) -> None:
    coll = _fill(client, bearer(clip_settings), photos)
    other = bearer(clip_settings, "mallory", "globex")
    r = client.post("/api/v1/search-image", headers=other, json={"text": "x"})
    assert r.status_code == 404
    r = client.post(
        "/api/v1/search-image", headers=other, json={"text": "x", "collection": coll["id"]}
    )
    assert r.status_code == 404
    client.post("/api/collections", json={"name": "coco"}, headers=other)
    body = client.post("/api/v1/search-image", headers=other, json={"text": "x"}).json()
    assert body["matches"] == []
    token = body["jwt"]
    assert (
        client.post("/api/v1/create-feedback", json={"user_feedback": 4, "jwt": token}).status_code
        == 201
    )
    (row,) = _feedback_rows(client)
    assert (row.tenant, row.user) == ("globex", "mallory")
