"""The model directory format: what a valid one is, and the errors for everything else."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from lookalike.core.errors import ModelUnavailable
from lookalike.embedding import ModelDir, PreprocessConfig, TextConfig, write_manifest
from lookalike.embedding.model_dir import VERIFIED_NAME, weights_model_id


@pytest.fixture
def model(tmp_path: Path, tiny_clip_dir: Path) -> Path:
    target = tmp_path / "tiny-clip"
    shutil.copytree(tiny_clip_dir, target)
    (target / VERIFIED_NAME).unlink(missing_ok=True)
    return target


def edit_manifest(path: Path, change: Any) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_valid_directory_opens(model: Path) -> None:
    opened = ModelDir.open(model)
    manifest = opened.manifest
    assert manifest.kind == "clip"
    assert manifest.dim == 64
    assert manifest.model_id == weights_model_id("tiny-clip", manifest.files)
    assert manifest.model_id.startswith("tiny-clip@")
    assert opened.file("visual").is_file()
    assert opened.file("tokenizer").name == "tokenizer.json"


def test_missing_directory_and_manifest(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="no model directory"):
        ModelDir.open(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailable, match=r"has no manifest\.json"):
        ModelDir.open(tmp_path / "empty")


def test_unreadable_manifest(model: Path) -> None:
    (model / "manifest.json").write_text("{not json")
    with pytest.raises(ModelUnavailable, match="cannot read"):
        ModelDir.open(model)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(kind="audio"), "kind"),
        (lambda m: m.update(dim=0), "dim"),
        (lambda m: m.update(format=99), "format 99"),
        (lambda m: m.update(name="Bad Name!"), "name"),
        (lambda m: m["files"]["visual"].update(sha256="xyz"), "sha256"),
        (lambda m: m["files"]["visual"].update(path="../outside.onnx"), "inside the directory"),
        (lambda m: m["files"]["visual"].update(path="/etc/passwd"), "inside the directory"),
        (lambda m: m["preprocess"].update(resize_mode="stretch"), "resize_mode"),
        (lambda m: m["preprocess"].update(std=[0.5, 0.0, 0.5]), "std"),
        (lambda m: m.update(model_id="tiny-clip@000000000000"), "does not match the weights"),
        (lambda m: m.pop("text"), "needs a 'text' section"),
        (lambda m: m.update(surprise=1), "surprise"),
    ],
)
def test_invalid_manifest_is_explained(model: Path, change: Any, message: str) -> None:
    edit_manifest(model, change)
    with pytest.raises(ModelUnavailable, match=r"invalid .*manifest\.json") as info:
        ModelDir.open(model)
    assert message in str(info.value)


def test_clip_without_textual_graph_is_refused(model: Path) -> None:
    def drop_textual(m: dict[str, Any]) -> None:
        del m["files"]["textual"]

    edit_manifest(model, drop_textual)
    with pytest.raises(ModelUnavailable, match=r"does not match the weights|needs files\.textual"):
        ModelDir.open(model)


def test_missing_file(model: Path) -> None:
    (model / "textual.onnx").unlink()
    with pytest.raises(
        ModelUnavailable, match=r"incomplete: textual file textual\.onnx is missing"
    ):
        ModelDir.open(model)


def test_truncated_file(model: Path) -> None:
    data = (model / "visual.onnx").read_bytes()
    (model / "visual.onnx").write_bytes(data[:100])
    with pytest.raises(ModelUnavailable, match="truncated or replaced"):
        ModelDir.open(model)


def test_corrupt_file_same_size(model: Path) -> None:
    data = bytearray((model / "visual.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (model / "visual.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelUnavailable, match="is corrupt: sha256"):
        ModelDir.open(model)


def test_hashes_are_checked_once_then_recorded(model: Path) -> None:
    ModelDir.open(model)
    recorded = json.loads((model / VERIFIED_NAME).read_text())
    assert set(recorded) == {"visual.onnx", "textual.onnx", "tokenizer.json"}
    # Corrupting a file changes its mtime, so the record no longer vouches for it.
    path = model / "visual.onnx"
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    stat = path.stat()
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with pytest.raises(ModelUnavailable, match="corrupt"):
        ModelDir.open(model)


def test_skipping_verification_reads_manifest_only(model: Path) -> None:
    (model / "visual.onnx").write_bytes(b"garbage")
    assert ModelDir.open(model, verify=False).manifest.name == "tiny-clip"


def test_read_only_directory_still_opens(model: Path) -> None:
    os.chmod(model, 0o555)
    try:
        assert ModelDir.open(model).manifest.kind == "clip"
    finally:
        os.chmod(model, 0o755)


def test_write_manifest_round_trip(tmp_path: Path) -> None:
    (tmp_path / "g.onnx").write_bytes(b"graph bytes")
    manifest = write_manifest(
        tmp_path,
        name="hand-made",
        kind="image",
        dim=8,
        files={"visual": "g.onnx"},
        preprocess=PreprocessConfig(size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    )
    assert ModelDir.open(tmp_path).manifest == manifest
    # A text section on an image model is allowed (ignored); a clip model without one is not.
    with pytest.raises(ValueError, match="textual"):
        write_manifest(
            tmp_path,
            name="hand-made",
            kind="clip",
            dim=8,
            files={"visual": "g.onnx"},
            preprocess=manifest.preprocess,
            text=TextConfig(context_length=8),
        )
