"""make_thumbnail: WebP, within the size, aspect ratio kept, never enlarged."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from lookalike.imaging import THUMBNAIL_MIME, decode_image, make_thumbnail, sniff_mime

from .builders import gradient


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize(
    ("size", "source", "expected"),
    [
        (256, (1024, 768), (256, 192)),
        (256, (768, 1024), (192, 256)),
        (256, (4000, 100), (256, 6)),
        (128, (300, 300), (128, 128)),
        (256, (100, 50), (100, 50)),  # smaller than the box: not enlarged
    ],
)
def test_webp_within_size_keeping_aspect(
    size: int, source: tuple[int, int], expected: tuple[int, int]
) -> None:
    data = make_thumbnail(gradient(source), size=size)
    assert sniff_mime(data) == THUMBNAIL_MIME == "image/webp"
    thumb = _open(data)
    assert thumb.format == "WEBP"
    assert thumb.size == expected
    assert max(thumb.size) <= size


def test_thumbnail_does_not_modify_its_input() -> None:
    image = gradient((600, 400))
    make_thumbnail(image, size=64)
    assert image.size == (600, 400)


def test_alpha_is_kept_and_other_modes_become_rgb() -> None:
    rgba = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    assert _open(make_thumbnail(rgba, size=32)).mode == "RGBA"
    assert _open(make_thumbnail(gradient((64, 64)).convert("L"), size=32)).mode == "RGB"


def test_icc_profile_is_embedded() -> None:
    image = gradient((64, 64))
    image.info["icc_profile"] = b"fake icc profile bytes"
    assert (
        _open(make_thumbnail(image, size=32)).info.get("icc_profile") == b"fake icc profile bytes"
    )


def test_a_thumbnail_passes_validation() -> None:
    decoded = decode_image(
        make_thumbnail(gradient((640, 480)), size=256), max_bytes=1 << 20, max_pixels=1 << 20
    )
    assert (decoded.mime, decoded.width, decoded.height) == ("image/webp", 256, 192)


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="size"):
        make_thumbnail(gradient((8, 8)), size=0)
