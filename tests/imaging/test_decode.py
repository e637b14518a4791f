"""decode_image: what is accepted, what is refused and why, and how pixels come out."""

from __future__ import annotations

import io
import resource
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from lookalike.core.errors import ImageTooLarge, InvalidImage, UnsupportedImageType
from lookalike.imaging import DecodedImage, decode_image, sniff_mime, supported_mime_types
from lookalike.imaging.decode import _to_rgb

from .builders import encode, gradient

LIMITS = {"max_bytes": 20 * 1024 * 1024, "max_pixels": 50_000_000}


def decode(data: bytes, **overrides: int | None) -> DecodedImage:
    return decode_image(data, **{**LIMITS, **overrides})  # type: ignore[arg-type]


def _can_encode(plugin: str) -> bool:
    """Whether a test file of this type can be built here (HEIF needs pillow-heif's encoder)."""
    Image.init()  # Pillow fills its plugin tables lazily
    supported_mime_types()  # registers pillow-heif, when installed
    return plugin in Image.SAVE


def _close(pixel: object, expected: tuple[int, int, int], tolerance: int = 60) -> bool:
    """An RGB pixel within `tolerance` of `expected` on every channel (lossy codecs drift)."""
    assert isinstance(pixel, tuple)
    return all(abs(int(a) - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


# --- accepted types ------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mime", "params"),
    [
        ("JPEG", "image/jpeg", {"quality": 90}),
        ("PNG", "image/png", {}),
        ("WEBP", "image/webp", {"quality": 90}),
        ("GIF", "image/gif", {}),
    ],
)
def test_accepted_types_decode_to_rgb(fmt: str, mime: str, params: dict[str, object]) -> None:
    data = encode(gradient((64, 48)), fmt, **params)
    decoded = decode(data)
    assert decoded.mime == mime
    assert decoded.format == fmt
    assert (decoded.width, decoded.height) == (64, 48) == decoded.image.size
    assert decoded.image.mode == "RGB"
    assert decoded.size_bytes == len(data)
    decoded.image.load()  # already decoded: nothing left to read from a file


@pytest.mark.parametrize(("plugin", "mime"), [("AVIF", "image/avif"), ("HEIF", "image/heic")])
def test_avif_and_heic_when_available(plugin: str, mime: str) -> None:
    if mime not in supported_mime_types():
        pytest.skip(f"{mime} is not supported in this installation")
    if not _can_encode(plugin):
        pytest.skip(f"no {plugin} encoder to build a test file")
    data = encode(Image.new("RGB", (64, 48), (200, 30, 30)), plugin, quality=90)
    assert sniff_mime(data) == mime
    decoded = decode(data)
    assert decoded.mime == mime
    assert (decoded.width, decoded.height) == (64, 48)
    assert _close(decoded.image.getpixel((32, 24)), (200, 30, 30), tolerance=50)


def test_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), color) for color in ((255, 0, 0), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    decoded = decode(buffer.getvalue())
    assert decoded.image.getpixel((8, 8)) == (255, 0, 0)


def test_the_file_name_plays_no_part(tmp_path: Path) -> None:
    path = tmp_path / "holiday.gif"  # a PNG named .gif
    path.write_bytes(encode(gradient((32, 32)), "PNG"))
    assert decode(path.read_bytes()).mime == "image/png"


# --- refused inputs: each with its own error and a message that says what to do ----------


def test_empty_file() -> None:
    with pytest.raises(InvalidImage, match="empty") as caught:
        decode(b"")
    assert type(caught.value) is InvalidImage


def test_text_file_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_text("This is a shopping list, not a photo.\n" * 20)
    with pytest.raises(InvalidImage, match="not an image") as caught:
        decode(path.read_bytes())
    assert type(caught.value) is InvalidImage
    assert "JPEG" in caught.value.message  # names what is supported


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
@pytest.mark.parametrize("reduce_for", [None, 32])
def test_truncated_jpeg(jpeg_bytes: bytes, cut: float, reduce_for: int | None) -> None:
    with pytest.raises(InvalidImage, match="truncated or damaged") as caught:
        decode(jpeg_bytes[: int(len(jpeg_bytes) * cut)], reduce_for=reduce_for)
    assert type(caught.value) is InvalidImage
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize(
    ("plugin", "params"),
    [
        ("JPEG", {"progressive": True}),
        ("WEBP", {"quality": 90}),
        ("WEBP", {"lossless": True}),
        ("GIF", {}),
        ("AVIF", {}),
        ("HEIF", {}),
    ],
)
def test_other_truncated_types(plugin: str, params: dict[str, object]) -> None:
    if not _can_encode(plugin):
        pytest.skip(f"no {plugin} encoder to build a test file")
    data = encode(gradient(), plugin, **params)
    if sniff_mime(data) not in supported_mime_types():
        pytest.skip(f"{plugin} is not supported in this installation")
    for cut in (0.5, 0.95):
        with pytest.raises(InvalidImage, match="damaged"):
            decode(data[: int(len(data) * cut)])


def test_jpeg_with_trailing_bytes_is_accepted(jpeg_bytes: bytes) -> None:
    # Some cameras and editors append data after the end marker; the picture is whole.
    assert decode(jpeg_bytes + b"trailer" * 10).mime == "image/jpeg"


def test_multi_picture_jpeg_gives_the_primary_image() -> None:
    buffer = io.BytesIO()
    first = gradient((64, 48))
    first.save(buffer, format="MPO", save_all=True, append_images=[first.rotate(180)])
    decoded = decode(buffer.getvalue())
    assert (decoded.mime, decoded.format, decoded.image.size) == ("image/jpeg", "JPEG", (64, 48))


def test_jpeg_missing_only_its_end_marker_is_refused(jpeg_bytes: bytes) -> None:
    with pytest.raises(InvalidImage):
        decode(jpeg_bytes[:-2])


@pytest.mark.parametrize("cut", [0.3, 0.9])
def test_truncated_png(png_bytes: bytes, cut: float) -> None:
    with pytest.raises(InvalidImage, match="truncated or damaged"):
        decode(png_bytes[: int(len(png_bytes) * cut)])


def test_damaged_header() -> None:
    with pytest.raises(InvalidImage, match="damaged"):
        decode(b"\xff\xd8\xff\xe0" + b"\x00" * 200)


@pytest.mark.parametrize(("fmt", "name"), [("TIFF", "TIFF"), ("BMP", "BMP"), ("ICO", "ICO")])
def test_real_images_of_unsupported_types(fmt: str, name: str) -> None:
    data = encode(gradient((32, 32)), fmt)
    with pytest.raises(UnsupportedImageType, match=name) as caught:
        decode(data)
    assert "Convert the image to JPEG or PNG" in caught.value.message


def test_svg_is_refused_as_unsupported() -> None:
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10"/>'
    with pytest.raises(UnsupportedImageType, match="SVG"):
        decode(svg)


def test_byte_limit_is_checked_before_anything_else() -> None:
    # Not even an image: the size alone decides, so nothing is parsed.
    with pytest.raises(ImageTooLarge, match="over the limit"):
        decode(b"x" * 2001, max_bytes=2000)


def test_pixel_limit_from_the_header() -> None:
    data = encode(gradient((100, 100)), "PNG")
    with pytest.raises(ImageTooLarge, match="100x100"):
        decode(data, max_pixels=5_000)
    assert decode(data, max_pixels=10_000).width == 100


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@pytest.mark.parametrize("pillow_limit", ["default", "disabled"])
def test_png_bomb_is_refused_fast_without_decoding(
    bomb_png: bytes, monkeypatch: pytest.MonkeyPatch, pillow_limit: str
) -> None:
    if pillow_limit == "disabled":
        # Our limit must hold on its own, whatever another library did to Pillow's global.
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert len(bomb_png) < 100_000
    before = _peak_rss_mib()
    started = time.perf_counter()
    with pytest.raises(ImageTooLarge, match="pixels") as caught:
        decode(bomb_png, max_pixels=64_000_000)
    assert time.perf_counter() - started < 0.5
    # 400 Mpx would need at least 400 MB once decoded.
    assert _peak_rss_mib() - before < 100
    if pillow_limit == "disabled":
        assert "20000x20000" in caught.value.message


def test_pillow_bomb_warning_is_not_raised_when_our_limit_allows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    data = encode(gradient((40, 40)), "PNG")  # 1600 px: over Pillow's limit, under ours
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert decode(data, max_pixels=10_000).width == 40


def test_pillow_bomb_error_becomes_image_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    data = encode(gradient((50, 50)), "PNG")  # 2500 px: over twice Pillow's limit
    with pytest.raises(ImageTooLarge):
        decode(data, max_pixels=10_000)


def test_concurrent_decodes_agree_and_leave_warning_filters_alone(
    jpeg_bytes: bytes, png_bytes: bytes, bomb_png: bytes
) -> None:
    filters_before = list(warnings.filters)
    inputs = [jpeg_bytes, png_bytes, bomb_png, jpeg_bytes[:500]] * 8
    expected = [_outcome(data) for data in inputs[:4]] * 8
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(_outcome, inputs)) == expected
    assert warnings.filters == filters_before


def _outcome(data: bytes) -> str:
    try:
        return decode(data).image.tobytes().hex()[:64]
    except (InvalidImage, ImageTooLarge) as exc:
        return type(exc).__name__


# --- orientation, reduction, modes -----------------------------------------------


def _with_orientation(
    image: Image.Image, orientation: int, plugin: str = "JPEG", **params: object
) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, plugin, exif=exif.tobytes(), **params)


@pytest.mark.parametrize(
    ("plugin", "params"),
    [
        ("JPEG", {"quality": 95}),
        ("PNG", {}),
        ("WEBP", {"quality": 95}),
        ("AVIF", {"quality": 95}),
        ("HEIF", {"quality": 95}),
    ],
)
def test_exif_orientation_6_is_applied(plugin: str, params: dict[str, object]) -> None:
    if not _can_encode(plugin):
        pytest.skip(f"no {plugin} encoder to build a test file")
    # Stored 40 wide x 20 tall, top half red; orientation 6 = turn 90 degrees clockwise.
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 40, 10))
    data = _with_orientation(stored, 6, plugin, **params)
    if sniff_mime(data) not in supported_mime_types():
        pytest.skip(f"{plugin} is not supported in this installation")
    decoded = decode(data)
    assert (decoded.width, decoded.height) == (20, 40) == decoded.image.size
    assert _close(decoded.image.getpixel((17, 20)), (255, 0, 0))  # red now on the right
    assert _close(decoded.image.getpixel((2, 20)), (0, 0, 255))
    assert "exif" not in decoded.image.info  # nobody can apply it twice


def test_reduce_for_keeps_full_size_dimensions() -> None:
    data = _with_orientation(gradient((2400, 1600)), 6, quality=85)
    decoded = decode(data, reduce_for=256)
    assert (decoded.width, decoded.height) == (1600, 2400)
    assert 256 <= min(decoded.image.size) < 1600
    assert decoded.image.width < decoded.image.height


def test_reduce_for_other_formats() -> None:
    decoded = decode(encode(gradient((1200, 800)), "PNG"), reduce_for=200)
    assert (decoded.width, decoded.height) == (1200, 800)
    assert 200 <= min(decoded.image.size) < 400


def test_reduce_for_must_be_positive(png_bytes: bytes) -> None:
    with pytest.raises(ValueError, match="reduce_for"):
        decode(png_bytes, reduce_for=0)


def test_palette_transparency_is_composited_on_white() -> None:
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.putpixel((0, 0), 1)
    decoded = decode(encode(image, "PNG", transparency=0))
    assert decoded.image.getpixel((5, 5)) == (255, 255, 255)
    assert decoded.image.getpixel((0, 0)) == (255, 0, 0)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_on_white(mode: str) -> None:
    image = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    image.putpixel((0, 0), (0, 0, 0, 255))
    decoded = decode(encode(image.convert(mode), "PNG"))
    assert decoded.image.getpixel((5, 5)) == (255, 255, 255)
    assert decoded.image.getpixel((0, 0)) == (0, 0, 0)


def test_transparent_gif() -> None:
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 0, 128, 0] + [0] * 762)
    image.putpixel((0, 0), 1)
    decoded = decode(encode(image, "GIF", transparency=0))
    assert decoded.image.getpixel((5, 5)) == (255, 255, 255)
    assert decoded.image.getpixel((0, 0)) == (0, 128, 0)


def test_cmyk_jpeg() -> None:
    decoded = decode(encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95))
    assert _close(decoded.image.getpixel((8, 8)), (255, 0, 0))


def test_16_bit_grayscale_is_scaled_not_clipped() -> None:
    image = Image.new("I;16", (8, 8), 32768)  # mid-grey in 16 bits
    decoded = decode(encode(image, "PNG"))
    assert decoded.image.getpixel((4, 4)) == (128, 128, 128)


@pytest.mark.parametrize(("mode", "value", "expected"), [("I", 65535, 255), ("I", 200, 200)])
def test_32_bit_grayscale_is_scaled_to_the_range_it_uses(
    mode: str, value: int, expected: int
) -> None:
    # No accepted format yields mode I today; the conversion must still not clip.
    image = Image.new(mode, (4, 4), value)
    assert _to_rgb(image).getpixel((1, 1)) == (expected, expected, expected)


@pytest.mark.parametrize("mode", ["1", "L", "P"])
def test_other_modes(mode: str) -> None:
    decoded = decode(encode(gradient((16, 16)).convert(mode), "PNG"))
    assert decoded.image.mode == "RGB"


def test_icc_profile_is_kept_for_rgb() -> None:
    profile = b"fake icc profile bytes"
    decoded = decode(encode(gradient((16, 16)), "PNG", icc_profile=profile))
    assert decoded.image.info.get("icc_profile") == profile


# --- sniffing ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "mime"),
    [
        (b"\xff\xd8\xff\xe0", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"GIF89a", "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"\x00\x00\x00\x1cftypheic\x00\x00\x00\x00mif1heic", "image/heic"),
        (b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avif", "image/avif"),
        (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1", "image/heif"),
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x00\x00isom", None),  # an MP4 video
        (b"II*\x00", "image/tiff"),
        (b"BM" + b"\x00" * 12 + b"\x28\x00\x00\x00", "image/bmp"),
        (b"%PDF-1.7", "application/pdf"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
        (b"hello, world", None),
        (b"", None),
    ],
)
def test_sniff_mime(head: bytes, mime: str | None) -> None:
    assert sniff_mime(head + b"\x00" * 16 if head else head) == mime


def test_supported_types() -> None:
    assert {"image/jpeg", "image/png", "image/webp", "image/gif"} <= supported_mime_types()
    assert "image/tiff" not in supported_mime_types()
