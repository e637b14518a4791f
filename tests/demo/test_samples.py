"""The sample photos that ship in installed packages, and the edited copies derived from them."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from lookalike.demo import samples as samples
from lookalike.demo.samples import (
    DEFAULT_TRANSFORMS,
    TRANSFORM_KINDS,
    SamplesUnavailable,
    derived_set,
    sample_photo_names,
    sample_photos,
    transform,
)
from lookalike.imaging import decode_image, phash_hamming, phash_hex


def _open(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


@pytest.fixture(scope="module")
def coffee() -> Image.Image:
    return _open(sample_photos(["coffee"])["coffee"])


def test_sample_photos_are_real_decodable_images() -> None:
    photos = sample_photos()
    assert {"astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "grace_hopper"} <= set(
        photos
    )
    assert list(photos) == sample_photo_names()
    for name, data in photos.items():
        decoded = decode_image(data, max_bytes=10 << 20, max_pixels=10_000_000)
        assert min(decoded.width, decoded.height) >= 100, name


def test_colour_and_grayscale_photos() -> None:
    gray = sample_photos(grayscale=True)
    colour = sample_photos(grayscale=False)
    assert "camera" in gray
    assert "coffee" in colour
    assert not set(gray) & set(colour)
    camera = Image.open(io.BytesIO(gray["camera"]))
    assert camera.mode == "L"


def test_unknown_name() -> None:
    with pytest.raises(KeyError, match="unknown sample photos"):
        sample_photos(["no_such_photo"])


def test_missing_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(samples, "_package_dir", lambda package: None)
    with pytest.raises(SamplesUnavailable, match=r"lookalike\[samples\]"):
        sample_photos()
    with pytest.raises(SamplesUnavailable, match="matplotlib"):
        sample_photos(["grace_hopper"])


@pytest.mark.parametrize("kind", TRANSFORM_KINDS)
def test_every_transform_changes_the_pixels(coffee: Image.Image, kind: str) -> None:
    edited = transform(coffee, kind)
    assert edited.mode == "RGB"
    assert edited is not coffee
    assert edited.size != coffee.size or edited.tobytes() != coffee.tobytes()
    assert transform(coffee, kind).tobytes() == edited.tobytes()  # deterministic


def test_transform_parameters(coffee: Image.Image) -> None:
    width, height = coffee.size
    assert transform(coffee, "resize", scale=0.25).size == (width // 4, height // 4)
    assert transform(coffee, "resize", size=(100, 50)).size == (100, 50)
    assert transform(coffee, "crop", keep=0.5).size == (width // 2, height // 2)
    assert transform(coffee, "crop", box=(0, 0, 10, 20)).size == (10, 20)
    assert transform(coffee, "rotate", degrees=3).size == coffee.size
    assert transform(coffee, "flip", direction="vertical").getpixel((0, 0)) == coffee.getpixel(
        (0, height - 1)
    )
    r, g, b = transform(coffee, "grayscale").getpixel((10, 10))  # type: ignore[misc]
    assert r == g == b
    with pytest.raises(ValueError, match="unknown transform"):
        transform(coffee, "sepia")


@pytest.mark.parametrize(
    ("kind", "params"),
    [("resize", {"scale": 0.5}), ("jpeg", {"quality": 30}), ("brightness", {"factor": 1.2})],
)
def test_mild_edits_stay_near_in_phash(
    coffee: Image.Image, kind: str, params: dict[str, float]
) -> None:
    assert phash_hamming(phash_hex(coffee), phash_hex(transform(coffee, kind, **params))) <= 6


def test_derived_set() -> None:
    photos = sample_photos(["chelsea", "camera"])
    derived = derived_set(photos, include_originals=True)
    assert len(derived) == 2 * (1 + len(DEFAULT_TRANSFORMS))
    assert len({item.name for item in derived}) == len(derived)
    originals = [item for item in derived if item.transform == "original"]
    assert [(item.name, item.data) for item in originals] == [
        ("chelsea.png", photos["chelsea"]),
        ("camera.png", photos["camera"]),
    ]
    for item in derived:
        assert item.original_name in photos
        decoded = decode_image(item.data, max_bytes=10 << 20, max_pixels=10_000_000)
        assert decoded.mime in ("image/jpeg", "image/png")
    crop = next(item for item in derived if item.name == "chelsea__crop.jpg")
    assert crop.transform == "crop(keep=0.85)"
    assert [item.data for item in derived_set(photos)] == [
        item.data for item in derived if item.transform != "original"
    ]


def test_derived_set_names_repeated_kinds_apart() -> None:
    photos = sample_photos(["coins"])
    derived = derived_set(
        photos, transforms=[("resize", {"scale": 0.5}), ("resize", {"scale": 0.25})], fmt="png"
    )
    assert [item.name for item in derived] == ["coins__resize-1.png", "coins__resize-2.png"]
    assert derived[1].transform == "resize(scale=0.25)"
