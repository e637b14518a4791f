"""What the command line says when things are not as the user expects: whole ids on narrow
terminals, plain text that survives rich's markup, flags shown as flags, reasons for nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lookalike.cli import app
from support import offline_cli_env

NARROW = {"COLUMNS": "60"}


@pytest.fixture
def env(tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    offline_cli_env(monkeypatch, data, models_dir, NSFW="false")
    return data


def test_listings_print_whole_ids_on_a_narrow_terminal(env: Path) -> None:
    runner = CliRunner()
    for name in ("ci", "a key with a long descriptive name"):
        r = runner.invoke(app, ["apikey", "create", "--user", "alice", "--name", name])
        assert r.exit_code == 0, r.output
    keys = json.loads(runner.invoke(app, ["apikey", "list", "--json"]).stdout)["keys"]
    assert len(keys) == 2
    r = runner.invoke(app, ["apikey", "list"], env=NARROW)
    assert r.exit_code == 0, r.output
    for key in keys:
        assert key["id"] in r.stdout and key["prefix"] in r.stdout
        assert key["name"] in r.stdout
    # The id listed is the one `apikey revoke` takes.
    r = runner.invoke(app, ["apikey", "revoke", keys[0]["id"]])
    assert r.exit_code == 0, r.output

    r = runner.invoke(app, ["model", "list"], env=NARROW)
    assert r.exit_code == 0, r.output
    models = json.loads(runner.invoke(app, ["model", "list", "--json"]).stdout)["models"]
    assert {"efficientnet-lite0", "clip-vit-b-32-laion2b"} <= {m["name"] for m in models}
    for m in models:
        assert m["name"] in r.stdout
        if m["model_id"]:
            assert m["model_id"] in r.stdout


def test_every_listing_offers_json(env: Path) -> None:
    listings = [
        ["apikey", "list"],
        ["model", "list"],
        ["search"],
        ["dedup"],
        ["anomalies"],
        ["ingest"],
        ["reconcile"],
    ]
    runner = CliRunner()
    for command in listings:
        r = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
        assert r.exit_code == 0, r.output
        assert "--json" in r.stdout, command


def test_help_shows_flags_without_a_value_type(env: Path) -> None:
    runner = CliRunner()
    for command in ([], ["search"], ["dedup"], ["model", "list"], ["apikey", "list"]):
        r = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
        assert r.exit_code == 0, r.output
        assert "<bool>" not in r.stdout, command
        assert "--help" in r.stdout
    r = runner.invoke(app, ["search", "--help"], env={"COLUMNS": "200"})
    assert re.search(r"--limit\s+<int", r.stdout)  # options that take a value still say so


def test_text_search_on_an_image_only_model_names_the_extra_to_install(
    env: Path, tmp_path: Path, photos: dict[str, bytes]
) -> None:
    runner = CliRunner()
    image = tmp_path / "coffee.png"
    image.write_bytes(photos["coffee"])
    assert runner.invoke(app, ["ingest", str(image), "--collection", "c"]).exit_code == 0
    query = ["search", "--text", "a cup", "--collection", "c", "--mode", "vector"]
    r = runner.invoke(app, query, env=NARROW)
    assert r.exit_code == 2
    message = " ".join(r.output.split())
    assert "lookalike[export]" in message  # not eaten as rich markup
    assert "lookalike model pull clip-vit-b-32-laion2b" in message
    # One line, broken by the terminal, not by the program.
    assert r.output.strip().count("\n") == 0


def test_exporting_no_hard_negatives_says_why(env: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    runner.invoke(app, ["ingest", str(tmp_path), "--collection", "c"])  # makes the collection
    out = tmp_path / "negatives.jsonl"
    r = runner.invoke(app, ["export", "hard-negatives", "--collection", "c", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_text() == ""
    assert "0 hard negatives written" in r.output
    assert "no hard negatives yet" in r.output and "different" in r.output
