"""The image quality score: sharpness, exposure and resolution on real sample photos."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFilter

from lookalike.demo.samples import sample_photos, transform
from lookalike.imaging import decode_image
from lookalike.quality import QualityScore, quality_score
from lookalike.quality.scores import OVERALL_WEIGHTS

# Colour and grayscale photos whose shorter side is at least 500 px, so a 2x-downscaled copy
# still reaches the 256 px working size without upscaling.
LARGE = ("astronaut", "camera", "grace_hopper", "motorcycle_left", "retina")
# Ordinary, reasonably exposed photos (not dark by nature, unlike hubble_deep_field or rocket).
EVERYDAY = ("astronaut", "coffee", "chelsea", "camera", "motorcycle_left")


@pytest.fixture(scope="module")
def images() -> dict[str, Image.Image]:
    """Sample photos as RGB, reduced to at most 512 px on the shorter side like ingest does."""
    out: dict[str, Image.Image] = {}
    for name, data in sample_photos(sorted(set(LARGE) | set(EVERYDAY))).items():
        image = Image.open(io.BytesIO(data)).convert("RGB")
        if min(image.size) > 512:
            scale = 512 / min(image.size)
            size = (round(image.width * scale), round(image.height * scale))
            image = image.resize(size, Image.Resampling.LANCZOS)
        out[name] = image
    return out


def _score(image: Image.Image) -> QualityScore:
    return quality_score(image, image.size)


def _assert_in_unit_range(score: QualityScore) -> None:
    for name, value in score.as_dict().items():
        assert isinstance(value, float), name
        assert 0.0 <= value <= 1.0, (name, value)


def test_scores_are_in_unit_range_and_deterministic(images: dict[str, Image.Image]) -> None:
    for name, image in images.items():
        first = _score(image)
        _assert_in_unit_range(first)
        assert _score(image.copy()) == first, name
        assert set(first.as_dict()) == {*OVERALL_WEIGHTS, "overall"}


def test_ordinary_photos_score_well(images: dict[str, Image.Image]) -> None:
    for name in EVERYDAY:
        score = _score(images[name])
        assert score.sharpness > 0.8, (name, score)
        assert score.exposure > 0.6, (name, score)


@pytest.mark.parametrize("radius", [2.0, 4.0])
def test_blur_lowers_sharpness(images: dict[str, Image.Image], radius: float) -> None:
    for name in EVERYDAY:
        image = images[name]
        original = _score(image)
        blurred = _score(image.filter(ImageFilter.GaussianBlur(radius)))
        assert blurred.sharpness < original.sharpness - 0.1, (name, original, blurred)
        assert blurred.overall < original.overall, name
        # Blur changes sharpness, not exposure.
        assert blurred.exposure == pytest.approx(original.exposure, abs=0.1), name


def test_more_blur_scores_lower(images: dict[str, Image.Image]) -> None:
    image = images["coffee"]
    scores = [_score(image.filter(ImageFilter.GaussianBlur(r))).sharpness for r in (1, 2, 4, 8)]
    assert scores == sorted(scores, reverse=True)
    assert scores[-1] < 0.2


def test_darkened_copy_scores_lower_exposure(images: dict[str, Image.Image]) -> None:
    for name in EVERYDAY:
        original = _score(images[name])
        dark = _score(transform(images[name], "brightness", factor=0.15))
        assert dark.exposure < 0.4, (name, dark)
        assert dark.exposure < original.exposure - 0.3, (name, original, dark)
        assert dark.overall < original.overall, name
        # A dark photo is charged to exposure; its sharpness is compensated for low contrast.
        assert dark.sharpness > original.sharpness - 0.2, (name, original, dark)


def test_overexposed_copy_scores_lower_exposure(images: dict[str, Image.Image]) -> None:
    for name in EVERYDAY:
        original = _score(images[name])
        bright = _score(transform(images[name], "brightness", factor=2.5))
        assert bright.exposure < original.exposure - 0.3, (name, original, bright)
        assert bright.overall < original.overall, name


def test_flat_images_are_not_sharp_and_black_or_white_is_badly_exposed() -> None:
    for colour in ((0, 0, 0), (255, 255, 255)):
        flat = Image.new("RGB", (300, 300), colour)
        score = _score(flat)
        assert score.sharpness == 0.0
        assert score.exposure == 0.0
        assert score.overall == 0.0
    grey = _score(Image.new("RGB", (300, 300), (128, 128, 128)))
    assert grey.exposure > 0.99
    assert grey.sharpness == 0.0


def test_resolution_follows_the_original_size(images: dict[str, Image.Image]) -> None:
    image = images["astronaut"]
    tiny = quality_score(image, (64, 64))
    small = quality_score(image, (160, 120))
    medium = quality_score(image, (640, 480))
    large = quality_score(image, (4000, 3000))
    assert tiny.resolution == 0.0
    assert 0.0 < small.resolution < medium.resolution < large.resolution == 1.0
    assert quality_score(image, (1000, 1000)).resolution == 1.0
    assert tiny.overall == 0.0 < small.overall < medium.overall < large.overall
    # The original size only drives resolution; the pixels handed over drive the rest.
    assert (tiny.sharpness, tiny.exposure) == (large.sharpness, large.exposure)


def test_sharpness_barely_depends_on_the_working_size(images: dict[str, Image.Image]) -> None:
    for name in LARGE:
        image = images[name]
        original = _score(image)
        for half in (transform(image, "resize", scale=0.5), image.reduce(2)):
            copy = quality_score(half, image.size)
            assert abs(copy.sharpness - original.sharpness) < 0.1, (name, original, copy)
            assert abs(copy.exposure - original.exposure) < 0.05, (name, original, copy)


def test_other_modes_and_odd_shapes_are_accepted(images: dict[str, Image.Image]) -> None:
    image = images["camera"]
    rgb = _score(image)
    gray = _score(image.convert("L"))
    assert gray.sharpness == pytest.approx(rgb.sharpness, abs=0.02)
    assert gray.exposure == pytest.approx(rgb.exposure, abs=0.02)
    _assert_in_unit_range(_score(image.convert("RGBA")))
    panorama = image.resize((2048, 64))
    _assert_in_unit_range(quality_score(panorama, (8192, 256)))
    _assert_in_unit_range(quality_score(Image.new("RGB", (1, 1)), (1, 1)))


def test_invalid_original_size_is_rejected(images: dict[str, Image.Image]) -> None:
    with pytest.raises(ValueError, match="original_size"):
        quality_score(images["camera"], (0, 100))


def _jpeg(image: Image.Image, quality: int) -> tuple[Image.Image, int | None]:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    decoded = decode_image(buf.getvalue(), max_bytes=1 << 30, max_pixels=1 << 30)
    return decoded.image, decoded.jpeg_quality


def test_junk_scores_below_every_photo_and_says_why(images: dict[str, Image.Image]) -> None:
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (400, 600, 3), dtype=np.uint8))
    blank = Image.new("RGB", (640, 480), (200, 200, 200))
    tiny = Image.new("RGB", (8, 8), (255, 0, 0))
    strip = images["astronaut"].resize((1200, 100))
    crushed, quality = _jpeg(images["astronaut"], 8)
    assert quality is not None and quality <= 15
    junk = {
        "noise": (quality_score(noise, noise.size), "noise"),
        "blank": (quality_score(blank, blank.size), "contrast"),
        "tiny": (quality_score(tiny, tiny.size), "resolution"),
        "strip": (quality_score(strip, strip.size), "aspect"),
        "crushed": (quality_score(crushed, crushed.size, jpeg_quality=quality), "compression"),
    }
    worst_photo = min(_score(image).overall for image in images.values())
    for name, (score, reason) in junk.items():
        assert score.overall < worst_photo, (name, score)
        assert reason in score.weakest(), (name, score)
    # The same photo, well compressed, keeps its score.
    fine, fine_quality = _jpeg(images["astronaut"], 90)
    assert fine_quality == 90
    assert quality_score(fine, fine.size, jpeg_quality=90).compression == 1.0
