"""The geometric check that two images are one photograph, on real photos and the edits
people make, against what must stay apart: other photos, other shots of one scene, big crops.

Decisions use the default thresholds (`dedup.tiers`), as the product does.
"""

from __future__ import annotations

import io
from itertools import combinations
from typing import Any

import pytest
from PIL import Image

from lookalike.dedup.tiers import DedupThresholds, same_photograph, tier_of
from lookalike.demo.samples import transform
from lookalike.imaging.photo_match import PhotoFeatures, match_photos, photo_features

DEFAULTS = DedupThresholds()
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "china", "camera")
# Edits after which a person still calls it the same photograph.
COPIES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("resize", {"scale": 0.25}),
    ("jpeg", {"quality": 12}),
    ("crop", {"keep": 0.85}),
    ("crop", {"box": (0, 0, 0.85, 0.85)}),  # a corner crop, as fractions
    ("rotate", {"degrees": 4}),
    ("border", {"width": 0.08}),
    ("letterbox", {"aspect": 16 / 9}),
    ("letterbox", {"aspect": 9 / 16}),
    ("watermark", {}),
    ("text_overlay", {}),
    ("perspective", {"strength": 0.1}),
    ("blur", {"radius": 2.5}),
    ("noise", {"sigma": 18}),
    ("squash", {"x": 1.0, "y": 0.7}),
    ("hue", {"degrees": 60}),
    ("contrast", {"factor": 0.6}),
    ("grayscale", {}),
)


def _image(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as opened:
        return opened.convert("RGB")


def _edit(image: Image.Image, kind: str, params: dict[str, Any]) -> Image.Image:
    if kind == "crop" and "box" in params:
        left, top, right, bottom = params["box"]
        w, h = image.size
        return transform(
            image,
            "crop",
            box=(round(left * w), round(top * h), round(right * w), round(bottom * h)),
        )
    return transform(image, kind, **params)


@pytest.fixture(scope="module")
def originals(photos: dict[str, bytes]) -> dict[str, Image.Image]:
    return {name: _image(photos[name]) for name in PHOTOS if name in photos}


@pytest.fixture(scope="module")
def features(originals: dict[str, Image.Image]) -> dict[str, PhotoFeatures]:
    return {name: photo_features(image) for name, image in originals.items()}


@pytest.mark.parametrize(
    ("kind", "params"), COPIES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(COPIES)]
)
def test_an_edited_copy_is_the_same_photograph(
    originals: dict[str, Image.Image],
    features: dict[str, PhotoFeatures],
    kind: str,
    params: dict[str, Any],
) -> None:
    assert len(originals) >= 5
    for name, image in originals.items():
        copy = photo_features(_edit(image, kind, params))
        for first, second in ((features[name], copy), (copy, features[name])):
            match = match_photos(first, second)
            assert same_photograph(match, DEFAULTS) is True, (name, kind, match.as_dict())


def test_blur_and_noise_together_still_the_same_photograph(
    originals: dict[str, Image.Image], features: dict[str, PhotoFeatures]
) -> None:
    for name, image in originals.items():
        copy = transform(transform(image, "blur", radius=2.0), "noise", sigma=12)
        match = match_photos(features[name], photo_features(copy))
        assert same_photograph(match, DEFAULTS) is True, (name, match.as_dict())


def test_different_photographs_never_match(photos: dict[str, bytes]) -> None:
    prepared = {name: photo_features(_image(data)) for name, data in photos.items()}
    stereo = {"motorcycle_left", "motorcycle_right"}
    for a, b in combinations(sorted(prepared), 2):
        if {a, b} == stereo:
            continue
        match = match_photos(prepared[a], prepared[b])
        assert same_photograph(match, DEFAULTS) is not True, (a, b, match.as_dict())


def test_two_shots_of_one_scene_are_not_one_photograph(
    photos: dict[str, bytes], originals: dict[str, Image.Image]
) -> None:
    # A stereo pair: the same scene from two points of view (parallax).
    left = photo_features(_image(photos["motorcycle_left"]))
    right = photo_features(_image(photos["motorcycle_right"]))
    match = match_photos(left, right)
    assert match.inliers >= DEFAULTS.min_inliers  # the scene is found in both...
    assert same_photograph(match, DEFAULTS) is False, match.as_dict()  # ...as two shots
    # Pans across one scene, and a crop that keeps only a third of the photo.
    for name, image in originals.items():
        w, h = image.size
        for keep in (0.7, 0.8):
            first = photo_features(image.crop((0, 0, round(w * keep), h)))
            second = photo_features(image.crop((round(w * (1 - keep)), 0, w, h)))
            match = match_photos(first, second)
            assert same_photograph(match, DEFAULTS) is False, (name, keep, match.as_dict())
        small_crop = photo_features(transform(image, "crop", keep=0.55))
        match = match_photos(photo_features(image), small_crop)
        assert same_photograph(match, DEFAULTS) is False, (name, match.as_dict())


def test_the_same_pixels_in_another_file_are_exact(originals: dict[str, Image.Image]) -> None:
    image = originals["chelsea"]
    png, webp = io.BytesIO(), io.BytesIO()
    image.save(png, "PNG")
    image.save(webp, "WEBP", lossless=True)
    first = photo_features(_image(png.getvalue()))
    second = photo_features(_image(webp.getvalue()))
    match = match_photos(first, second)
    assert match.same_pixels
    assert tier_of(0.99, 0, DEFAULTS, match) == "exact"
    # One pixel changed: no longer the same pixels, still the same photograph.
    changed = image.copy()
    changed.putpixel((10, 10), (0, 0, 0) if image.getpixel((10, 10)) != (0, 0, 0) else (255, 0, 0))
    match = match_photos(first, photo_features(changed))
    assert not match.same_pixels
    assert tier_of(0.99, 0, DEFAULTS, match) == "near_exact"


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGB", (1, 1), (200, 10, 10)),
        Image.new("RGB", (8, 8), (255, 0, 0)),
        Image.new("RGB", (640, 480), (128, 128, 128)),
        Image.new("RGB", (4000, 3), (10, 200, 10)),
        Image.new("L", (3, 3000), 40),
        Image.new("RGBA", (50, 50), (0, 0, 0, 0)),
    ],
    ids=["1x1", "8x8", "blank", "4000x3", "3x3000", "transparent"],
)
def test_featureless_images_give_no_evidence_either_way(
    image: Image.Image, features: dict[str, PhotoFeatures]
) -> None:
    blank = photo_features(image)
    for other in (blank, features["coffee"]):
        match = match_photos(blank, other)
        assert same_photograph(match, DEFAULTS) is None
        assert match.inliers == 0
    # Without evidence the pHash-and-cosine rule decides.
    assert tier_of(0.99, 0, DEFAULTS, match_photos(blank, blank)) in ("exact", "near_exact")
    assert tier_of(0.85, 20, DEFAULTS, match_photos(blank, features["coffee"])) == "similar"


def test_the_measurement_is_deterministic(
    features: dict[str, PhotoFeatures], originals: dict[str, Image.Image]
) -> None:
    copy = photo_features(transform(originals["coffee"], "crop", keep=0.85))
    assert match_photos(features["coffee"], copy) == match_photos(features["coffee"], copy)
    again = photo_features(originals["coffee"])
    assert match_photos(again, copy) == match_photos(features["coffee"], copy)
