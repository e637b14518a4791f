"""Preprocessing from a manifest: sizes, modes, normalisation, odd pixel formats, the JPEG path."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from lookalike.embedding import ImagePreprocessor, PreprocessConfig

from .conftest import sample

HALF = (0.5, 0.5, 0.5)


def config(**overrides: object) -> PreprocessConfig:
    values: dict[str, object] = {"size": 64, "mean": HALF, "std": HALF}
    values.update(overrides)
    return PreprocessConfig(**values)


@pytest.mark.parametrize("mode", ["shortest", "squash", "pad"])
@pytest.mark.parametrize("size", [(300, 200), (200, 300), (64, 64), (1, 1), (5000, 3)])
def test_output_shape_and_type(mode: str, size: tuple[int, int]) -> None:
    pre = ImagePreprocessor(config(resize_mode=mode))
    out = pre(Image.new("RGB", size, (10, 200, 30)))
    assert out.shape == (3, 64, 64)
    assert out.dtype == np.float32
    assert out.flags.c_contiguous


def test_normalisation_matches_mean_and_std() -> None:
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    pre = ImagePreprocessor(config(mean=mean, std=std))
    out = pre(Image.new("RGB", (80, 80), (255, 0, 128)))
    expected = [(1.0 - mean[0]) / std[0], (0.0 - mean[1]) / std[1], (128 / 255 - mean[2]) / std[2]]
    np.testing.assert_allclose(out[:, 10, 10], expected, rtol=1e-5)


def test_shortest_crops_the_centre() -> None:
    # Left third red, middle white, right third blue: the centre crop of a 3:1 image is white.
    image = Image.new("RGB", (300, 100), (255, 255, 255))
    image.paste((255, 0, 0), (0, 0, 100, 100))
    image.paste((0, 0, 255), (200, 0, 300, 100))
    resized = ImagePreprocessor(config(resize_mode="shortest")).resize(image)
    pixels = np.asarray(resized)
    assert resized.size == (64, 64)
    assert pixels[32, 2].tolist() == [255, 255, 255]
    assert pixels[32, 61].tolist() == [255, 255, 255]


def test_squash_keeps_everything_and_pad_keeps_aspect() -> None:
    image = Image.new("RGB", (300, 100), (255, 0, 0))
    image.paste((0, 0, 255), (200, 0, 300, 100))
    squashed = np.asarray(ImagePreprocessor(config(resize_mode="squash")).resize(image))
    assert squashed[32, 63].tolist() == [0, 0, 255]
    padded = np.asarray(ImagePreprocessor(config(resize_mode="pad", fill_color=7)).resize(image))
    # 300x100 fits as 64x21, centred: black-ish (fill 7) bars above and below.
    assert padded[0, 32].tolist() == [7, 7, 7]
    assert padded[63, 32].tolist() == [7, 7, 7]
    assert padded[32, 2].tolist()[0] > 200


@pytest.mark.parametrize("mode", ["L", "RGBA", "LA", "P", "CMYK", "I;16", "I", "F", "1"])
def test_any_pixel_format(mode: str) -> None:
    image = Image.fromarray(np.arange(64 * 48, dtype=np.uint8).reshape(48, 64) % 251).convert(mode)
    out = ImagePreprocessor(config())(image)
    assert out.shape == (3, 64, 64)
    assert np.isfinite(out).all()


def test_sixteen_bit_greyscale_is_scaled_not_clipped() -> None:
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    image = Image.fromarray(ramp)
    resized = np.asarray(ImagePreprocessor(config()).resize(image))
    assert resized.min() < 10
    assert resized.max() > 245


def test_transparent_pixels_become_white() -> None:
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    resized = np.asarray(ImagePreprocessor(config()).resize(image))
    assert (resized == 255).all()


def test_jpeg_draft_path_is_close_to_full_decode() -> None:
    # A large JPEG decoded at reduced DCT scale must give (nearly) the same input tensor.
    photo = sample("chelsea").resize((2400, 1600), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=92)
    pre = ImagePreprocessor(config(size=224))
    lazy = Image.open(io.BytesIO(buffer.getvalue()))
    fast = pre(lazy)
    assert lazy.size[0] < 2400, "the draft mode was not used"
    full = Image.open(io.BytesIO(buffer.getvalue()))
    full.load()
    slow = pre(full)
    cosine = float((fast * slow).sum() / np.linalg.norm(fast) / np.linalg.norm(slow))
    assert cosine > 0.999


def test_decoded_images_are_not_modified() -> None:
    photo = sample("coffee")
    before = np.asarray(photo).copy()
    ImagePreprocessor(config())(photo)
    assert photo.size == (600, 400)
    assert np.array_equal(np.asarray(photo), before)
