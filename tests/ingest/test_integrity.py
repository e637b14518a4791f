"""Every image ends up in the record it was sent to, through every entry point, at any concurrency.

A few hundred distinct generated files go in through the CLI (one record per file, and `--record`),
`POST /api/images/batch` (per file and `record_name`), record create with several images,
presign + ingest (new and existing records) and the folder watcher. Then, for every image, the
catalog, the stored original, the vector payload and (for a sample) the vector itself must tell
the same story, and `reconcile` must find nothing to repair.
"""

from __future__ import annotations

import hashlib
import io
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage
from sqlalchemy import select
from typer.testing import CliRunner

from lookalike.api.app import create_app
from lookalike.catalog import Image, Record
from lookalike.cli import app as cli
from lookalike.composition import Lookalike
from lookalike.imaging import decode_image
from lookalike.ingest.reconcile import reconcile
from lookalike.ingest.watcher import FolderWatcher
from lookalike.records.service import find_collection
from lookalike.vectors.base import Point
from support import make_settings, offline_cli_env, wait_until

COLLECTION = "integrity"
TENANT = "default"
JPEG_MAGIC = b"\xff\xd8"


def distinct_image(seed: int) -> bytes:
    """A small image no other seed gives: random colour blocks, as PNG or (every third) JPEG."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    pixels = np.kron(blocks, np.ones((8, 8, 1), dtype=np.uint8))
    buf = io.BytesIO()
    if seed % 3 == 0:
        PILImage.fromarray(pixels).save(buf, "JPEG", quality=92)
    else:
        PILImage.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


@dataclass
class Truth:
    """What was sent: each file's sha256 -> the group of files that must share one record, and
    the name (and, where the caller made the record first, the id) that record must have."""

    group: dict[str, str] = field(default_factory=dict)
    name: dict[str, str] = field(default_factory=dict)
    record_id: dict[str, str] = field(default_factory=dict)
    entry: dict[str, str] = field(default_factory=dict)
    seed: int = 0

    def new_file(self, entry: str, group: str, name: str) -> bytes:
        self.seed += 1
        data = distinct_image(self.seed)
        sha = hashlib.sha256(data).hexdigest()
        assert sha not in self.group, "generated files must be distinct"
        self.group[sha], self.name[sha], self.entry[sha] = f"{entry}/{group}", name, entry
        return data


def _write(folder: Path, stem: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = "jpg" if data.startswith(JPEG_MAGIC) else "png"
    path = folder / f"{stem}.{suffix}"
    path.write_bytes(data)
    return path


def _via_cli(truth: Truth, tmp: Path) -> None:
    per_file = tmp / "cli-dir"
    for i in range(96):
        stem = f"cli_{i:03d}"
        # Some in a subfolder: the directory walk is recursive.
        _write(per_file / ("sub" if i % 4 == 0 else ""), stem, truth.new_file("cli", stem, stem))
    shared = [
        _write(tmp / "cli-record", f"album_{i:02d}", truth.new_file("cli", "album", "CLI album"))
        for i in range(24)
    ]
    runner = CliRunner()
    r = runner.invoke(cli, ["ingest", str(per_file), "--collection", COLLECTION])
    assert r.exit_code == 0, r.output
    assert "added 96," in r.output
    r = runner.invoke(
        cli,
        ["ingest", *map(str, shared), "--collection", COLLECTION, "--record", "CLI album"],
    )
    assert r.exit_code == 0, r.output
    assert "added 24," in r.output


def _via_api(truth: Truth, rt: Lookalike) -> None:
    with TestClient(create_app(runtime=rt)) as client:
        # Batch, one record per file.
        files = []
        for i in range(48):
            stem = f"batch_{i:03d}"
            files.append(("images", (f"{stem}.png", truth.new_file("batch", stem, stem))))
        r = client.post("/api/images/batch", data={"collection": COLLECTION}, files=files)
        assert r.status_code == 202, r.text
        assert [x["status"] for x in r.json()] == ["added"] * 48

        # Batch, all files in one record.
        files = [
            ("images", (f"b_album_{i}.png", truth.new_file("batch", "album", "Batch album")))
            for i in range(16)
        ]
        r = client.post(
            "/api/images/batch",
            data={"collection": COLLECTION, "record_name": "Batch album"},
            files=files,
        )
        assert r.status_code == 202, r.text

        # Record create with several images each.
        for k in range(8):
            name = f"Record {k}"
            files = [
                ("images", (f"r{k}_{i}.png", truth.new_file("record", name, name)))
                for i in range(4)
            ]
            r = client.post(
                f"/api/collections/{COLLECTION}/records", data={"name": name}, files=files
            )
            assert r.status_code == 201, r.text
            body = r.json()
            assert [x["status"] for x in body["results"]] == ["added"] * 4
            for sha in [s for s, g in truth.group.items() if g == f"record/{name}"]:
                truth.record_id[sha] = body["record"]["id"]

        # Presign + ingest: a new record each, then more images into one existing record.
        existing: str | None = None
        for i in range(24):
            if i < 16:
                stem = f"presigned_{i:02d}"
                data = truth.new_file("presign", stem, stem)
                record = {"record": {"name": stem}}
            else:
                data = truth.new_file("presign", "presigned_00", "presigned_00")
                assert existing is not None
                record = {"record_id": existing}
            p = client.post("/api/images/presign", json={"collection": COLLECTION})
            assert p.status_code == 201, p.text
            assert client.put(p.json()["url"], content=data).status_code == 201
            r = client.post("/api/images/ingest", json={"key": p.json()["key"], **record})
            assert r.status_code == 202, r.text
            assert r.json()["status"] == "added"
            if i == 0:
                existing = r.json()["record_id"]
    assert rt.ingest.wait_idle(timeout=120)


def _via_watch(truth: Truth, rt: Lookalike, tmp: Path) -> None:
    inbox = tmp / "inbox"
    stems = [f"watched_{i:02d}" for i in range(32)]
    for stem in stems[:16]:  # there before the watch starts
        _write(inbox, stem, truth.new_file("watch", stem, stem))
    collection = find_collection(rt, TENANT, COLLECTION)
    watcher = FolderWatcher(rt, collection, inbox, owner="w", settle_s=0.1)
    watcher.start()
    try:
        for stem in stems[16:]:  # and these while it runs
            _write(inbox, stem, truth.new_file("watch", stem, stem))

        def all_in() -> bool:
            with rt.catalog.session() as s:
                names = set(s.scalars(select(Record.name).where(Record.name.in_(stems))).all())
            return names == set(stems)

        assert wait_until(all_in, timeout=60)
    finally:
        watcher.stop()
    assert rt.ingest.wait_idle(timeout=60)


def check_integrity(rt: Lookalike, truth: Truth, *, spot_checks: int = 12) -> list[str]:
    """Every disagreement between what was sent and what is stored, one line each."""
    problems: list[str] = []
    collection = find_collection(rt, TENANT, COLLECTION)
    with rt.catalog.session() as s:
        rows = s.execute(
            select(
                Image.id,
                Image.sha256,
                Image.status,
                Image.blob_key,
                Record.id,
                Record.name,
            )
            .join(Record, Image.record_id == Record.id)
            .where(Image.collection_id == collection.id)
        ).all()
        record_count = len(
            s.scalars(select(Record.id).where(Record.collection_id == collection.id)).all()
        )
    by_sha = {row[1]: row for row in rows}
    if len(by_sha) != len(rows):
        problems.append(f"{len(rows) - len(by_sha)} images stored twice")
    lost = set(truth.group) - set(by_sha)
    extra = set(by_sha) - set(truth.group)
    problems += [f"file {truth.entry[sha]}/{truth.name[sha]} was not stored" for sha in lost]
    problems += [f"image {by_sha[sha][0]} was never sent" for sha in extra]

    # The partition of images into records equals the one asked for, group for group.
    record_of_group: dict[str, set[str]] = defaultdict(set)
    group_of_record: dict[str, set[str]] = defaultdict(set)
    for sha, (image_id, _, status, blob_key, record_id, record_name) in by_sha.items():
        if sha not in truth.group:
            continue
        group = truth.group[sha]
        record_of_group[group].add(record_id)
        group_of_record[record_id].add(group)
        if record_name != truth.name[sha]:
            problems.append(
                f"image {image_id} ({truth.entry[sha]}/{truth.name[sha]}) is in record "
                f"{record_name!r}"
            )
        if sha in truth.record_id and record_id != truth.record_id[sha]:
            problems.append(f"image {image_id} is in record {record_id}, not the one asked for")
        if status != "embedded":
            problems.append(f"image {image_id} is {status}")
        stored = rt.blobs.get(blob_key) if blob_key else b""
        if hashlib.sha256(stored).hexdigest() != sha:
            problems.append(f"image {image_id}: the stored original is not its bytes")
    problems += [
        f"group {g} was split over records {sorted(ids)}"
        for g, ids in record_of_group.items()
        if len(ids) > 1
    ]
    problems += [
        f"record {rid} mixes groups {sorted(groups)}"
        for rid, groups in group_of_record.items()
        if len(groups) > 1
    ]
    if record_count != len(set(truth.group.values())):
        problems.append(
            f"{record_count} records for {len(set(truth.group.values()))} groups of files"
        )

    # The vector payloads agree with the catalog.
    points = {p.id: p for p in rt.vectors.iter_points(collection.id)}
    if len(points) != len(rows):
        problems.append(f"{len(points)} vectors for {len(rows)} images")
    for image_id, sha, _, _, record_id, _ in rows:
        point = points.get(image_id)
        if point is None:
            problems.append(f"image {image_id} has no vector")
        elif (point.payload.get("record_id"), point.payload.get("sha256")) != (record_id, sha):
            problems.append(f"image {image_id}: the vector payload names another record or file")

    # A sample of stored vectors: each is the embedding of its own original.
    embedder = rt.models.for_collection(collection)
    sample = sorted(rows, key=lambda row: row[1])[:: max(1, len(rows) // spot_checks)]
    ids = [row[0] for row in sample]
    stored_vectors = np.stack(
        [
            p.vectors[collection.vector_name]
            for p in rt.vectors.retrieve(collection.id, ids, with_vectors=True)
        ]
    )
    fresh = embedder.embed_images(
        [
            decode_image(
                rt.blobs.get(row[3]),
                max_bytes=rt.settings.max_image_bytes,
                max_pixels=rt.settings.max_image_pixels,
                reduce_for=embedder.input_size,
            ).image
            for row in sample
        ]
    )
    similarity = _normalise(stored_vectors) @ _normalise(fresh).T
    for i, image_id in enumerate(ids):
        if similarity[i, i] < 0.99 or int(np.argmax(similarity[i])) != i:
            problems.append(f"image {image_id}: its vector is not the embedding of its original")
    return problems


def _normalise(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("workers", [1, 4, 8])
def test_every_entry_point_keeps_each_image_with_its_record(
    workers: int,
    tmp_path: Path,
    models_dir: Path,
    tiny_clip: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data_dir = tmp_path / "data"
    offline_cli_env(
        monkeypatch,
        data_dir,
        models_dir,
        MODEL=tiny_clip,
        INGEST_WORKERS=str(workers),
        # Moderation scores are not what this test is about, and cost 30 ms an image.
        NSFW="false",
    )
    settings = make_settings(
        data_dir, models_dir, model=tiny_clip, ingest_workers=workers, nsfw=False
    )
    truth = Truth()

    _via_cli(truth, tmp_path)
    with Lookalike(settings) as rt:
        _via_api(truth, rt)
        _via_watch(truth, rt, tmp_path)
        assert len(truth.group) >= 250
        problems = check_integrity(rt, truth)
        assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)
        report = reconcile(rt, find_collection(rt, TENANT, COLLECTION), fix=False)
        assert report.findings == [], report.findings

    r = CliRunner().invoke(cli, ["reconcile", "--collection", COLLECTION, "--check"])
    assert r.exit_code == 0, r.output
    assert "no drift" in r.output


def test_reconcile_finds_and_repairs_disagreements_by_image_id(
    rt: Lookalike, photos: dict[str, bytes]
) -> None:
    from lookalike.ingest.pipeline import IngestFile, NewRecord
    from lookalike.records.service import create_collection

    coll = create_collection(rt, TENANT, "drift")
    names = ("chelsea", "coffee", "rocket", "coins")
    results = rt.ingest.add_many(
        coll, [(NewRecord(name=n, owner="a"), IngestFile(photos[n])) for n in names], wait=True
    )
    cat, cup, rocket, coins = (r.image_id or "" for r in results)
    # The cat's vector says it is in the cup's record; the rocket's vector is the cup's
    # embedding under the rocket's id; the coins' original is damaged on disk.
    cup_point = rt.vectors.retrieve(coll.id, [cup], with_vectors=True)[0]
    rt.vectors.set_payload(coll.id, [cat], {"record_id": results[1].record_id})
    rt.vectors.upsert(
        coll.id, [Point(id=rocket, vectors=cup_point.vectors, payload=cup_point.payload)]
    )
    with rt.catalog.session() as s:
        coins_key = s.get(Image, coins).blob_key  # type: ignore[union-attr]
    assert coins_key is not None
    rt.blobs.path_for(coins_key).write_bytes(b"not the coins")  # type: ignore[attr-defined]

    report = reconcile(rt, coll)
    found = {(f.image_id, f.kind, f.repaired) for f in report.findings}
    assert found == {
        (cat, "payload_mismatch", True),
        (rocket, "wrong_vector", True),
        (coins, "damaged_original", False),
    }
    # The catalog is the truth: the payload is rewritten and the rocket embedded again.
    assert rt.vectors.retrieve(coll.id, [cat])[0].payload["record_id"] == results[0].record_id

    def rocket_fixed() -> bool:
        point = rt.vectors.retrieve(coll.id, [rocket], with_vectors=True)[0]
        return point.payload["record_id"] == results[2].record_id

    assert wait_until(rocket_fixed)
    assert rt.ingest.wait_idle(timeout=30)
    rocket_vector = rt.vectors.retrieve(coll.id, [rocket], with_vectors=True)[0].vectors
    assert not np.allclose(rocket_vector[coll.vector_name], cup_point.vectors[coll.vector_name])
    assert {(f.image_id, f.kind) for f in reconcile(rt, coll, fix=False).findings} == {
        (coins, "damaged_original")
    }
