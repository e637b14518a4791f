"""The `lookalike` command line on a real data directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from badfiles import text_named_jpg
from lookalike.auth.tokens import verify_token
from lookalike.cli import app
from lookalike.composition import Lookalike
from lookalike.core.config import Settings
from lookalike.demo.samples import derived_set
from support import noise_png, offline_cli_env


@pytest.fixture
def env(tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    offline_cli_env(monkeypatch, data, models_dir)
    return data


def test_ingest_then_search(env: Path, tmp_path: Path, photos: dict[str, bytes]) -> None:
    folder = tmp_path / "pics"
    folder.mkdir()
    for name in ("chelsea", "coffee", "rocket", "astronaut"):
        (folder / f"{name}.png").write_bytes(photos[name])
    (folder / "fake.jpg").write_bytes(text_named_jpg())
    runner = CliRunner()

    r = runner.invoke(app, ["ingest", str(folder), "--collection", "pics"])
    assert r.exit_code == 0, r.output
    assert "added 4, skipped as duplicate 0, rejected 1" in r.output
    assert "fake.jpg" in r.output

    r = runner.invoke(app, ["ingest", str(folder / "chelsea.png"), "--collection", "pics"])
    assert "added 0, skipped as duplicate 1" in r.output

    query = ["search", str(folder / "coffee.png"), "--collection", "pics", "--limit", "3"]
    r = runner.invoke(app, query)
    assert r.exit_code == 0, r.output
    assert "weaker matches (below the relevance cut-off 0.55) are hidden" in r.output
    r = runner.invoke(app, [*query, "--json"])
    answer = json.loads(r.stdout)
    assert [h["name"] for h in answer["hits"]] == ["coffee"] and answer["weaker"]
    r = runner.invoke(app, [*query, "--json", "--all"])
    assert r.exit_code == 0, r.output
    hits = json.loads(r.stdout)["hits"]
    assert hits[0]["name"] == "coffee" and len(hits) == 3
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

    r = runner.invoke(
        app, ["search", "--image-id", hits[0]["image_id"], "--collection", "pics", "--json"]
    )
    assert hits[0]["image_id"] not in [h["image_id"] for h in json.loads(r.stdout)["hits"]]

    r = runner.invoke(
        app, ["search", "--text", "a cat", "--collection", "pics", "--mode", "vector"]
    )
    assert r.exit_code == 2 and "text" in r.output
    # Hybrid, the default, answers by keyword where the model embeds images only, and says so.
    r = runner.invoke(app, ["search", "--text", "a cat", "--collection", "pics"])
    assert r.exit_code == 0 and "images only" in " ".join(r.output.split())

    r = runner.invoke(app, ["search", "--text", "a cat", "--collection", "missing"])
    assert r.exit_code == 2 and "missing" in r.output


def test_one_record_for_several_files(env: Path, tmp_path: Path, photos: dict[str, bytes]) -> None:
    paths = []
    for name in ("coins", "camera"):
        p = tmp_path / f"{name}.png"
        p.write_bytes(photos[name])
        paths.append(str(p))
    r = CliRunner().invoke(
        app, ["ingest", *paths, "--collection", "c", "--record", "Both", "--json"]
    )
    assert r.exit_code == 0, r.output
    results = json.loads(r.stdout)["results"]
    assert len({x["record_id"] for x in results}) == 1


def test_token_create(env: Path) -> None:
    r = CliRunner().invoke(app, ["token", "create", "--user", "alice", "--tenant", "acme"])
    assert r.exit_code == 0, r.output
    principal = verify_token(Settings(_env_file=None), r.stdout.strip())  # type: ignore[call-arg]
    assert (principal.user, principal.tenant) == ("alice", "acme")


def test_model_list(env: Path) -> None:
    r = CliRunner().invoke(app, ["model", "list"])
    assert r.exit_code == 0, r.output
    assert "efficientnet-lite0" in r.output and "clip-vit-b-32-laion2b" in r.output


def test_anomalies(env: Path, tmp_path: Path, photos: dict[str, bytes]) -> None:
    folder = tmp_path / "pics"
    folder.mkdir()
    # Four photos of one cat, and noise.
    copies = derived_set({"chelsea": photos["chelsea"]}, transforms=[("jpeg", {}), ("flip", {})])
    for copy in copies:
        (folder / copy.name).write_bytes(copy.data)
    (folder / "chelsea.png").write_bytes(photos["chelsea"])
    (folder / "noise.png").write_bytes(noise_png())
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", str(folder), "--collection", "pics"]).exit_code == 0

    r = runner.invoke(
        app, ["anomalies", "--collection", "pics", "--json", "--sort", "ood", "--all"]
    )
    assert r.exit_code == 0, r.output
    body = json.loads(r.stdout)
    assert body["total"] == 4 and body["items"][0]["name"] == "noise"
    assert set(body["items"][0]["scores"]) == {"dnn", "density", "ood"}

    r = runner.invoke(app, ["anomalies", "-c", "pics", "--recompute", "--limit", "2"])
    assert r.exit_code == 0, r.output
    assert "scored 4 images" in r.output and "noise" in r.stdout

    r = runner.invoke(app, ["anomalies", "-c", "pics", "--sort", "quality"])
    assert r.exit_code == 2 and "sort must be one of" in r.output
    r = runner.invoke(app, ["anomalies", "-c", "missing"])
    assert r.exit_code == 2 and "missing" in r.output


def test_ingest_returns_searchable_and_says_what_is_left_to_enrich(
    env: Path, tmp_path: Path, photos: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "pics"
    folder.mkdir()
    for name in ("chelsea", "coffee", "rocket"):
        (folder / f"{name}.png").write_bytes(photos[name])
    runner = CliRunner()
    # No runner in this process: what ingest leaves queued stays queued.
    monkeypatch.setenv("LOOKALIKE_ENRICHMENT", "false")
    r = runner.invoke(app, ["ingest", str(folder), "--collection", "pics", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["enrichment_queued"] == 3
    (folder / "astronaut.png").write_bytes(photos["astronaut"])
    r = runner.invoke(app, ["ingest", str(folder / "astronaut.png"), "--collection", "pics"])
    assert "all searchable" in r.output
    assert "4 images still to enrich" in r.output

    # `enrich` runs them and reports per stage; a second time there is nothing to do.
    r = runner.invoke(app, ["enrich"])
    assert r.exit_code == 0, r.output
    assert "quality 4" in r.output and "thumbnail 4" in r.output
    with Lookalike(Settings(_env_file=None)) as rt:  # type: ignore[call-arg]
        assert rt.enrichment.queue.outstanding() == 0

    # --wait: searchable, then enriched, before it returns.
    (folder / "moon.png").write_bytes(photos["moon"])
    r = runner.invoke(app, ["ingest", str(folder / "moon.png"), "--collection", "pics", "--wait"])
    assert r.exit_code == 0, r.output
    assert "still to enrich" not in r.output
    with Lookalike(Settings(_env_file=None)) as rt:  # type: ignore[call-arg]
        assert rt.enrichment.queue.outstanding() == 0


def test_ingest_names_the_records_its_files_copy(
    env: Path, tmp_path: Path, photos: dict[str, bytes]
) -> None:
    folder = tmp_path / "pics"
    folder.mkdir()
    for name in ("coffee", "rocket"):
        (folder / f"{name}.png").write_bytes(photos[name])
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", str(folder), "--collection", "pics"]).exit_code == 0
    copies = tmp_path / "copies"
    copies.mkdir()
    small = next(d for d in derived_set({"coffee": photos["coffee"]}) if "resize" in d.name)
    (copies / "cup.jpg").write_bytes(small.data)
    (copies / "moon.png").write_bytes(photos["moon"])
    (copies / "rocket.png").write_bytes(photos["rocket"])
    r = runner.invoke(app, ["ingest", str(copies), "--collection", "pics"])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())  # as wide as the terminal is
    assert "cup.jpg: near-exact copy of 'coffee'" in said
    assert "rocket.png: already stored as 'rocket'" in said
    assert "moon.png:" not in said
    r = runner.invoke(app, ["ingest", str(copies / "cup.jpg"), "--collection", "pics", "--json"])
    (result,) = json.loads(r.stdout)["results"]
    assert result["duplicate_of"]["tier"] == "exact"
