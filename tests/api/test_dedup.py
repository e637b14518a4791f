"""Duplicates over HTTP on real ingested photos: verdicts at ingest, sweeps, actions, feedback."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from lookalike.composition import Lookalike
from lookalike.core.config import Settings
from lookalike.demo.samples import transform
from support import bearer, jpeg, open_image, settle, wait_until


@pytest.fixture
def client(secured_client: TestClient) -> TestClient:
    return secured_client


def _add(
    client: TestClient, headers: dict[str, str], name: str, data: bytes, tags: str = ""
) -> str:
    r = client.post(
        "/api/collections/dup/records?wait=true",
        headers=headers,
        data={"name": name, "tags": tags},
        files=[("images", (f"{name}.jpg", data, "image/jpeg"))],
    )
    assert r.status_code == 201, r.text
    result = r.json()["results"][0]
    assert result["status"] == "added", result
    return str(result["image_id"])


@pytest.fixture
def shelf(client: TestClient, secured: Settings, photos: dict[str, bytes]) -> dict[str, str]:
    """Originals first, then copies: coffee x3, chelsea x2, and a rocket on its own."""
    alice = bearer(secured)
    assert client.post("/api/collections", json={"name": "dup"}, headers=alice).status_code == 201
    coffee, chelsea = open_image(photos["coffee"]), open_image(photos["chelsea"])
    ids = {
        "coffee": _add(client, alice, "coffee", jpeg(coffee, 95), "cup"),
        "chelsea": _add(client, alice, "chelsea", jpeg(chelsea, 95), "cat"),
        "rocket": _add(client, alice, "rocket", jpeg(open_image(photos["rocket"]), 95)),
    }
    ids["coffee_small"] = _add(
        client, alice, "coffee_small", jpeg(transform(coffee, "resize", scale=0.5), 80), "small"
    )
    ids["coffee_bright"] = _add(
        client, alice, "coffee_bright", jpeg(transform(coffee, "brightness", factor=1.3), 60)
    )
    ids["chelsea_gray"] = _add(
        client, alice, "chelsea_gray", jpeg(transform(chelsea, "grayscale"), 90)
    )
    settle(client)
    return ids


def _clusters(client: TestClient, headers: dict[str, str], **body: Any) -> list[dict[str, Any]]:
    r = client.post("/api/search/cluster", headers=headers, json={"collection": "dup", **body})
    assert r.status_code == 200, r.text
    return list(r.json()["clusters"])


def _cluster_of(client: TestClient, headers: dict[str, str], ids: set[str]) -> dict[str, Any]:
    """A fresh sweep's cluster made of exactly `ids`."""
    return next(c for c in _clusters(client, headers) if _members(c) == ids)


def _members(cluster: dict[str, Any]) -> set[str]:
    return {m["image_id"] for m in cluster["members"]}


def _near(clusters: list[dict[str, Any]]) -> list[set[str]]:
    return [_members(c) for c in clusters if c["tier"] == "near_exact"]


def test_verdict_at_ingest(
    client: TestClient, secured: Settings, shelf: dict[str, str], photos: dict[str, bytes]
) -> None:
    alice = bearer(secured)
    same_bytes = jpeg(open_image(photos["coffee"]), 95)
    r = client.post(
        "/api/images/batch",
        headers=alice,
        data={"collection": "dup"},
        files=[("images", ("again.jpg", same_bytes, "image/jpeg"))],
    )
    result = r.json()[0]
    assert result["status"] == "duplicate"
    coffee = client.get(f"/api/images/{shelf['coffee']}", headers=alice).json()
    assert result["duplicate"] == {
        "tier": "exact",
        "image_id": shelf["coffee"],
        "score": 1.0,
        "record_id": coffee["record_id"],
        "record_name": "coffee",
    }
    # A record made only of a stored image is not made at all (it would stay empty).
    records_before = client.get("/api/collections/dup/records", headers=alice).json()["total"]
    r = client.post(
        "/api/collections/dup/records",
        headers=alice,
        data={"name": "again"},
        files=[("images", ("again.jpg", same_bytes, "image/jpeg"))],
    )
    assert r.status_code == 409, r.text
    assert shelf["coffee"] in r.json()["error"]["message"]
    assert (
        client.get("/api/collections/dup/records", headers=alice).json()["total"] == records_before
    )
    for copy, original in (
        ("coffee_small", "coffee"),
        ("coffee_bright", "coffee"),
        ("chelsea_gray", "chelsea"),
    ):
        verdict = client.get(f"/api/images/{shelf[copy]}", headers=alice).json()["duplicate"]
        assert verdict["tier"] == "near_exact", (copy, verdict)
        assert verdict["image_id"] in {shelf[original], shelf.get("coffee_small")}
        assert 0.0 < verdict["score"] <= 1.0
    for alone in ("coffee", "chelsea", "rocket"):
        assert client.get(f"/api/images/{shelf[alone]}", headers=alice).json()["duplicate"] is None


def test_sweep_finds_copies_and_suggests_the_biggest(
    client: TestClient, secured: Settings, shelf: dict[str, str]
) -> None:
    alice = bearer(secured)
    clusters = _clusters(client, alice)
    near = _near(clusters)
    coffee = {shelf["coffee"], shelf["coffee_small"], shelf["coffee_bright"]}
    assert coffee in near
    assert {shelf["chelsea"], shelf["chelsea_gray"]} in near
    assert all(shelf["rocket"] not in _members(c) for c in clusters)
    cup = next(c for c in clusters if _members(c) == coffee)
    # Resolution first: the half-size copy is never the keeper.
    assert cup["keeper"] in {shelf["coffee"], shelf["coffee_bright"]}
    assert cup["members"][0]["image_id"] == cup["keeper"] and cup["members"][0]["score"] == 1.0
    assert cup["status"] == "open" and cup["members"][0]["preview_url"].endswith("/thumbnail")

    listed = client.get("/api/collections/dup/clusters?tier=near_exact", headers=alice).json()
    assert listed["total"] == len(near)
    # A second sweep replaces the open clusters instead of piling them up.
    _clusters(client, alice)
    assert client.get("/api/collections/dup/clusters", headers=alice).json()["total"] == len(
        clusters
    )


def test_not_duplicate_is_never_suggested_again_until_changed(
    client: TestClient, secured: Settings, shelf: dict[str, str]
) -> None:
    alice = bearer(secured)
    pair = {shelf["chelsea"], shelf["chelsea_gray"]}
    cat = _cluster_of(client, alice, pair)
    r = client.post(
        f"/api/clusters/{cat['id']}/mark", headers=alice, json={"verdict": "not_duplicate"}
    )
    assert r.status_code == 200 and r.json()["status"] == "not_duplicate"
    again = _clusters(client, alice)
    assert all(not pair <= _members(c) for c in again)

    # Contradicting decision: the later one wins and the history keeps both.
    r = client.post(
        "/api/duplicates/pairs",
        headers=alice,
        json={"image_a": shelf["chelsea_gray"], "image_b": shelf["chelsea"], "verdict": "same"},
    )
    assert r.status_code == 201, r.text
    grouped = [c for c in _clusters(client, alice) if _members(c) == pair]
    assert grouped and grouped[0]["status"] == "duplicate"
    history = client.get(f"/api/images/{shelf['chelsea']}/pairs", headers=alice).json()
    assert [h["verdict"] for h in history] == ["different", "same"]


def test_tag_and_merge(client: TestClient, secured: Settings, shelf: dict[str, str]) -> None:
    alice = bearer(secured)
    coffee = {shelf["coffee"], shelf["coffee_small"], shelf["coffee_bright"]}
    cup = _cluster_of(client, alice, coffee)
    r = client.post(f"/api/clusters/{cup['id']}/tag", headers=alice, json={"tags": ["reviewed"]})
    assert r.status_code == 200, r.text
    for image_id in coffee:
        record_id = client.get(f"/api/images/{image_id}", headers=alice).json()["record_id"]
        assert "reviewed" in client.get(f"/api/records/{record_id}", headers=alice).json()["tags"]

    r = client.post(
        f"/api/clusters/{cup['id']}/merge",
        headers=alice,
        json={"keeper": shelf["coffee"], "mode": "drop"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "merged" and r.json()["keeper"] == shelf["coffee"]
    for gone in ("coffee_small", "coffee_bright"):
        assert client.get(f"/api/images/{shelf[gone]}", headers=alice).status_code == 404
    keeper = client.get(f"/api/images/{shelf['coffee']}", headers=alice).json()
    record = client.get(f"/api/records/{keeper['record_id']}", headers=alice).json()
    merged = record["metadata"]["merged"]
    assert {m["name"] for m in merged} == {"coffee_small", "coffee_bright"}
    assert {"cup", "small", "reviewed"} <= set(record["tags"])
    # The dropped copies are out of search too.
    hits = client.post(
        "/api/search/similar",
        headers=alice,
        json={"collection": "dup", "image_id": shelf["coffee"], "limit": 10},
    ).json()["hits"]
    assert not {h["image_id"] for h in hits} & {shelf["coffee_small"], shelf["coffee_bright"]}
    again = client.post(f"/api/clusters/{cup['id']}/merge", headers=alice, json={})
    assert again.status_code == 409


def test_merge_move_keeps_every_image_in_the_keepers_record(
    client: TestClient, secured: Settings, shelf: dict[str, str]
) -> None:
    alice = bearer(secured)
    pair = {shelf["chelsea"], shelf["chelsea_gray"]}
    cat = _cluster_of(client, alice, pair)
    r = client.post(f"/api/clusters/{cat['id']}/merge", headers=alice, json={"mode": "move"})
    assert r.status_code == 200, r.text
    keeper = client.get(f"/api/images/{r.json()['keeper']}", headers=alice).json()
    record = client.get(f"/api/records/{keeper['record_id']}", headers=alice).json()
    assert {i["id"] for i in record["images"]} == pair


def test_bad_input(
    client: TestClient, secured: Settings, shelf: dict[str, str], photos: dict[str, bytes]
) -> None:
    alice, mallory = bearer(secured), bearer(secured, "mallory", "evil")
    assert client.post("/api/collections", json={"name": "empty"}, headers=alice).status_code == 201
    r = client.post("/api/search/cluster", headers=alice, json={"collection": "empty"})
    assert r.status_code == 200 and r.json()["clusters"] == [] and r.json()["stats"]["points"] == 0

    for thresholds in ({"phash_gate": 40}, {"near_exact_cosine": 2}, {"similar_cosine": 0}):
        r = client.post(
            "/api/search/cluster",
            headers=alice,
            json={"collection": "dup", "thresholds": thresholds},
        )
        assert r.status_code == 422, r.text
    r = client.post(
        "/api/search/cluster",
        headers=alice,
        json={"collection": "dup", "thresholds": {"near_exact_cosine": 0.5, "similar_cosine": 0.9}},
    )
    assert r.status_code == 422 and "similar_cosine" in r.json()["error"]["message"]
    r = client.patch("/api/collections/dup", headers=alice, json={"dedup": {"phash_gate": 99}})
    assert r.status_code == 422

    # Another tenant's ids: not found, nothing changed.
    assert client.post("/api/collections", json={"name": "dup"}, headers=mallory).status_code == 201
    r = client.post(
        "/api/search/cluster",
        headers=mallory,
        json={"collection": "dup", "image_ids": [shelf["coffee"], shelf["coffee_small"]]},
    )
    assert r.status_code == 404, r.text
    cluster_id = _clusters(client, alice)[0]["id"]
    for path, body in (
        (f"/api/clusters/{cluster_id}/mark", {"verdict": "duplicate"}),
        (f"/api/clusters/{cluster_id}/merge", {"mode": "drop"}),
        (f"/api/clusters/{cluster_id}/tag", {"tags": ["x"]}),
    ):
        assert client.post(path, headers=mallory, json=body).status_code == 404
    r = client.post(
        "/api/duplicates/pairs",
        headers=mallory,
        json={"image_a": shelf["coffee"], "image_b": shelf["rocket"], "verdict": "same"},
    )
    assert r.status_code == 404
    assert client.get(f"/api/clusters/{cluster_id}", headers=alice).json()["status"] == "open"
    r = client.post(
        "/api/duplicates/pairs",
        headers=alice,
        json={"image_a": shelf["coffee"], "image_b": shelf["coffee"], "verdict": "same"},
    )
    assert r.status_code == 422
    r = client.post(
        f"/api/clusters/{cluster_id}/mark",
        headers=alice,
        json={"verdict": "duplicate", "image_ids": [shelf["rocket"]]},
    )
    assert r.status_code == 422


def test_background_sweep_and_hard_negatives(
    client: TestClient, secured: Settings, shelf: dict[str, str]
) -> None:
    alice = bearer(secured)
    r = client.post(
        "/api/search/cluster", headers=alice, json={"collection": "dup", "background": True}
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]

    def finished() -> bool:
        return client.get(f"/api/jobs/{job_id}", headers=alice).json()["status"] in (
            "done",
            "failed",
        )

    assert wait_until(finished, timeout=60)
    job = client.get(f"/api/jobs/{job_id}", headers=alice).json()
    assert job["status"] == "done", job
    assert (
        job["result"]["stats"]["points"] == len(shelf) and job["result"]["stats"]["clusters"] >= 2
    )
    listed = client.get("/api/collections/dup/clusters", headers=alice).json()
    assert listed["total"] == job["result"]["stats"]["clusters"]

    client.post(
        "/api/feedback",
        headers=alice,
        json={
            "image_id": shelf["rocket"],
            "action": "irrelevant",
            "query": {"image_id": shelf["coffee"]},
        },
    )
    client.post(
        "/api/duplicates/pairs",
        headers=alice,
        json={"image_a": shelf["coffee"], "image_b": shelf["chelsea"], "verdict": "different"},
    )
    negatives = client.get("/api/collections/dup/hard-negatives", headers=alice).json()
    kinds = {(n["kind"], n.get("image_id") or n.get("image_a")) for n in negatives}
    assert ("search", shelf["rocket"]) in kinds
    assert any(n["kind"] == "pair" and n["label"] == "different" for n in negatives)


def test_cli_dedup_json(tmp_path: Any, models_dir: Any, photos: dict[str, bytes]) -> None:
    import json

    from typer.testing import CliRunner

    from lookalike.cli import app
    from support import make_settings

    folder = tmp_path / "in"
    folder.mkdir()
    coffee = open_image(photos["coffee"])
    (folder / "coffee.jpg").write_bytes(jpeg(coffee, 95))
    (folder / "coffee_copy.jpg").write_bytes(jpeg(transform(coffee, "resize", scale=0.5), 70))
    (folder / "rocket.jpg").write_bytes(jpeg(open_image(photos["rocket"]), 95))
    settings = make_settings(tmp_path / "data", models_dir)
    env = {
        "LOOKALIKE_DATA_DIR": str(settings.data_dir),
        "LOOKALIKE_MODEL_CACHE_DIR": str(models_dir),
        "LOOKALIKE_MODEL": "efficientnet-lite0",
        "LOOKALIKE_MODEL_DOWNLOAD": "false",
    }
    runner = CliRunner()
    r = runner.invoke(app, ["ingest", str(folder), "--collection", "c"], env=env)
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["dedup", "--collection", "c", "--json"], env=env)
    assert r.exit_code == 0, r.output
    clusters = json.loads(r.stdout)["clusters"]
    near = [c for c in clusters if c["tier"] == "near_exact"]
    assert len(near) == 1
    assert {m["name"] for m in near[0]["members"]} == {"coffee", "coffee_copy"}
    assert set(near[0]["members"][0]) >= {"image_id", "record_id", "name", "score"}
    with Lookalike(settings) as rt:
        assert rt.settings.data_dir == settings.data_dir
    r = runner.invoke(app, ["dedup", "--collection", "nope", "--json"], env=env)
    assert r.exit_code == 2 and "nope" in r.output


def test_an_upload_that_waits_is_told_which_record_it_copies(
    client: TestClient, secured: Settings, shelf: dict[str, str], photos: dict[str, bytes]
) -> None:
    alice = bearer(secured)
    copy = jpeg(transform(open_image(photos["coffee"]), "resize", scale=0.6), 85)
    r = client.post(
        "/api/collections/dup/records?wait=true",
        headers=alice,
        data={"name": "cup again"},
        files=[
            ("images", ("cup.jpg", copy, "image/jpeg")),
            ("images", ("camera.jpg", jpeg(open_image(photos["camera"]), 90), "image/jpeg")),
        ],
    )
    assert r.status_code == 201, r.text
    cup, camera = r.json()["results"]
    verdict = cup["duplicate"]
    cups = {"coffee", "coffee_small", "coffee_bright"}
    assert verdict["tier"] == "near_exact" and verdict["record_name"] in cups, verdict
    assert verdict["image_id"] in {shelf[name] for name in cups}
    pointed = client.get(f"/api/images/{verdict['image_id']}", headers=alice).json()
    assert verdict["record_id"] == pointed["record_id"]
    assert camera["status"] == "added" and camera["duplicate"] is None
    # The same verdict is what the image says afterwards, and its stage is done.
    image = client.get(f"/api/images/{cup['image_id']}", headers=alice).json()
    assert image["duplicate"] == verdict
    assert image["enrichment"]["duplicate"] == "done"

    # Re-uploading bytes that are stored: the record they are in is named too.
    record_id = r.json()["record"]["id"]
    r = client.post(
        f"/api/records/{record_id}/images?wait=true",
        headers=alice,
        files=[("images", ("again.jpg", copy, "image/jpeg"))],
    )
    (again,) = r.json()
    assert again["status"] == "duplicate"
    assert again["duplicate"]["tier"] == "exact"
    assert again["duplicate"]["record_name"] == "cup again"


def test_each_group_is_shown_once_with_copy_groups_nested_in_their_scene(
    client: TestClient, secured: Settings, shelf: dict[str, str], photos: dict[str, bytes]
) -> None:
    alice = bearer(secured)
    # A second shot of the cup scene (an overlapping crop): similar to the cups, no copy.
    shot = jpeg(transform(open_image(photos["coffee"]), "crop", keep=0.7), 90)
    _add(client, alice, "coffee_shot", shot)
    clusters = _clusters(client, alice)
    by_id = {c["id"]: c for c in clusters}
    assert len({frozenset(_members(c)) for c in clusters}) == len(clusters)
    assert any(c["parent_id"] for c in clusters), [(c["tier"], len(c["members"])) for c in clusters]
    for c in clusters:
        if c["parent_id"] is not None:
            parent = by_id[c["parent_id"]]
            assert c["tier"] == "near_exact" and parent["tier"] == "similar"
            assert c["id"] in parent["groups"] and _members(c) < _members(parent)
        for group in c["groups"]:
            assert by_id[group]["parent_id"] == c["id"]
    listed = client.get("/api/collections/dup/clusters", headers=alice).json()["clusters"]
    assert {c["id"]: (c["parent_id"], c["groups"]) for c in listed} == {
        c["id"]: (c["parent_id"], c["groups"]) for c in clusters
    }


def test_an_upload_is_told_a_copy_from_another_shot(
    client: TestClient, secured: Settings, photos: dict[str, bytes]
) -> None:
    """The issue's first report: the other view of a stereo pair was called a near-exact copy
    and a cropped or framed copy only similar. Uploads are told the truth, with the record."""
    alice = bearer(secured)
    assert client.post("/api/collections", json={"name": "dup"}, headers=alice).status_code == 201
    left = open_image(photos["motorcycle_left"])
    _add(client, alice, "bike left", jpeg(left, 92))
    copies = {
        "bike cropped": transform(left, "crop", keep=0.87),
        "bike framed": transform(left, "border", width=0.08),
        "bike widescreen": transform(left, "letterbox", aspect=21 / 9),
        "bike stamped": transform(left, "watermark"),
    }
    for name, image in copies.items():
        r = client.post(
            "/api/collections/dup/records?wait=true",
            headers=alice,
            data={"name": name},
            files=[("images", (f"{name}.jpg", jpeg(image, 85), "image/jpeg"))],
        )
        verdict = r.json()["results"][0]["duplicate"]
        assert verdict["tier"] == "near_exact", (name, verdict)
        assert verdict["record_name"] in {"bike left", *copies}, (name, verdict)
    r = client.post(
        "/api/collections/dup/records?wait=true",
        headers=alice,
        data={"name": "bike right"},
        files=[("images", ("right.png", photos["motorcycle_right"], "image/png"))],
    )
    verdict = r.json()["results"][0]["duplicate"]
    assert verdict["tier"] == "similar", verdict
    assert verdict["record_name"] in {"bike left", *copies}
    # A sweep agrees: one similar group of the scene, the copies nested in it, the right view
    # in none of the copy groups.
    clusters = _clusters(client, alice)
    right_id = r.json()["results"][0]["image_id"]
    near = [c for c in clusters if c["tier"] == "near_exact"]
    assert len(near) == 1 and len(near[0]["members"]) == 1 + len(copies)
    assert right_id not in _members(near[0])
    scene = next(c for c in clusters if c["tier"] == "similar")
    assert right_id in _members(scene) and near[0]["parent_id"] == scene["id"]
