"""The web app at `/`: the bundle's files, index.html for the app's own paths, never for /api."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lookalike.api.app import create_app
from lookalike.composition import Lookalike
from support import bearer, make_settings

INDEX = "<!doctype html><html><body><div id=root></div><script src=/assets/app-1a2b.js></script>"


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    web = tmp_path / "dist"
    (web / "assets").mkdir(parents=True)
    (web / "index.html").write_text(INDEX)
    (web / "assets" / "app-1a2b.js").write_text("console.log('app')")
    (web / "favicon.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("not part of the bundle")
    return web


@contextmanager
def _client(
    tmp_path: Path, models_dir: Path, web_dir: Path | None, **settings: object
) -> Iterator[TestClient]:
    s = make_settings(tmp_path / "data", models_dir, web_dir=web_dir, **settings)
    with Lookalike(s) as rt, TestClient(create_app(runtime=rt)) as client:
        yield client


@pytest.fixture
def web(tmp_path: Path, models_dir: Path, bundle: Path) -> Iterator[TestClient]:
    with _client(tmp_path, models_dir, bundle) as client:
        yield client


def test_root_serves_the_app(web: TestClient) -> None:
    r = web.get("/")
    assert r.status_code == 200
    assert r.text == INDEX
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize("path", ["/search", "/collections/01JABC/records/new", "/records/x?y=1"])
def test_app_paths_fall_back_to_index(web: TestClient, path: str) -> None:
    r = web.get(path)
    assert r.status_code == 200
    assert r.text == INDEX


def test_bundle_files_are_served_with_caching(web: TestClient) -> None:
    asset = web.get("/assets/app-1a2b.js")
    assert asset.status_code == 200
    assert asset.text == "console.log('app')"
    assert "immutable" in asset.headers["cache-control"]
    icon = web.get("/favicon.svg")
    assert icon.status_code == 200
    assert icon.headers["cache-control"] == "no-cache"


def test_no_file_outside_the_bundle(web: TestClient) -> None:
    r = web.get("/%2e%2e/secret.txt")
    assert "not part of the bundle" not in r.text
    assert web.get("/../secret.txt").text != "not part of the bundle"


def test_api_paths_never_fall_back(web: TestClient) -> None:
    r = web.get("/api/no-such-route")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    assert web.post("/api/no-such-route").status_code == 404
    # A wrong method on a known route stays a 405, not the app's page.
    assert web.put("/api/collections").status_code == 405
    assert web.get("/api").status_code == 404


def test_api_docs_and_health_still_answer(web: TestClient) -> None:
    assert web.get("/api/docs").status_code == 200
    assert web.get("/api/openapi.json").json()["info"]["title"] == "Lookalike"
    assert web.get("/healthz").json() == {"status": "ok"}


def test_without_a_bundle_root_says_how_to_build_it(tmp_path: Path, models_dir: Path) -> None:
    with _client(tmp_path, models_dir, None) as client:
        r = client.get("/")
        assert r.status_code == 200
        assert "make web" in r.text
        assert "/api/docs" in r.text
        assert client.get("/api/collections").status_code == 200


def test_me_names_the_caller(tmp_path: Path, models_dir: Path, bundle: Path) -> None:
    with _client(tmp_path, models_dir, bundle, auth="on", secret_key="s" * 32) as client:
        assert client.get("/api/me").status_code == 401
        settings = client.app.state.runtime.settings  # type: ignore[attr-defined]
        r = client.get("/api/me", headers=bearer(settings, user="alice", tenant="acme"))
        assert r.status_code == 200
        assert r.json() == {"user": "alice", "tenant": "acme", "auth": "on"}


def test_me_with_auth_off(web: TestClient) -> None:
    assert web.get("/api/me").json() == {"user": "local", "tenant": "default", "auth": "off"}
