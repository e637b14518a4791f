"""A vector server that goes down mid-work: searches answer 503 naming it, uploads made during
the outage are kept (stored originals, queued jobs) and become searchable once it is back; none
is lost or left failed. Run against a real PostgreSQL with pgvector that the test stops."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from backends.pgvector import private_pgvector_server
from lookalike.api.app import create_app
from lookalike.catalog import Image, ImageStage, Job
from lookalike.composition import Lookalike
from support import make_settings, wait_until

BEFORE = ["chelsea", "coffee", "rocket"]
DURING = ["astronaut", "camera", "coins", "moon"]


def upload(client: TestClient, name: str, data: bytes) -> dict:  # type: ignore[type-arg]
    r = client.post(
        "/api/collections/shop/records?wait=true",
        data={"name": name},
        files=[("images", (f"{name}.png", data, "image/png"))],
    )
    assert r.status_code == 201, r.text
    (result,) = r.json()["results"]
    assert result["status"] == "added", result
    return result  # type: ignore[no-any-return]


def nearest(client: TestClient, data: bytes) -> dict:  # type: ignore[type-arg]
    r = client.post(
        "/api/search/similar",
        data={"collection": "shop", "limit": "1"},
        files={"file": ("q.png", data, "image/png")},
    )
    assert r.status_code == 200, r.text
    return r.json()["hits"][0]  # type: ignore[no-any-return]


def test_uploads_during_an_outage_wait_and_land(
    tmp_path: Path, models_dir: Path, photos: dict[str, bytes]
) -> None:
    with private_pgvector_server() as server:
        settings = make_settings(tmp_path / "data", models_dir, vectors=server.dsn, nsfw=False)
        with Lookalike(settings) as rt, TestClient(create_app(runtime=rt)) as client:
            assert client.post("/api/collections", json={"name": "shop"}).status_code == 201
            kept = {name: upload(client, name, photos[name]) for name in BEFORE}

            server.stop()
            r = client.post(
                "/api/search/similar",
                json={"collection": "shop", "image_id": kept["coffee"]["image_id"]},
            )
            assert r.status_code == 503
            error = r.json()["error"]
            assert error["code"] == "vector_store_unavailable"
            assert "PostgreSQL (pgvector)" in error["message"]
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert not next(s for s in ready.json()["stores"] if s["role"] == "vectors")["ok"]

            during = {name: upload(client, name, photos[name]) for name in DURING}
            ids = [r["image_id"] for r in during.values()]
            with rt.catalog.session() as session:
                jobs = session.query(Job).filter(Job.image_id.in_(ids)).all()
                assert {j.status for j in jobs} == {"queued"}  # kept, not failed
                assert all(j.error and "PostgreSQL" in j.error for j in jobs)
            assert rt.ingest.waiting_for_vector_store == len(DURING)

            server.start()

            def all_embedded() -> bool:
                with rt.catalog.session() as session:
                    rows = session.query(Image).filter(Image.id.in_(ids)).all()
                    return all(i.status == "embedded" for i in rows)

            assert wait_until(all_embedded, timeout=120)
            with rt.catalog.session() as session:
                rows = session.query(Image).filter(Image.id.in_(ids)).all()
                assert all(i.error is None for i in rows)
                jobs = session.query(Job).filter(Job.image_id.in_(ids)).all()
                assert {j.status for j in jobs} == {"done"}
            assert client.get("/readyz").status_code == 200
            # The enrichment stages that met the outage waited too, their attempts untouched.
            assert wait_until(lambda: rt.enrichment.queue.outstanding() == 0, timeout=120)
            with rt.catalog.session() as session:
                stages = session.query(ImageStage).all()
                assert stages and {s.status for s in stages} <= {"done", "skipped"}
            # Every photo, before and during the outage, is found as itself.
            for name, result in {**kept, **during}.items():
                hit = nearest(client, photos[name])
                assert hit["image_id"] == result["image_id"], name
