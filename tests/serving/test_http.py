"""One mistake, one answer: the API and the embedding service, sent the same bad bodies, answer
with the same status, the same error code and the same error shape."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lookalike.api.app import create_app
from lookalike.composition import Lookalike
from lookalike.embed_server.app import create_embed_app
from support import make_settings, wait_until

KEY = "test-serving-key-0123456789"
DEEP = b'{"a": ' * 5000 + b"1" + b"}" * 5000

# Routes that read a body themselves: the API's search, and every embedding route with a body.
API_ROUTES = ["/api/search/similar"]
EMBED_ROUTES = ["/embed/image", "/embed/image/batch", "/embed/text", "/extract-features"]


@dataclass(frozen=True)
class BadBody:
    name: str
    content: bytes
    content_type: str | None
    status: int
    code: str


BAD_BODIES = [
    BadBody("wrong content type", b'{"text": "x"}', "text/plain", 415, "unsupported_media_type"),
    BadBody("no content type", b'{"text": "x"}', None, 415, "unsupported_media_type"),
    BadBody("invalid JSON", b'{"text": ', "application/json", 422, "invalid_input"),
    BadBody("not UTF-8", b'{"text": "\xff"}', "application/json", 422, "invalid_input"),
    BadBody("nested too deep", DEEP, "application/json", 422, "invalid_input"),
    BadBody("required field missing", b"{}", "application/json", 422, "invalid_input"),
    BadBody("not an object", b"[1, 2]", "application/json", 422, "invalid_input"),
]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[TestClient]:
    settings = make_settings(tmp_path_factory.mktemp("api") / "data", models_dir)
    with Lookalike(settings) as rt, TestClient(create_app(runtime=rt)) as client:
        yield client


@pytest.fixture(scope="module")
def embed(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[TestClient]:
    settings = make_settings(
        tmp_path_factory.mktemp("embed") / "data", models_dir, embed_api_key=KEY
    )
    app = create_embed_app(settings)
    with TestClient(app, headers={"Authorization": f"Bearer {KEY}"}) as client:
        # Let the model load in the background finish before anything else runs.
        assert wait_until(lambda: client.get("/readyz").status_code == 200, timeout=120)
        yield client


def post(client: TestClient, path: str, bad: BadBody) -> tuple[int, str]:
    headers = {"content-type": bad.content_type} if bad.content_type else {}
    response = client.post(path, content=bad.content, headers=headers)
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"], body
    return response.status_code, body["error"]["code"]


@pytest.mark.parametrize("bad", BAD_BODIES, ids=lambda bad: bad.name)
def test_both_apps_answer_a_bad_body_alike(
    api: TestClient, embed: TestClient, bad: BadBody
) -> None:
    answers = {path: post(api, path, bad) for path in API_ROUTES}
    answers |= {path: post(embed, path, bad) for path in EMBED_ROUTES}
    assert answers == dict.fromkeys(answers, (bad.status, bad.code))


def test_the_same_mistake_gets_the_same_words(api: TestClient, embed: TestClient) -> None:
    """Routes that read JSON or multipart say so in the same words in both apps."""
    for bad in BAD_BODIES[:3] + BAD_BODIES[4:5]:
        headers = {"content-type": bad.content_type} if bad.content_type else {}
        from_api = api.post("/api/search/similar", content=bad.content, headers=headers)
        from_embed = embed.post("/embed/image", content=bad.content, headers=headers)
        assert from_api.json() == from_embed.json(), bad.name
