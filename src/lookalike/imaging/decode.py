"""Validate image bytes by their content and decode them to an RGB image.

What is accepted: JPEG (including the multi-picture JPEGs that cameras write), PNG (APNG gives
its first frame), WebP (animated: first frame), GIF (first frame), AVIF when Pillow was built
with it, and HEIC/HEIF when pillow-heif is installed. These are what phones and browsers produce
and what a browser can show next to a search hit. Everything else is refused with
`UnsupportedImageType`, even where Pillow could read it: TIFF and PSD are multi-page, layered
containers with a long history of decoder bugs, BMP/ICO are rare as photos and uncompressed, and
SVG/PDF are documents rather than pixels. A user converts those to JPEG or PNG in one step.

The type comes from the file's first bytes, never from its name, and Pillow is only allowed to
try the one plugin those bytes name.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError, features

from lookalike.core.config import Settings
from lookalike.core.errors import (
    ExtremeAspectRatio,
    ImageTooLarge,
    InvalidImage,
    UnsupportedImageType,
)

__all__ = [
    "DECODE_BUDGET",
    "DecodedImage",
    "PixelBudget",
    "decode_image",
    "decode_stored",
    "sniff_mime",
    "supported_mime_types",
]


@dataclass(frozen=True)
class DecodedImage:
    """A validated, fully decoded image.

    `image` is RGB with EXIF orientation applied. When `decode_image` was asked to `reduce_for`
    a size, `image` may be smaller than the original; `width` and `height` are always the
    full-size dimensions as a viewer shows them (after orientation).
    """

    image: Image.Image
    mime: str
    format: str
    width: int
    height: int
    size_bytes: int
    # For a JPEG: the IJG quality (1..100) its luminance quantization table was made with.
    jpeg_quality: int | None = None


# The IJG (libjpeg) reference luminance quantization table; every encoder that takes a
# "quality" scales it (`jpeg_quality_of`).
_IJG_LUMINANCE_SUM = sum(
    (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69,
     56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81,
     104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
)  # fmt: skip


def jpeg_quality_of(luminance_table: Sequence[int]) -> int:
    """The IJG quality a luminance quantization table was scaled to: libjpeg multiplies the
    reference table by 5000/q % (q < 50) or 200 - 2q % (q >= 50), so the ratio of the sums
    gives q back (exactly for libjpeg's tables, approximately for others)."""
    scale = 100.0 * sum(luminance_table) / _IJG_LUMINANCE_SUM
    quality = 5000.0 / scale if scale > 100.0 else (200.0 - scale) / 2.0
    return max(1, min(100, round(quality)))


# mime -> (short format name reported to callers, the Pillow plugin allowed to open it)
_DECODERS: dict[str, tuple[str, str]] = {
    "image/jpeg": ("JPEG", "JPEG"),
    "image/png": ("PNG", "PNG"),
    "image/gif": ("GIF", "GIF"),
    "image/webp": ("WEBP", "WEBP"),
    "image/avif": ("AVIF", "AVIF"),
    "image/heic": ("HEIC", "HEIF"),
    "image/heif": ("HEIF", "HEIF"),
}

# Recognised but refused; the name goes into the error message.
_UNSUPPORTED_NAMES: dict[str, str] = {
    "image/tiff": "TIFF",
    "image/bmp": "BMP",
    "image/vnd.microsoft.icon": "ICO",
    "image/vnd.adobe.photoshop": "Photoshop (PSD)",
    "image/jp2": "JPEG 2000",
    "image/jxl": "JPEG XL",
    "image/qoi": "QOI",
    "image/svg+xml": "SVG",
    "application/pdf": "PDF",
}

_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIF_BRANDS = frozenset({b"mif1", b"msf1", b"mif2"})
_BMP_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})

_ORIENTATION_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

_WHITE = (255, 255, 255)


def sniff_mime(data: bytes) -> str | None:
    """The MIME type the bytes' signature names, or None when it names no image type we know.

    Knows the accepted types and, so that they can be refused by name, TIFF, BMP, ICO, PSD,
    JPEG 2000, JPEG XL, QOI, SVG and PDF. Looks at content only.
    """
    head = data[:32]
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":
        return _sniff_isobmff(data)
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "image/tiff"
    if (
        head[:2] == b"BM"
        and len(head) >= 18
        and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES
    ):
        return "image/bmp"
    if head[:4] == b"\x00\x00\x01\x00" and len(head) >= 6 and head[4:6] != b"\x00\x00":
        return "image/vnd.microsoft.icon"
    if head[:4] == b"8BPS":
        return "image/vnd.adobe.photoshop"
    if head[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or head[:4] == b"\xff\x4f\xff\x51":
        return "image/jp2"
    if head[:2] == b"\xff\x0a" or head[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n":
        return "image/jxl"
    if head[:4] == b"qoif":
        return "image/qoi"
    if head[:5] == b"%PDF-":
        return "application/pdf"
    if _looks_like_svg(data):
        return "image/svg+xml"
    return None


def _sniff_isobmff(data: bytes) -> str | None:
    """HEIC, HEIF or AVIF from an ISO-BMFF `ftyp` box; None for other members (MP4, MOV)."""
    box_size = int.from_bytes(data[0:4], "big")
    end = min(max(box_size, 16), len(data), 256)
    major = data[8:12]
    compatible = {data[i : i + 4] for i in range(16, end - 3, 4)}
    if major in _AVIF_BRANDS:
        return "image/avif"
    if major in _HEIC_BRANDS:
        return "image/heic"
    if compatible & _AVIF_BRANDS:
        return "image/avif"
    if compatible & _HEIC_BRANDS:
        return "image/heic"
    if major in _HEIF_BRANDS or compatible & _HEIF_BRANDS:
        return "image/heif"
    return None


def _looks_like_svg(data: bytes) -> bool:
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head)


@cache
def _heif_opener_registered() -> bool:
    """Register pillow-heif's opener once per process; False when it is not installed."""
    try:
        import pillow_heif
    except ImportError:
        return False
    # Only the primary image is wanted: skipping thumbnails, depth maps and auxiliary images
    # saves their decode time and memory.
    pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
    return True


@cache
def supported_mime_types() -> frozenset[str]:
    """The MIME types `decode_image` accepts in this installation."""
    accepted = {"image/jpeg", "image/png", "image/gif", "image/webp"}
    if features.check("avif"):
        accepted.add("image/avif")
    if _heif_opener_registered():
        accepted.update({"image/heic", "image/heif"})
    return frozenset(accepted)


def _supported_names() -> str:
    names = sorted({_DECODERS[mime][0] for mime in supported_mime_types()})
    return ", ".join(names)


def _human_bytes(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n} bytes"


# Serialises our own save/restore of the warnings filters: `catch_warnings` swaps a
# process-global list, and two threads interleaving their enter/exit would leave one's filter
# installed for good. Only header parsing runs under it (microseconds to a millisecond).
_HEADER_LOCK = threading.Lock()


def _open_header(
    data: bytes, format_name: str, plugin: str, max_pixels: int, max_aspect_ratio: float
) -> Image.Image:
    """Parse the header only (no pixels are decoded yet) and enforce the pixel limit.

    Pillow has a bomb check of its own driven by the global `Image.MAX_IMAGE_PIXELS`; this
    service's limit is `max_pixels`, per call, so Pillow's warning is silenced for this call
    and its hard error (at twice its global) is reported as the same `ImageTooLarge`.
    """
    with _HEADER_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=[plugin])
        except Image.DecompressionBombError as exc:
            raise ImageTooLarge(
                f"The image has too many pixels to decode safely ({exc}). "
                f"Resize it to at most {max_pixels:,} pixels (width x height) and upload it again."
            ) from exc
        except UnidentifiedImageError as exc:
            raise InvalidImage(
                f"The file has a {format_name} signature but its header cannot be read: it is "
                "damaged. Upload the complete file again, or re-export it from the original."
            ) from exc
        except MemoryError:
            raise
        except Exception as exc:
            raise _damaged(exc) from exc
    _check_pixels(image.size, max_pixels, max_aspect_ratio)
    return image


def _check_pixels(size: tuple[int, int], max_pixels: int, max_aspect_ratio: float) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise InvalidImage(
            f"The image header says it is {width}x{height} pixels, which is not a picture. "
            "The file is damaged; export it again from the original."
        )
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"The image is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,} pixels (width x height). Resize it and upload it again "
            "(the server's limit is LOOKALIKE_MAX_IMAGE_PIXELS)."
        )
    if max(width, height) > max_aspect_ratio * min(width, height):
        raise ExtremeAspectRatio(
            f"The image is {width}x{height} pixels: its longer side is more than "
            f"{max_aspect_ratio:g} times its shorter side, which no photo is. Crop it to the "
            "part that matters and upload that (the server's limit is "
            "LOOKALIKE_MAX_ASPECT_RATIO)."
        )


class PixelBudget:
    """How many pixels may be held at full size, decoded, at one time in this process.

    A PNG cannot be decoded at a reduced size: its pixels (up to 4 bytes each) are all in memory
    until they are reduced. Each decode holds its image's pixels from the budget for that time,
    so concurrent uploads wait for each other instead of adding up past the machine's memory.
    An image larger than the whole budget waits until it can have all of it.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._free = capacity
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        need = min(pixels, self.capacity)
        with self._changed:
            self._changed.wait_for(lambda: self._free >= need)
            self._free -= need
        try:
            yield
        finally:
            with self._changed:
                self._free += need
                self._changed.notify_all()

    @property
    def in_use(self) -> int:
        with self._changed:
            return self.capacity - self._free


# One image at the default pixel limit, or several smaller ones, at a time: at most 4 bytes a
# pixel decoded plus a band being converted, so about 260 MB of decoded pixels per process.
DECODE_BUDGET = PixelBudget(64_000_000)
DEFAULT_MAX_ASPECT_RATIO = 50.0
# Rows are converted to RGB and reduced a band of about this many pixels at a time.
_BAND_PIXELS = 1 << 20


def _damaged(exc: BaseException) -> InvalidImage:
    return InvalidImage(
        f"The image data is truncated or damaged and cannot be decoded ({exc}). "
        "Upload the complete file again, or re-export it from the original."
    )


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8); 1 when absent or unreadable.

    A broken EXIF block must not cost the user an otherwise good photo, so any error here
    means "no rotation".
    """
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _to_rgb(image: Image.Image, full_scale: float | None = None) -> Image.Image:
    """Any decoded mode to 8-bit RGB; transparency is composited on white.

    White, not black: transparent product shots and logos are drawn for light backgrounds,
    and their thumbnails and embeddings should look like what a person sees. `full_scale` is
    the white point of a 32-bit (`I`, `F`) image, when `image` is only a band of it.
    """
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode.startswith("I") or mode == "F":
        image = _high_bit_depth_to_l(image, full_scale)
        mode = image.mode
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, _WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    # What is left from the accepted formats (CMYK, P, L, 1) converts directly.
    return image.convert("RGB")


def _full_scale(image: Image.Image) -> float | None:
    """The white point of a 32-bit greyscale image: 32-bit containers usually hold 16-bit
    samples, so the range actually used decides (read without copying the pixels)."""
    if image.mode not in ("I", "F"):
        return None
    _, top = image.getextrema()
    assert isinstance(top, (int, float))
    return 255.0 if top <= 255 else (65535.0 if top <= 65535 else top)


def _high_bit_depth_to_l(image: Image.Image, full_scale: float | None = None) -> Image.Image:
    """16-bit (`I;16*`) and 32-bit (`I`, `F`) grayscale to 8-bit `L` by scaling, not clipping.

    Pillow's own `convert("L")` clips at 255, which turns a 16-bit photo almost white.
    """
    pixels = np.asarray(image)
    if image.mode.startswith("I;16"):
        scaled = (pixels.astype(np.uint32) >> 8).astype(np.uint8)
    else:
        scale = full_scale if full_scale is not None else _full_scale(image) or 255.0
        values = pixels.astype(np.float32)
        scaled = np.clip(values * np.float32(255.0 / scale), 0, 255).astype(np.uint8)
    # A 16-bit tRNS colour key would no longer match 8-bit samples, so it is not carried over.
    return Image.fromarray(scaled)


def _rgb_reduced(image: Image.Image, target: int | None) -> Image.Image:
    """`image` as RGB, box-reduced to keep its shorter side >= `target` (when given).

    Converted a band of rows at a time: a whole-image conversion of a large RGBA or 32-bit
    image would hold two or three more full-size copies. Band edges are multiples of the
    reduction factor, so the result is the same as reducing the whole image at once.
    """
    factor = min(image.width, image.height) // target if target else 1
    factor = max(factor, 1)
    if factor == 1 and image.mode == "RGB" and "transparency" not in image.info:
        return image
    width, height = image.size
    full_scale = _full_scale(image)
    rows = max(factor, (_BAND_PIXELS // max(width, 1)) // factor * factor)
    out = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    for top in range(0, height, rows):
        band = image.crop((0, top, width, min(height, top + rows)))
        band.info = image.info
        rgb = _to_rgb(band, full_scale)
        out.paste(rgb.reduce(factor) if factor > 1 else rgb, (0, top // factor))
    return out


def decode_image(
    data: bytes,
    *,
    max_bytes: int,
    max_pixels: int,
    reduce_for: int | None = None,
    max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO,
) -> DecodedImage:
    """Validate `data` by its content and decode it completely.

    Raises `InvalidImage` for empty, unrecognisable, truncated or damaged data,
    `UnsupportedImageType` for a real image of a type that is not accepted (see the module
    docstring), and `ImageTooLarge` when `data` is over `max_bytes` (checked before anything
    else) or the header announces more than `max_pixels` pixels (checked before any pixel is
    decoded).

    `reduce_for=N` is a fast path for callers that need no more than N pixels on the shorter
    side (thumbnails, perceptual hashes, model input): JPEGs are decoded at 1/2, 1/4 or 1/8
    scale by the decoder itself and other formats are box-reduced after decoding, always
    keeping the shorter side >= N. The whole file is still decoded, so truncation is still
    caught. The same bytes with the same `reduce_for` always give the same pixels.
    """
    if reduce_for is not None and reduce_for < 1:
        raise ValueError(f"reduce_for must be a positive number of pixels, not {reduce_for}")
    size_bytes = len(data)
    if size_bytes == 0:
        raise InvalidImage(
            "The file is empty (0 bytes). Select the image file again and re-upload it."
        )
    if size_bytes > max_bytes:
        raise ImageTooLarge(
            f"The file is {_human_bytes(size_bytes)}, over the limit of {_human_bytes(max_bytes)}. "
            "Resize or recompress it and upload it again "
            "(the server's limit is LOOKALIKE_MAX_IMAGE_BYTES)."
        )

    mime = sniff_mime(data)
    if mime is None:
        raise InvalidImage(
            "The file is not an image: its content matches none of the supported types "
            f"({_supported_names()}), whatever its name says. Upload the image file itself."
        )
    if mime not in supported_mime_types():
        name = _UNSUPPORTED_NAMES.get(mime) or _DECODERS.get(mime, (mime, ""))[0]
        hint = (
            " Install pillow-heif on the server to accept HEIC/HEIF."
            if mime in ("image/heic", "image/heif")
            else ""
        )
        raise UnsupportedImageType(
            f"{name} files are not supported. Convert the image to JPEG or PNG and upload it "
            f"again (supported: {_supported_names()}).{hint}"
        )
    format_name, plugin = _DECODERS[mime]

    source = _open_header(data, format_name, plugin, max_pixels, max_aspect_ratio)

    full_width, full_height = source.size
    tables = getattr(source, "quantization", None) if plugin == "JPEG" else None
    jpeg_quality = jpeg_quality_of(tables[0]) if tables and 0 in tables else None
    drafted = False
    if reduce_for is not None and plugin == "JPEG":
        # The decoder scales by 1/2, 1/4 or 1/8 while decoding: far less work and memory.
        source.draft(source.mode, (reduce_for, reduce_for))
        drafted = True

    with DECODE_BUDGET.hold(source.width * source.height):
        try:
            source.load()
        except MemoryError:
            raise
        except Image.DecompressionBombError as exc:
            raise ImageTooLarge(
                f"The image has too many pixels to decode safely ({exc}). "
                "Resize it and upload it again."
            ) from exc
        except Exception as exc:
            raise _damaged(exc) from exc
        # Defensive: the limits must also hold if a container's frame outgrew its header.
        _check_pixels(source.size, max_pixels, max_aspect_ratio)
        if not drafted:
            # What was decoded, not what the header said (a damaged HEIF header can differ).
            full_width, full_height = source.size

        orientation = _orientation(source)
        icc_profile = source.info.get("icc_profile") if source.mode in ("RGB", "RGBA") else None
        image = _rgb_reduced(source, reduce_for)
        del source  # the full-size pixels go before the budget is given back
    transpose = _ORIENTATION_TRANSPOSE.get(orientation)
    if transpose is not None:
        image = image.transpose(transpose)
        if orientation >= 5:
            full_width, full_height = full_height, full_width
    # Only the colour profile is worth carrying (thumbnails keep colours right with it); the
    # rest, EXIF orientation included, no longer describes these pixels.
    image.info = {"icc_profile": icc_profile} if icc_profile else {}

    return DecodedImage(
        image=image,
        mime=mime,
        format=format_name,
        width=full_width,
        height=full_height,
        size_bytes=size_bytes,
        jpeg_quality=jpeg_quality,
    )


def decode_stored(data: bytes, settings: Settings, *, reduce_for: int) -> DecodedImage:
    """`decode_image` for an original already accepted and stored: the size limit it passed
    then may have been lowered since, so it does not apply; the pixel limits still do."""
    return decode_image(
        data,
        max_bytes=max(settings.max_image_bytes, len(data)),
        max_pixels=settings.max_image_pixels,
        max_aspect_ratio=settings.max_aspect_ratio,
        reduce_for=reduce_for,
    )
