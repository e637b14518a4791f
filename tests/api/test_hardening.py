"""The attacks of an outside probe, each replayed: a clear 4xx (or a bounded answer) and stored
data unchanged."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import func, insert, select

from imaging.builders import streamed_png
from lookalike.catalog import Image, Record, new_id, utcnow
from lookalike.composition import Lookalike
from lookalike.core.config import Settings
from support import make_settings, settle


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def _state(rt: Lookalike) -> tuple[int, int, int]:
    with rt.catalog.session() as s:
        records = s.scalar(select(func.count()).select_from(Record)) or 0
        images = s.scalar(select(func.count()).select_from(Image)) or 0
    return records, images, len(rt.blobs.iter_keys())


@pytest.fixture
def shop(client: TestClient, rt: Lookalike, photos: dict[str, bytes]) -> str:
    assert client.post("/api/collections", json={"name": "shop"}).status_code == 201
    r = client.post(
        "/api/collections/shop/records?wait=true",
        data={"name": "cat"},
        files=[("images", ("cat.png", photos["chelsea"], "image/png"))],
    )
    assert r.status_code == 201, r.text
    settle(rt)
    return str(r.json()["record"]["images"][0]["id"])


def _error(r: Any, status: int, code: str | None = None) -> str:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    if code is not None:
        assert body["code"] == code, body
    return str(body["message"])


# --- 1. memory bombs by shape --------------------------------------------------


@pytest.mark.parametrize("size", [(1, 60_000), (60_000, 1)])
def test_a_strip_image_is_refused_everywhere(
    client: TestClient, rt: Lookalike, shop: str, size: tuple[int, int]
) -> None:
    strip = streamed_png(*size)
    assert len(strip) < 1000
    before = _state(rt)
    r = client.post(
        "/api/images/batch",
        data={"collection": "shop"},
        files=[("images", ("strip.png", strip, "image/png"))],
    )
    assert r.status_code == 202
    [result] = r.json()
    assert (result["status"], result["error"]["code"]) == ("rejected", "extreme_aspect_ratio")
    message = _error(
        client.post(
            "/api/search/similar",
            data={"collection": "shop"},
            files={"file": ("strip.png", strip, "image/png")},
        ),
        422,
        "extreme_aspect_ratio",
    )
    assert "LOOKALIKE_MAX_ASPECT_RATIO" in message
    assert _state(rt) == before


# --- 2. records whose metadata would break their listing ------------------------


def test_metadata_too_deep_or_too_big_is_refused_and_listing_keeps_working(
    client: TestClient, rt: Lookalike, shop: str
) -> None:
    before = _state(rt)
    for body, code in (
        ({"name": "x", "metadata": _nested(256)}, "invalid_input"),  # the body is too deep
        ({"name": "x", "metadata": _nested(20)}, "invalid_input"),  # the metadata is
        ({"name": "x", "metadata": {"blob": "x" * 70_000}}, "invalid_input"),
    ):
        message = _error(client.post("/api/collections/shop/records", json=body), 422, code)
        assert "deep" in message or "bytes" in message
    assert _state(rt) == before
    record_id = client.get("/api/collections/shop/records").json()["items"][0]["id"]
    _error(client.patch(f"/api/records/{record_id}", json={"metadata": _nested(20)}), 422)
    assert client.get(f"/api/records/{record_id}").status_code == 200
    ok = client.post(
        "/api/collections/shop/records", json={"name": "fine", "metadata": _nested(16)}
    )
    assert ok.status_code == 201, ok.text


def test_a_record_stored_before_the_checks_still_lists(client: TestClient, rt: Lookalike) -> None:
    client.post("/api/collections", json={"name": "old"})
    collection_id = client.get("/api/collections/old").json()["id"]
    poisoned = new_id()
    with rt.catalog.session() as s:
        s.execute(
            insert(Record).values(
                id=poisoned,
                collection_id=collection_id,
                name="poisoned",
                description="",
                tags=[],
                extra=_nested(300),
                owner="x",
                created_at=utcnow(),
                updated_at=utcnow(),
            )
        )
    listing = client.get("/api/collections/old/records")
    assert listing.status_code == 200
    assert listing.json()["items"][0]["metadata"] == {}
    assert client.get(f"/api/records/{poisoned}").status_code == 200


# --- 4. bodies that used to reach a 500 -----------------------------------------


def test_deep_bodies_and_filters_get_a_422(client: TestClient, shop: str) -> None:
    # Built as text: Python's own JSON encoder cannot write it either.
    deep = '{"a": ' * 5000 + "1" + "}" * 5000
    raw = f'{{"collection": "shop", "image_id": "{shop}", "filter": {{"must": [{deep}]}}}}'
    for path in ("/api/search/similar", "/api/collections", "/api/feedback"):
        r = client.post(path, content=raw, headers={"content-type": "application/json"})
        _error(r, 422, "invalid_input")
    nested_bool: dict[str, Any] = {"key": "quality", "range": {"gte": 0.1}}
    for _ in range(10):
        nested_bool = {"must": [nested_bool]}
    r = client.post(
        "/api/search/similar", json={"collection": "shop", "image_id": shop, "filter": nested_bool}
    )
    assert "nest" in _error(r, 422)


@pytest.mark.parametrize(
    "condition",
    [
        '{"key": "quality", "range": {"gte": NaN}}',
        '{"key": "quality", "range": {"lt": Infinity}}',
        '{"key": "width", "range": {"gt": -Infinity}}',
        '{"key": "width", "match": 99999999999999999999999}',
        '{"key": "width", "any": [1, 99999999999999999999999]}',
    ],
)
def test_filters_the_engine_cannot_hold_get_a_422(
    client: TestClient, shop: str, condition: str
) -> None:
    body = f'{{"collection": "shop", "image_id": "{shop}", "filter": {{"must": [{condition}]}}}}'
    r = client.post(
        "/api/search/similar", content=body, headers={"content-type": "application/json"}
    )
    _error(r, 422)
    # The server is still answering searches.
    ok = client.post("/api/search/similar", json={"collection": "shop", "image_id": shop})
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("fields", "word"),
    [
        ({"name": "n" * 513}, "name"),
        ({"name": "ok", "tags": ",".join(f"t{i}" for i in range(300))}, "tags"),
        ({"name": "ok", "owner": "o" * 129}, "owner"),
        ({"name": "ok", "description": "d" * 100_001}, "description"),
        ({"name": "ok", "tags": "x" * 200}, "tag"),
    ],
)
def test_multipart_record_fields_are_checked_like_json(
    client: TestClient,
    rt: Lookalike,
    shop: str,
    photos: dict[str, bytes],
    fields: dict[str, str],
    word: str,
) -> None:
    before = _state(rt)
    r = client.post(
        "/api/collections/shop/records",
        data=fields,
        files=[("images", ("coffee.png", photos["coffee"], "image/png"))],
    )
    assert word in _error(r, 422, "invalid_input")
    assert _state(rt) == before


# --- 5. batch uploads honour the record limits -----------------------------------


@pytest.mark.parametrize(
    ("fields", "word"),
    [
        ({"record_name": "n" * 100_000}, "name"),
        ({"tags": "x" * 1_000_000}, "tag"),
        ({"tags": ",".join(f"t{i}" for i in range(5000))}, "tags"),
    ],
)
def test_batch_upload_checks_record_fields(
    client: TestClient,
    rt: Lookalike,
    shop: str,
    photos: dict[str, bytes],
    fields: dict[str, str],
    word: str,
) -> None:
    before = _state(rt)
    r = client.post(
        "/api/images/batch",
        data={"collection": "shop", **fields},
        files=[("images", ("coffee.png", photos["coffee"], "image/png"))],
    )
    assert word in _error(r, 422)
    assert _state(rt) == before


# --- 6. no empty records ----------------------------------------------------------


def test_refused_uploads_leave_no_empty_records(
    client: TestClient, rt: Lookalike, shop: str, photos: dict[str, bytes]
) -> None:
    before = _state(rt)
    for i in range(30):
        r = client.post(
            "/api/collections/shop/records",
            data={"name": f"junk {i}"},
            files=[("images", (f"junk{i}.jpg", b"not an image %d" % i, "image/jpeg"))],
        )
        assert "junk" in _error(r, 422, "no_image_added")
    assert _state(rt) == before
    # One good image among bad ones: the record is made, with that image.
    r = client.post(
        "/api/collections/shop/records?wait=true",
        data={"name": "mixed"},
        files=[
            ("images", ("bad.jpg", b"nope", "image/jpeg")),
            ("images", ("cup.png", photos["coffee"], "image/png")),
        ],
    )
    assert r.status_code == 201, r.text
    assert [x["status"] for x in r.json()["results"]] == ["rejected", "added"]
    assert len(r.json()["record"]["images"]) == 1


# --- 7. signed upload URLs ----------------------------------------------------------


def test_upload_urls_stay_out_of_the_log_and_work_once(
    client: TestClient, shop: str, photos: dict[str, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    presigned = client.post("/api/images/presign", json={"collection": "shop"}).json()
    token = presigned["url"].rsplit("/", 1)[-1]
    with caplog.at_level(logging.INFO, logger="lookalike.access"):
        assert client.put(presigned["url"], content=photos["rocket"]).status_code == 201
    assert token not in caplog.text and "/api/uploads/{token}" in caplog.text
    r = client.post(
        "/api/images/ingest", json={"key": presigned["key"], "record": {"name": "rocket"}}
    )
    assert r.status_code == 202, r.text
    # The same URL cannot store a second file, nor the same key be ingested again.
    assert "used already" in _error(client.put(presigned["url"], content=photos["coins"]), 409)
    _error(client.post("/api/images/ingest", json={"key": presigned["key"], "record_id": "x"}), 404)


# --- 8. smaller findings ---------------------------------------------------------


def test_originals_are_not_sniffed(client: TestClient, shop: str) -> None:
    r = client.get(f"/api/images/{shop}/original")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in r.headers["content-security-policy"]
    assert client.get("/api/collections").headers["x-content-type-options"] == "nosniff"


def test_a_short_secret_key_is_refused(tmp_path: Path, models_dir: Path) -> None:
    with pytest.raises(ValidationError, match="secret_key"):
        make_settings(tmp_path, models_dir, secret_key="k")


def test_the_catalog_is_readable_by_its_owner_only(settings: Settings, rt: Lookalike) -> None:
    catalog = settings.data_dir / "catalog.sqlite3"
    assert stat.S_IMODE(os.stat(catalog).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(settings.data_dir).st_mode) == 0o700
