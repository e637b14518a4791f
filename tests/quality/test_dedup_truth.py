"""The duplicate sweep on distinct photos plus edited copies, checked against the truth.

Forty-odd different photographs (the sample photos, the largest of them cut into four quarters
that share no pixels) and edited copies of each go in through `lookalike ingest` as one record
per file; `lookalike dedup --json` must never put two different photographs into one `exact` or
`near_exact` cluster.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from lookalike.cli import app as cli
from lookalike.samples import derived_set, sample_photos

# Cut into quarters: four different pictures each, none of which is a crop of another.
QUARTERED = (
    "astronaut",
    "motorcycle_left",
    "hubble_deep_field",
    "retina",
    "coffee",
    "rocket",
    "grace_hopper",
)
# The other view of a stereo pair is a different shot of the same scene: `similar`, by design.
LEFT_OUT = ("motorcycle_right",)
EDITS = (
    ("resize", {"scale": 0.5}),
    ("jpeg", {"quality": 40}),
    ("crop", {"keep": 0.85}),
    ("brightness", {"factor": 1.3}),
    ("text_overlay", {"text": "lookalike sample"}),
)


def distinct_originals() -> dict[str, bytes]:
    originals: dict[str, bytes] = {}
    for name, data in sample_photos().items():
        if name in LEFT_OUT:
            continue
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
    for key, value in {
        "DATA_DIR": str(tmp_path / "data"),
        "MODEL_CACHE_DIR": str(models_dir),
        "MODEL": "efficientnet-lite0",
        "MODEL_DOWNLOAD": "false",
        "NSFW": "false",
    }.items():
        monkeypatch.setenv(f"LOOKALIKE_{key}", value)
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

    mixed = [
        sorted({photo(m) for m in c["members"]})
        for c in clusters
        if c["tier"] in ("exact", "near_exact") and len({photo(m) for m in c["members"]}) > 1
    ]
    assert mixed == [], f"clusters that join different photos: {mixed}"
    # Not vacuous: most photos' edited copies are found as near-exact duplicates.
    found = {photo(m) for c in clusters if c["tier"] == "near_exact" for m in c["members"]}
    assert len(found) >= len(originals) // 2, f"only {len(found)} photos had near-exact copies"
