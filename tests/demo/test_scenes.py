"""Synthetic scenes: deterministic, photo-like, and each one a different photograph."""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import subprocess
import sys

import cv2
import imagehash
import numpy as np
import pytest
from PIL import Image

from lookalike.demo.scenes import SCENE_KINDS, synthetic_scene, synthetic_scenes

SEEDS_PER_KIND = 5

# Seeds of one kind measured 18+ bits apart (pHash) and 22+ grey levels apart (mean absolute
# difference at 64 x 48); duplicate detectors call copies at about 10 bits or fewer.
MIN_PHASH_BITS = 12
MIN_MEAN_DIFFERENCE = 12.0
MIN_ORB_KEYPOINTS = 200


@pytest.fixture(scope="module")
def scenes() -> dict[str, Image.Image]:
    encoded = synthetic_scenes(SEEDS_PER_KIND * len(SCENE_KINDS))
    return {name: Image.open(io.BytesIO(data)).convert("RGB") for name, data in encoded.items()}


def _thumbnail(image: Image.Image) -> np.ndarray:
    small = image.convert("L").resize((64, 48), Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.float32)


def test_names_cycle_through_the_kinds(scenes: dict[str, Image.Image]) -> None:
    expected = {
        f"scene_{kind}_{seed:02d}" for kind in SCENE_KINDS for seed in range(SEEDS_PER_KIND)
    }
    assert set(scenes) == expected
    assert list(scenes)[: len(SCENE_KINDS)] == [f"scene_{kind}_00" for kind in SCENE_KINDS]
    assert list(synthetic_scenes(3)) == [f"scene_{kind}_00" for kind in SCENE_KINDS[:3]]
    assert synthetic_scenes(0) == {}
    assert len(SCENE_KINDS) >= 8


def test_same_bytes_every_time() -> None:
    first = synthetic_scenes(len(SCENE_KINDS), size=(160, 120))
    assert first == synthetic_scenes(len(SCENE_KINDS), size=(160, 120))
    again = synthetic_scene("market", 2).tobytes()
    assert again == synthetic_scene("market", 2).tobytes()


def test_same_bytes_in_another_process() -> None:
    """Seeds must not come from hash(), which Python salts differently in every process."""
    script = (
        "import hashlib; from lookalike.demo.scenes import synthetic_scenes; "
        "scenes = synthetic_scenes(8, size=(160, 120)); "
        "print(hashlib.sha256(b''.join(scenes[name] for name in sorted(scenes))).hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    here = synthetic_scenes(8, size=(160, 120))
    digest = hashlib.sha256(b"".join(here[name] for name in sorted(here))).hexdigest()
    assert result.stdout.strip() == digest


def test_png_holds_the_scene(scenes: dict[str, Image.Image]) -> None:
    assert scenes["scene_city_03"].tobytes() == synthetic_scene("city", 3).tobytes()


@pytest.mark.parametrize("size", [(640, 480), (320, 200), (200, 320), (64, 64)])
def test_size_and_mode(size: tuple[int, int]) -> None:
    for kind in SCENE_KINDS:
        image = synthetic_scene(kind, 1, size)
        assert image.size == size
        assert image.mode == "RGB"


def test_png_size_and_mode() -> None:
    data = synthetic_scenes(1, size=(300, 200))["scene_landscape_00"]
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        assert image.size == (300, 200)
        assert image.mode == "RGB"


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown scene kind 'portrait'"):
        synthetic_scene("portrait", 0)


def test_bad_seed_size_and_count() -> None:
    with pytest.raises(ValueError, match="seed"):
        synthetic_scene("city", -1)
    with pytest.raises(ValueError, match="at least"):
        synthetic_scene("city", 0, (32, 480))
    with pytest.raises(ValueError, match="count"):
        synthetic_scenes(-1)


@pytest.mark.parametrize("kind", SCENE_KINDS)
def test_every_kind_renders_a_full_frame(kind: str, scenes: dict[str, Image.Image]) -> None:
    pixels = np.asarray(scenes[f"scene_{kind}_00"], dtype=np.float32)
    # Structure across the frame: every quarter has its own detail.
    for rows in (slice(0, 240), slice(240, 480)):
        for columns in (slice(0, 320), slice(320, 640)):
            assert pixels[rows, columns].std() > 8, (kind, rows, columns)


@pytest.mark.parametrize("kind", SCENE_KINDS)
def test_seeds_of_one_kind_are_different_photos(kind: str, scenes: dict[str, Image.Image]) -> None:
    names = [f"scene_{kind}_{seed:02d}" for seed in range(SEEDS_PER_KIND)]
    for first, second in itertools.combinations(names, 2):
        difference = np.abs(_thumbnail(scenes[first]) - _thumbnail(scenes[second])).mean()
        assert difference > MIN_MEAN_DIFFERENCE, (first, second, difference)
        bits = imagehash.phash(scenes[first]) - imagehash.phash(scenes[second])
        assert bits >= MIN_PHASH_BITS, (first, second, bits)


def test_no_two_scenes_share_a_perceptual_hash(scenes: dict[str, Image.Image]) -> None:
    hashes = {name: imagehash.phash(image) for name, image in scenes.items()}
    closest = min(hashes[a] - hashes[b] for a, b in itertools.combinations(hashes, 2))
    assert closest >= MIN_PHASH_BITS


def test_every_scene_has_texture_for_a_feature_detector(
    scenes: dict[str, Image.Image],
) -> None:
    orb = cv2.ORB.create(500)
    for name, image in scenes.items():
        keypoints = orb.detect(np.asarray(image.convert("L")), None)
        assert len(keypoints) >= MIN_ORB_KEYPOINTS, (name, len(keypoints))
