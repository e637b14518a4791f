"""`lookalike doctor` and `lookalike migrate-vectors`: the stores the settings name, checked and
moved, through the command line a user types."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner
from ulid import ULID

from lookalike.cli import app
from support import offline_cli_env


@pytest.fixture
def env(tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    offline_cli_env(monkeypatch, data, models_dir, NSFW="false")
    return data


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_doctor_reports_the_embedded_defaults(env: Path) -> None:
    r = CliRunner().invoke(app, ["doctor", "--json"])
    assert r.exit_code == 0, r.output
    stores = {s["role"]: s for s in json.loads(r.stdout)["stores"]}
    assert set(stores) == {"catalog", "vectors", "blobs"}  # no cache unless configured
    assert stores["catalog"]["engine"] == "sqlite"
    assert stores["vectors"]["engine"] == "edge"
    assert stores["vectors"]["location"] == str(env / "vectors")
    assert stores["blobs"]["engine"] == "local"
    assert all(s["ok"] for s in stores.values())
    table = CliRunner().invoke(app, ["doctor"])
    assert table.exit_code == 0 and "edge" in table.stdout


def test_doctor_names_the_store_that_does_not_answer(env: Path) -> None:
    port = closed_port()
    r = CliRunner().invoke(
        app,
        ["doctor", "--json"],
        env={
            "LOOKALIKE_DATABASE_URL": f"postgresql+psycopg://ann:hunter2@127.0.0.1:{port}/x",
            "LOOKALIKE_CACHE_URL": f"redis://:hunter3@127.0.0.1:{port}/0",
        },
    )
    assert r.exit_code == 1
    stores = {s["role"]: s for s in json.loads(r.stdout)["stores"]}
    assert not stores["catalog"]["ok"] and str(port) in stores["catalog"]["detail"]
    assert stores["catalog"]["engine"] == "postgresql"
    assert not stores["cache"]["ok"] and stores["cache"]["engine"] == "redis"
    assert stores["vectors"]["ok"] and stores["blobs"]["ok"]
    assert "hunter2" not in r.stdout and "hunter3" not in r.stdout


def test_doctor_beside_a_running_server(env: Path, models_dir: Path) -> None:
    """The embedded engine is held by the server: doctor says so, and is still happy."""
    from lookalike.composition import Lookalike
    from support import make_settings

    with Lookalike(make_settings(env, models_dir), start=False):
        r = CliRunner().invoke(app, ["doctor", "--json"])
    assert r.exit_code == 0, r.output
    vectors = next(s for s in json.loads(r.stdout)["stores"] if s["role"] == "vectors")
    assert vectors["ok"] and vectors["detail"].startswith("in use")


def test_bad_engine_names_are_refused(env: Path) -> None:
    r = CliRunner().invoke(app, ["doctor"], env={"LOOKALIKE_VECTORS": "elastic://x:1"})
    assert r.exit_code == 2
    assert "LOOKALIKE_VECTORS: 'elastic://x:1': expected edge, milvus://HOST:PORT" in r.output
    assert "Traceback" not in r.output


def test_sweep_storage_deletes_only_what_no_image_names(
    env: Path, photos: dict[str, bytes]
) -> None:
    runner = CliRunner()
    folder = env.parent / "in"
    folder.mkdir()
    name, data = next(iter(photos.items()))
    (folder / f"{name}.jpg").write_bytes(data)
    r = runner.invoke(app, ["ingest", str(folder), "--collection", "c"])
    assert r.exit_code == 0, r.output

    from lookalike.storage import LocalBlobStore

    blobs = LocalBlobStore(env / "blobs")
    original = blobs.key_for(hashlib.sha256(data).hexdigest())
    assert blobs.exists(original)
    orphan = blobs.put(b"nobody names these bytes", content_type="application/octet-stream")

    r = runner.invoke(app, ["sweep-storage", "--check", "--grace-hours", "0", "--json"])
    assert r.exit_code == 1, r.output
    assert json.loads(r.stdout)["orphan_blobs"] == [orphan]
    assert blobs.exists(orphan)  # --check deletes nothing

    young = runner.invoke(app, ["sweep-storage", "--json"])  # within the default grace period
    assert young.exit_code == 0 and json.loads(young.stdout)["orphan_blobs"] == []
    r = runner.invoke(app, ["sweep-storage", "--grace-hours", "0"])
    assert r.exit_code == 0, r.output
    assert "deleted 1 unreferenced blobs" in r.output
    assert not blobs.exists(orphan)
    assert blobs.exists(original)


def test_migrate_vectors_from_the_embedded_engine_to_pgvector(
    env: Path, photos: dict[str, bytes], pgvector_server: str
) -> None:
    from lookalike.catalog import Catalog, Collection
    from lookalike.core.config import Settings
    from lookalike.vectors import open_vector_index

    runner = CliRunner()
    for collection, names in (("cats", ["chelsea", "coffee", "astronaut"]), ("rest", ["moon"])):
        folder = env.parent / collection
        folder.mkdir()
        for name in names:
            (folder / f"{name}.png").write_bytes(photos[name])
        r = runner.invoke(app, ["ingest", str(folder), "--collection", collection])
        assert r.exit_code == 0, r.output

    r = runner.invoke(
        app, ["migrate-vectors", "--from", "edge", "--to", pgvector_server, "--page-size", "2"]
    )
    assert r.exit_code == 0, r.output
    assert "copied 4 points of 2 collections" in r.output

    settings = Settings(data_dir=env, _env_file=None)  # type: ignore[call-arg]
    source = open_vector_index(settings)
    target = open_vector_index(settings.model_copy(update={"vectors": pgvector_server}))
    try:
        catalog = Catalog(settings.catalog_url)
        with catalog.session() as session:
            collections = session.query(Collection).all()
        catalog.close()
        assert {c.name for c in collections} == {"cats", "rest"}
        for coll in collections:
            assert target.vector_specs(coll.id) == source.vector_specs(coll.id)
            before = {p.id: p for p in source.iter_points(coll.id, with_vectors=True)}
            after = {p.id: p for p in target.iter_points(coll.id, with_vectors=True)}
            assert before.keys() == after.keys()
            for pid, point in before.items():
                assert after[pid].payload == point.payload
                for vname, vector in point.vectors.items():
                    np.testing.assert_allclose(after[pid].vectors[vname], vector, atol=1e-6)
    finally:
        source.close()
        target.close()

    again = runner.invoke(app, ["migrate-vectors", "--from", "edge", "--to", pgvector_server])
    assert again.exit_code == 0 and "copied 0 points" in again.output  # resumed: all done
    fresh = runner.invoke(
        app, ["migrate-vectors", "--from", "edge", "--to", pgvector_server, "--restart"]
    )
    assert fresh.exit_code == 0 and "copied 4 points" in fresh.output  # idempotent upserts


def test_copy_collection_resumes_after_an_interruption(tmp_path: Path) -> None:
    """Interrupted right after a page was written (where a crash or Ctrl-C lands), a copy
    resumed from the offset it reported ends with every point, none twice."""
    from lookalike.vectors.base import IndexSettings, Point, VectorSpec
    from lookalike.vectors.migrate import copy_collection
    from lookalike.vectors.qdrant_edge import QdrantEdgeIndex

    source, target = QdrantEdgeIndex(tmp_path / "a"), QdrantEdgeIndex(tmp_path / "b")
    try:
        source.create_collection("c", [VectorSpec("v", 4)], IndexSettings(), {})
        rng = np.random.default_rng(0)
        ids = [str(ULID.from_int((1 << 100) + i)) for i in range(23)]
        source.upsert(
            "c",
            [
                Point(i, {"v": rng.standard_normal(4).astype(np.float32)}, {"k": n})
                for n, i in enumerate(ids)
            ],
        )
        offsets: list[str | None] = []

        def crash_after_two(count: int, offset: str | None) -> None:
            offsets.append(offset)
            if len(offsets) == 2:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            copy_collection(
                source,
                target,
                "c",
                settings=IndexSettings(),
                payload_indexes={},
                page_size=5,
                on_page=crash_after_two,
            )
        assert target.count("c") == 10
        rest = copy_collection(
            source,
            target,
            "c",
            settings=IndexSettings(),
            payload_indexes={},
            page_size=5,
            resume_from=offsets[-1],
        )
        assert rest == 13
        assert sorted(p.id for p in target.iter_points("c")) == ids
    finally:
        source.close()
        target.close()
