"""The duplicate sweep on distinct photos plus edited copies, checked against the truth.

Forty-odd different photographs (the sample photos, the largest of them cut into four quarters
that share no pixels) and edited copies of each go in through `lookalike ingest` as one record
per file; `lookalike dedup --json` must never put two different photographs into one `exact` or
`near_exact` cluster, must find nearly every copy, and must keep the two views of a stereo
pair (one scene, two shots) apart as `similar`.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from lookalike.cli import app as cli
from lookalike.demo.samples import derived_set, sample_photos
from support import offline_cli_env

# Cut into quarters: four different pictures each, none of which is a crop of another.
QUARTERED = (
    "astronaut",
    "hubble_deep_field",
    "retina",
    "coffee",
    "rocket",
    "grace_hopper",
)
# Two shots of one scene: `similar`, never `near_exact`.
STEREO = ("motorcycle_left", "motorcycle_right")
EDITS = (
    ("resize", {"scale": 0.5}),
    ("jpeg", {"quality": 40}),
    ("crop", {"keep": 0.85}),
    ("brightness", {"factor": 1.3}),
    ("text_overlay", {"text": "lookalike sample"}),
    ("border", {"width": 0.06}),
    ("letterbox", {"aspect": 16 / 9}),
    ("perspective", {"strength": 0.08}),
    ("squash", {"x": 1.0, "y": 0.75}),
)


def distinct_originals() -> dict[str, bytes]:
    originals: dict[str, bytes] = {}
    for name, data in sample_photos().items():
        if name not in QUARTERED:
            originals[name] = data
            continue
        with Image.open(io.BytesIO(data)) as opened:
            image = opened.convert("RGB")
        w, h = image.width // 2, image.height // 2
        for i, (x, y) in enumerate([(0, 0), (w, 0), (0, h), (w, h)]):
            buf = io.BytesIO()
            image.crop((x, y, x + w, y + h)).save(buf, "PNG")
            originals[f"{name}_q{i}"] = buf.getvalue()
    return originals


@pytest.fixture
def env(tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    offline_cli_env(monkeypatch, tmp_path / "data", models_dir, NSFW="false")
    return tmp_path


def test_sweep_never_joins_two_different_photos(env: Path) -> None:
    originals = distinct_originals()
    assert len(originals) >= 40
    folder = env / "photos"
    folder.mkdir()
    for name, data in originals.items():
        (folder / f"{name}.png").write_bytes(data)
    for copy in derived_set(originals, transforms=EDITS):
        (folder / copy.name).write_bytes(copy.data)
    files = len(originals) * (1 + len(EDITS))

    runner = CliRunner()
    r = runner.invoke(cli, ["ingest", str(folder), "--collection", "edits"])
    assert r.exit_code == 0, r.output
    assert f"added {files}," in r.output
    r = runner.invoke(cli, ["dedup", "--collection", "edits", "--json"])
    assert r.exit_code == 0, r.output
    clusters = json.loads(r.stdout)["clusters"]

    def photo(member: dict[str, str]) -> str:
        return member["name"].split("__")[0]  # "coffee_q1__jpeg" is a copy of "coffee_q1"

    near = [c for c in clusters if c["tier"] in ("exact", "near_exact")]
    mixed = [
        sorted({photo(m) for m in c["members"]})
        for c in near
        if len({photo(m) for m in c["members"]}) > 1
    ]
    assert mixed == [], f"clusters that join different photos: {mixed}"
    # Not vacuous: nearly every copy is in one near-exact cluster with its original.
    with_original = {
        m["name"]
        for c in near
        for m in c["members"]
        if any(o["name"] == photo(m) for o in c["members"])
    }
    copies = files - len(originals)
    found = len(with_original) - sum(1 for name in with_original if "__" not in name)
    assert found >= 0.95 * copies, f"{found} of {copies} copies found as near_exact"
    # The stereo pair: together as similar, never as near-exact.
    left, right = STEREO
    assert not any({left, right} <= {m["name"] for m in c["members"]} for c in near)
    assert any(
        {left, right} <= {m["name"] for m in c["members"]}
        for c in clusters
        if c["tier"] == "similar"
    )


def test_sweeps_and_verdicts_survive_deletes_running_beside_them(
    tmp_path: Path, models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A sweep stores clusters, and ingest stores verdicts, that name images: deleted meanwhile
    by another request, they must be left out, never fail the sweep or lose the verdicts."""
    import threading

    from lookalike.composition import Lookalike
    from lookalike.dedup.sweep import run_sweep
    from lookalike.ingest.pipeline import IngestFile, NewRecord
    from lookalike.records.service import create_collection, delete_record
    from support import make_settings

    originals = distinct_originals()
    copies = derived_set(originals, transforms=EDITS[:2])
    settings = make_settings(tmp_path / "data", models_dir, nsfw=False)
    with Lookalike(settings) as rt:
        coll = create_collection(rt, "default", "race")
        stop = threading.Event()
        errors: list[BaseException] = []

        def churn() -> None:
            # Ingest copies and delete them again, as fast as the machine allows.
            i = 0
            while not stop.is_set():
                copy = copies[i % len(copies)]
                i += 1
                try:
                    (result,) = rt.ingest.add(
                        coll,
                        NewRecord(name=copy.name, owner="c"),
                        [IngestFile(copy.data)],
                        wait=True,
                    )
                    if result.record_id:
                        delete_record(rt, "default", result.record_id)
                except BaseException as exc:
                    errors.append(exc)

        rt.ingest.add_many(
            coll,
            [(NewRecord(name=n, owner="o"), IngestFile(d)) for n, d in originals.items()],
            wait=True,
        )
        worker = threading.Thread(target=churn)
        worker.start()
        try:
            for _ in range(60):
                run_sweep(rt, coll)
        finally:
            stop.set()
            worker.join()
        assert errors == []
    # After-ingest steps log their failures rather than fail the ingest: none may have failed.
    failed = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert failed == []
