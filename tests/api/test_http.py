"""The HTTP API over a real runtime: collections, records with images, images, search, health."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from fastapi.testclient import TestClient

from badfiles import text_named_jpg
from lookalike.api.app import create_app
from lookalike.auth.tokens import create_token, secret_key
from lookalike.catalog import Image
from lookalike.composition import Lookalike
from support import jpeg, make_settings, open_image


def _make_collection(client: TestClient, name: str = "shop") -> dict:  # type: ignore[type-arg]
    r = client.post("/api/collections", json={"name": name, "description": "things"})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def _upload_record(
    client: TestClient, coll: str, photos: dict[str, bytes], names: list[str], **fields: str
) -> dict:  # type: ignore[type-arg]
    files = [("images", (f"{n}.png", photos[n], "image/png")) for n in names]
    data = {"name": fields.get("name", names[0]), "description": "desc", "tags": "a, b", **fields}
    r = client.post(f"/api/collections/{coll}/records?wait=true", data=data, files=files)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_collection_lifecycle(client: TestClient) -> None:
    coll = _make_collection(client)
    assert coll["model"] == "efficientnet-lite0" and coll["dim"] > 0
    assert coll["supports_text"] is False
    assert client.post("/api/collections", json={"name": "shop"}).status_code == 409
    listed = client.get("/api/collections").json()
    assert [c["name"] for c in listed] == ["shop"]
    assert client.get("/api/collections/shop").json()["id"] == coll["id"]
    assert client.delete(f"/api/collections/{coll['id']}").status_code == 204
    r = client.get(f"/api/collections/{coll['id']}")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "collection_not_found"


def test_record_with_images_then_search(client: TestClient, photos: dict[str, bytes]) -> None:
    _make_collection(client)
    created = _upload_record(client, "shop", photos, ["chelsea", "coffee"], name="Cat and cup")
    record = created["record"]
    assert [r["status"] for r in created["results"]] == ["added", "added"]
    assert record["tags"] == ["a", "b"]
    assert len(record["images"]) == 2
    _upload_record(client, "shop", photos, ["rocket"])
    _upload_record(client, "shop", photos, ["astronaut"])

    image_id = created["results"][0]["image_id"]
    image = client.get(f"/api/images/{image_id}").json()
    assert image["status"] == "embedded" and image["mime"] == "image/png"
    thumb = client.get(image["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    original = client.get(f"/api/images/{image_id}/original")
    assert original.content == photos["chelsea"]

    query = jpeg(open_image(photos["chelsea"]).resize((200, 150)), 60)
    r = client.post(
        "/api/search/similar",
        data={"collection": "shop", "limit": "2"},
        files={"file": ("q.jpg", query, "image/jpeg")},
    )
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert hits[0]["image_id"] == image_id
    assert set(hits[0]) == {
        "image_id",
        "record_id",
        "name",
        "description",
        "score",
        "payload",
        "matched",
        "preview_url",
    }
    assert hits[0]["name"] == "Cat and cup" and hits[0]["matched"] == ["vector"]

    r = client.post(
        "/api/search/similar",
        json={"collection": "shop", "image_id": image_id, "include_payload": True, "limit": 10},
    )
    # Unrelated photos score below the model's relevance cut-off: weaker matches, on request.
    strong = r.json()
    assert strong["cutoff"] is not None and strong["weaker"] and not strong["more"]
    assert all(h["score"] >= strong["cutoff"] for h in strong["hits"])
    r = client.post(
        "/api/search/similar",
        json={
            "collection": "shop",
            "image_id": image_id,
            "include_payload": True,
            "limit": 10,
            "include_weaker": True,
        },
    )
    hits = r.json()["hits"]
    assert image_id not in [h["image_id"] for h in hits] and len(hits) == 3
    assert r.json()["cutoff"] is None and not r.json()["weaker"]
    assert hits[0]["payload"]["tags"] == ["a", "b"]

    r = client.post(
        "/api/search/similar",
        json={"collection": "shop", "image_id": image_id, "filter": {"tags_any": ["zzz"]}},
    )
    assert r.json()["hits"] == []

    records = client.get("/api/collections/shop/records?limit=2").json()
    assert records["total"] == 3 and len(records["items"]) == 2


def test_adding_images_to_an_existing_record(client: TestClient, photos: dict[str, bytes]) -> None:
    _make_collection(client)
    r = client.post("/api/collections/shop/records", json={"name": "Empty", "tags": ["x"]})
    assert r.status_code == 201, r.text
    record_id = r.json()["record"]["id"]
    r = client.post(
        f"/api/records/{record_id}/images?wait=true",
        files=[
            ("images", ("c.png", photos["coins"], "image/png")),
            ("images", ("bad.jpg", text_named_jpg(), "image/jpeg")),
        ],
    )
    assert r.status_code == 201
    assert [x["status"] for x in r.json()] == ["added", "rejected"]
    assert r.json()[1]["error"]["code"] == "invalid_image"
    assert len(client.get(f"/api/records/{record_id}").json()["images"]) == 1
    assert client.delete(f"/api/records/{record_id}").status_code == 204
    assert client.get(f"/api/records/{record_id}").status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (
            {"collection": "shop", "text_query": "a cat", "mode": "vector"},
            422,
            "text_search_unavailable",
        ),
        ({"collection": "shop", "image_id": "x", "mode": "keyword"}, 422, "invalid_input"),
        ({"collection": "shop", "image_id": "01JDZZZZZZZZZZZZZZZZZZZZZZ"}, 404, "image_not_found"),
        ({"collection": "nope", "text_query": "x"}, 404, "collection_not_found"),
        ({"collection": "shop"}, 422, "invalid_input"),
        ({"collection": "shop", "text_query": "x", "limit": 0}, 422, "invalid_input"),
        ({"collection": "shop", "text_query": "x", "bogus": 1}, 422, "invalid_input"),
        (
            {"collection": "shop", "image_id": "x", "filter": {"tags_any": "x", "z": 1}},
            422,
            "invalid_input",
        ),
    ],
)
def test_search_errors(client: TestClient, body: dict, status: int, code: str) -> None:  # type: ignore[type-arg]
    _make_collection(client)
    r = client.post("/api/search/similar", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["message"]


def test_wrong_content_type_and_bad_json(client: TestClient) -> None:
    _make_collection(client)
    r = client.post("/api/search/similar", content=b"x", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    r = client.post(
        "/api/search/similar", content=b"{", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input"


def test_health(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["model"].startswith("efficientnet-lite0")
    spec = client.get("/api/openapi.json").json()
    assert "/api/search/similar" in spec["paths"]


def test_auth_is_on_by_default(tmp_path, models_dir) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path / "auth", models_dir, auth="on")
    with Lookalike(settings) as rt, TestClient(create_app(runtime=rt)) as client:
        r = client.get("/api/collections")
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        token = create_token(settings, user="alice", tenant="acme")
        ok = client.get("/api/collections", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200

        def rejected(tok: str) -> bool:
            res = client.get("/api/collections", headers={"Authorization": f"Bearer {tok}"})
            return res.status_code == 401

        assert rejected(
            jwt.encode(
                {"sub": "a", "tenant": "acme", "iss": "lookalike", "exp": int(time.time()) + 60},
                "a-different-secret-of-enough-length-123456",
                "HS256",
            )
        )
        assert rejected(
            jwt.encode(
                {"sub": "a", "tenant": "acme", "iss": "lookalike", "exp": int(time.time()) - 60},
                secret_key(settings),
                "HS256",
            )
        )
        header = jwt.utils.base64url_encode(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        claims = jwt.utils.base64url_encode(
            json.dumps(
                {"sub": "a", "tenant": "acme", "iss": "lookalike", "exp": int(time.time()) + 60}
            ).encode()
        )
        assert rejected(f"{header.decode()}.{claims.decode()}.")
        assert rejected("garbage")


def test_tenants_do_not_see_each_other(tmp_path, models_dir, photos) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path / "tenants", models_dir, auth="on")
    with Lookalike(settings) as rt, TestClient(create_app(runtime=rt)) as client:
        a = {"Authorization": f"Bearer {create_token(settings, user='a', tenant='acme')}"}
        b = {"Authorization": f"Bearer {create_token(settings, user='b', tenant='globex')}"}
        coll = client.post("/api/collections", json={"name": "mine"}, headers=a).json()
        r = client.post(
            f"/api/collections/{coll['id']}/records?wait=true",
            headers=a,
            data={"name": "cat"},
            files=[("images", ("c.png", photos["chelsea"]))],
        )
        image_id = r.json()["results"][0]["image_id"]
        assert client.get("/api/collections", headers=b).json() == []
        assert client.get(f"/api/collections/{coll['id']}", headers=b).status_code == 404
        assert client.get(f"/api/images/{image_id}", headers=b).status_code == 404
        assert client.get(f"/api/images/{image_id}/thumbnail", headers=b).status_code == 404
        r = client.post(
            "/api/search/similar", headers=b, json={"collection": coll["id"], "image_id": image_id}
        )
        assert r.status_code == 404


def test_editing_collections_and_records(client: TestClient, photos: dict[str, bytes]) -> None:
    _make_collection(client)
    r = client.patch("/api/collections/shop", json={"name": "store", "description": "new"})
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["description"]) == ("store", "new")
    _make_collection(client, "shop")
    assert client.patch("/api/collections/store", json={"name": "shop"}).status_code == 409
    assert client.patch("/api/collections/store", json={"model": "x"}).status_code == 422

    created = _upload_record(client, "store", photos, ["chelsea", "coffee"], name="Pair")
    record_id = created["record"]["id"]
    cat, cup = (x["image_id"] for x in created["results"])
    _upload_record(client, "store", photos, ["rocket"])
    r = client.patch(f"/api/records/{record_id}", json={"tags": ["sale"], "owner": "carol"})
    assert r.status_code == 200, r.text
    assert r.json()["tags"] == ["sale"]

    def search(filters: dict[str, object]) -> set[str]:
        body = {
            "collection": "store",
            "text_query": None,
            "image_id": cup,
            "filter": filters,
            "include_weaker": True,
        }
        res = client.post("/api/search/similar", json=body)
        assert res.status_code == 200, res.text
        return {h["image_id"] for h in res.json()["hits"]}

    assert search({"tags_any": ["sale"]}) == {cat}
    assert search({"owner": "carol"}) == {cat}

    assert client.delete(f"/api/records/{record_id}/images/{cat}").status_code == 204
    assert client.get(f"/api/images/{cat}").status_code == 404
    assert search({"tags_any": ["sale"]}) == set()
    assert [i["id"] for i in client.get(f"/api/records/{record_id}").json()["images"]] == [cup]
    r = client.delete(f"/api/records/{record_id}/images/{cat}")
    assert r.status_code == 404


def test_filter_dsl_over_http(client: TestClient, photos: dict[str, bytes]) -> None:
    _make_collection(client)
    a = _upload_record(client, "shop", photos, ["chelsea"], tags="red")["results"][0]["image_id"]
    _upload_record(client, "shop", photos, ["coffee"], tags="blue")
    body = {
        "collection": "shop",
        "image_id": a,
        "filter": {"must_not": [{"key": "tags", "match": "blue"}]},
    }
    assert client.post("/api/search/similar", json=body).json()["hits"] == []
    body["filter"] = {"must": [{"key": "tags", "range": {"gt": 1}}]}
    r = client.post("/api/search/similar", json=body)
    assert r.status_code == 422
    assert "tags" in r.json()["error"]["message"]


def test_a_lost_thumbnail_is_made_again(client: TestClient, photos: dict[str, bytes]) -> None:
    _make_collection(client)
    created = _upload_record(client, "shop", photos, ["coins"])
    image_id = created["results"][0]["image_id"]
    first = client.get(f"/api/images/{image_id}/thumbnail").content
    rt = client.app.state.runtime  # type: ignore[attr-defined]
    with rt.catalog.session() as s:
        key = s.get(Image, image_id).thumbnail_key
    rt.blobs.delete(key)  # as if a crash lost the unsynced file
    again = client.get(f"/api/images/{image_id}/thumbnail")
    assert again.status_code == 200
    assert again.content == first
    assert rt.blobs.exists(key)
