"""Property-based fuzzing of the decoder and of every path that resizes or crops a decoded image.

An outside probe once found a 1x60000 PNG that the model's resize turned into a 224 x 13-million
pixel image. These properties keep looking for the next one:

- `decode_image` either returns an RGB image consistent with the file's header (and with
  `reduce_for`), or raises a `LookalikeError` with a 4xx status, never anything else, whatever
  the size, mode, format, metadata, truncation or damage of the file.
- Every resize/crop path (model input, thumbnail, pHash, quality score, NSFW input, crops)
  returns its fixed shape with finite values, and never asks Pillow for an image of more than
  max(4 x its output, its input) pixels. `tracemalloc` cannot see Pillow's buffers, so the sizes
  requested from `resize`/`crop`/`reduce`/`Image.new` are watched instead.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms, PngImagePlugin

from lookalike.core.errors import LookalikeError
from lookalike.embedding import Embedder, ImagePreprocessor, PreprocessConfig, load_embedder
from lookalike.embedding.crops import MAX_CROPS, SALIENCY_SIZE, crop_boxes, crop_tensors
from lookalike.embedding.crops import saliency_map as compute_saliency
from lookalike.imaging import DecodedImage, decode_image, make_thumbnail, phash_hex
from lookalike.imaging.decode import supported_mime_types
from lookalike.quality.nsfw import INPUT_SIZE, detector_input
from lookalike.quality.scores import WORKING_SIZE, quality_score
from support import FUZZ, make_settings

# The service's own defaults (config.py): what an upload meets in production.
MAX_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 64_000_000
ORIENTATION_TAG = 0x0112
ALL_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "I;16", "I", "F")
# Pillow plugin -> the file type's MIME type.
PLUGIN_MIME = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "AVIF": "image/avif",
    "HEIF": "image/heic",
}
# Encoding cost differs by orders of magnitude between formats; these keep one example fast.
MAX_AREA = {
    "JPEG": 1_000_000,
    "PNG": 1_000_000,
    "WEBP": 1_000_000,
    "GIF": 400_000,
    "AVIF": 200_000,
    "HEIF": 40_000,
}
SAVE_OPTIONS: dict[str, dict[str, Any]] = {
    "PNG": {"compress_level": 1},
    "WEBP": {"method": 0},
    "AVIF": {"speed": 10},
}


# --- pictures ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Picture:
    """A synthetic picture, cheap to build at any size: `blocks` of random colour, `noise` or
    `flat`. `depth` picks the value range of 32-bit modes (8, 16 or 31 bits; floats for F)."""

    width: int
    height: int
    mode: str
    texture: str = "blocks"
    seed: int = 0
    depth: int = 8
    transparency: bool = False

    def build(self) -> Image.Image:
        rng = np.random.default_rng(self.seed)
        channels = {"LA": 2, "PA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4}.get(self.mode, 1)
        high = {8: 256, 16: 65_536, 31: 2**31 - 1}[self.depth]
        low = -(2**31) if self.depth == 31 else 0
        if self.mode in ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK"):
            high, low = 256, 0
        pixels = self._pixels(rng, channels, low, high)
        size = (self.width, self.height)
        if self.mode == "F":
            scale = {8: 1.0 / 255, 16: 1.0, 31: 1e3}[self.depth]
            image = Image.frombytes("F", size, (pixels * scale).astype(np.float32).tobytes())
        elif self.mode == "I;16":
            image = Image.frombytes("I;16", size, pixels.astype("<u2").tobytes())
        elif self.mode == "I":
            image = Image.frombytes("I", size, pixels.astype(np.int32).tobytes())
        elif self.mode == "1":
            grey = Image.frombytes("L", size, pixels.astype(np.uint8).tobytes())
            image = grey.convert("1", dither=Image.Dither.NONE)
        else:
            image = Image.frombytes(self.mode, size, pixels.astype(np.uint8).tobytes())
        if self.mode in ("P", "PA"):
            image.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tobytes())
        if self.transparency and self.mode in ("P", "L"):
            image.info["transparency"] = int(pixels.flat[0]) % 256
        elif self.transparency and self.mode == "RGB":
            image.info["transparency"] = tuple(int(v) for v in pixels[0, 0, :3])
        return image

    def _pixels(self, rng: np.random.Generator, channels: int, low: int, high: int) -> Any:
        shape = (self.height, self.width, channels)
        if self.texture == "flat":
            pixels = np.broadcast_to(rng.integers(low, high, size=channels), shape)
        elif self.texture == "noise":
            pixels = rng.integers(low, high, size=shape)
        else:
            grid_h, grid_w = (int(v) for v in rng.integers(1, 9, size=2))
            grid = rng.integers(low, high, size=(grid_h, grid_w, channels))
            rows = np.arange(self.height) * grid_h // self.height
            cols = np.arange(self.width) * grid_w // self.width
            pixels = grid[rows][:, cols]
        return pixels[:, :, 0] if channels == 1 else pixels


def sides(
    max_side: int, max_area: int, strip_side: int | None = None
) -> st.SearchStrategy[tuple[int, int]]:
    """(width, height) with each side in 1..max_side and at most `max_area` pixels; strips
    (1xN, Nx1) and squares are as likely as anything in between. With `strip_side`, a strip
    of 1-3 pixels may be that long (the probe's was 60000)."""

    @st.composite
    def build(draw: st.DrawFn) -> tuple[int, int]:
        short = draw(st.integers(1, min(max_side, math.isqrt(max_area))))
        side = strip_side if strip_side is not None and short <= 3 else max_side
        long = draw(st.integers(short, max(short, min(side, max_area // short))))
        return (long, short) if draw(st.booleans()) else (short, long)

    return build()


def pictures(
    modes: tuple[str, ...] = ALL_MODES,
    max_area: int = 1_000_000,
    strip_side: int | None = 60_000,
) -> st.SearchStrategy[Picture]:
    @st.composite
    def build(draw: st.DrawFn) -> Picture:
        width, height = draw(sides(4000, max_area, strip_side))
        return Picture(
            width=width,
            height=height,
            mode=draw(st.sampled_from(modes)),
            texture=draw(st.sampled_from(("blocks", "noise", "flat"))),
            seed=draw(st.integers(0, 2**16)),
            depth=draw(st.sampled_from((8, 16, 31))),
            transparency=draw(st.booleans()),
        )

    return build()


# --- encoded files -----------------------------------------------------------------------------


@cache
def encodable_modes() -> dict[str, tuple[str, ...]]:
    """For each plugin of an accepted type that this Pillow can write, the modes it writes."""
    Image.init()
    supported_mime_types()  # registers pillow-heif's plugin, when installed
    table: dict[str, tuple[str, ...]] = {}
    for plugin, mime in PLUGIN_MIME.items():
        if mime not in supported_mime_types() or plugin not in Image.SAVE:
            continue
        modes = []
        for mode in ALL_MODES:
            if plugin == "GIF" and mode not in ("1", "L", "P", "RGB"):
                continue  # everything else is quantized to P first; these cover the decoder
            try:
                _encode(Picture(8, 8, mode).build(), plugin, {})
            except (OSError, ValueError, KeyError, TypeError):
                continue
            modes.append(mode)
        table[plugin] = tuple(modes)
    return table


@cache
def _srgb_profile() -> bytes:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert isinstance(profile, bytes)
    return profile


@dataclass(frozen=True)
class EncodedFile:
    """An image file to build: a picture, its format and what is written around the pixels."""

    picture: Picture
    plugin: str
    orientation: int | None = None  # EXIF Orientation, including values outside 1..8
    icc: str | None = None  # "srgb" or "garbage"
    text: str | None = None  # a text chunk, a comment or XMP, as the format allows
    frames: int = 1
    quality: int = 75
    progressive: bool = False

    def build(self) -> bytes:
        image = self.picture.build()
        options: dict[str, Any] = dict(SAVE_OPTIONS.get(self.plugin, {}))
        if self.plugin in ("JPEG", "WEBP", "AVIF", "HEIF"):
            options["quality"] = self.quality
        if self.plugin == "JPEG" and self.progressive:
            options["progressive"] = True
        if self.orientation is not None and self.plugin != "GIF":
            exif = Image.Exif()
            exif[ORIENTATION_TAG] = self.orientation
            options["exif"] = exif.tobytes()
        if self.icc is not None and self.plugin != "GIF":
            rng = np.random.default_rng(self.picture.seed)
            garbage = rng.integers(0, 256, 300, dtype=np.uint8).tobytes()
            options["icc_profile"] = _srgb_profile() if self.icc == "srgb" else garbage
        if self.text is not None:
            if self.plugin == "PNG":
                info = PngImagePlugin.PngInfo()
                info.add_text("Comment", self.text, zip=len(self.text) % 2 == 1)
                info.add_itxt("Description", self.text, zip=True)
                options["pnginfo"] = info
            elif self.plugin in ("JPEG", "GIF"):
                options["comment"] = self.text.encode()
            elif self.plugin == "WEBP":
                options["xmp"] = self.text.encode()
        if self.frames > 1 and self.plugin in ("PNG", "GIF", "WEBP"):
            rest = [
                Picture(
                    self.picture.width,
                    self.picture.height,
                    self.picture.mode,
                    seed=self.picture.seed + i,
                ).build()
                for i in range(1, self.frames)
            ]
            options.update(save_all=True, append_images=rest, duration=50)
        key = image.info.get("transparency")
        if key is not None and (self.plugin == "PNG" or isinstance(key, int)):
            options["transparency"] = key
        elif self.plugin == "GIF":
            image.info.pop("transparency", None)  # an RGB colour key has no GIF palette entry
        return _encode(image, self.plugin, options)

    def shown_size(self) -> tuple[int, int]:
        """(width, height) as a viewer shows the file: EXIF orientations 5-8 swap the sides."""
        width, height = self.picture.width, self.picture.height
        turned = self.plugin != "GIF" and self.orientation in (5, 6, 7, 8)
        return (height, width) if turned else (width, height)


def _encode(image: Image.Image, plugin: str, options: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=plugin, **options)
    return buffer.getvalue()


@st.composite
def encoded_files(draw: st.DrawFn) -> EncodedFile:
    table = encodable_modes()
    plugin = draw(st.sampled_from(sorted(table)))
    # WebP, AVIF and HEIF cannot hold a side past 16383 pixels: the encoder's limit, not ours.
    long_strips = plugin in ("PNG", "JPEG", "GIF")
    picture = draw(
        pictures(table[plugin], MAX_AREA[plugin], strip_side=60_000 if long_strips else None)
    )
    return EncodedFile(
        picture=picture,
        plugin=plugin,
        orientation=draw(st.none() | st.integers(1, 8) | st.sampled_from((0, 9, 255, 65535))),
        icc=draw(st.sampled_from((None, "srgb", "garbage"))),
        text=draw(st.none() | st.text(max_size=300)),
        frames=draw(st.integers(1, 3)) if picture.width * picture.height <= 100_000 else 1,
        quality=draw(st.integers(1, 100)),
        progressive=draw(st.booleans()),
    )


@dataclass(frozen=True)
class Damage:
    """What happens to a valid file on its way: cut short, and/or bytes flipped (positions
    taken modulo the file's length)."""

    truncate_at: int | None = None
    flips: tuple[tuple[int, int], ...] = ()

    def apply(self, data: bytes) -> bytes:
        out = bytearray(data)
        for position, mask in self.flips:
            out[position % len(out)] ^= mask
        if self.truncate_at is not None:
            out = out[: self.truncate_at % (len(out) + 1)]
        return bytes(out)


def _flips(min_size: int, max_size: int) -> st.SearchStrategy[tuple[tuple[int, int], ...]]:
    flip = st.tuples(st.integers(0, 2**20), st.integers(1, 255))
    return st.lists(flip, min_size=min_size, max_size=max_size).map(tuple)


damages = st.one_of(
    st.none(),
    st.builds(Damage, truncate_at=st.integers(0, 2**20)),
    st.builds(Damage, flips=_flips(1, 8)),
    st.builds(Damage, truncate_at=st.integers(0, 2**20), flips=_flips(0, 4)),
)


# --- the decoder -------------------------------------------------------------------------------


def _header_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as header:
        return header.size


def _reduction(full: tuple[int, int], reduced: tuple[int, int]) -> int | None:
    """The smallest integer factor F with reduced == (ceil(W / F), ceil(H / F)), or None."""
    low, high = 1, math.inf
    for side, kept in zip(full, reduced, strict=True):
        if kept < 1:
            return None
        low = max(low, -(-side // kept))  # ceil(side / F) <= kept
        if kept > 1:
            high = min(high, (side - 1) // (kept - 1))  # ceil(side / F) > kept - 1
    return low if low <= high else None


@settings(FUZZ, max_examples=300)
@given(
    file=encoded_files(),
    damage=damages,
    reduce_for=st.none() | st.sampled_from((1, 8, 224, 256, 1000)) | st.integers(1, 5000),
    max_aspect_ratio=st.sampled_from((50.0, 1e9)) | st.floats(1.0, 100.0),
    max_pixels=st.sampled_from((MAX_PIXELS,)) | st.integers(1, 2_000_000),
    max_bytes=st.sampled_from((MAX_BYTES,)) | st.integers(1, 200_000),
)
def test_decode_returns_a_consistent_image_or_a_clear_error(
    file: EncodedFile,
    damage: Damage | None,
    reduce_for: int | None,
    max_aspect_ratio: float,
    max_pixels: int,
    max_bytes: int,
) -> None:
    try:
        valid = file.build()
    except (OSError, ValueError):
        reject()  # the encoder's own limits, not the decoder's
    data = damage.apply(valid) if damage else valid
    outcome = _decode_or_error(
        data,
        max_bytes=max_bytes,
        max_pixels=max_pixels,
        reduce_for=reduce_for,
        max_aspect_ratio=max_aspect_ratio,
    )
    if isinstance(outcome, LookalikeError):
        assert 400 <= outcome.status < 500, f"{outcome.code} is a {outcome.status}: {outcome}"
        assert outcome.message
    else:
        _check_decoded(outcome, file, damage, data, reduce_for)


def _decode_or_error(data: bytes, **limits: Any) -> DecodedImage | LookalikeError:
    """The decoded image, or the domain error it raised; any other exception propagates."""
    try:
        return decode_image(data, **limits)
    except LookalikeError as exc:
        return exc


def _check_decoded(
    decoded: DecodedImage,
    file: EncodedFile,
    damage: Damage | None,
    data: bytes,
    reduce_for: int | None,
) -> None:
    image = decoded.image
    assert image.mode == "RGB"
    assert image.width >= 1 and image.height >= 1
    assert decoded.size_bytes == len(data)
    assert decoded.mime in supported_mime_types()
    full = (decoded.width, decoded.height)
    if damage is None:
        assert decoded.mime == PLUGIN_MIME[file.plugin] or file.plugin == "HEIF"
        assert full == file.shown_size()
    elif file.plugin != "HEIF":
        header = _header_size(data)
        assert full in (header, header[::-1]), f"header says {header}, decoded as {full}"
    # A damaged HEIF header may name another size than the picture it decodes to: the decoded
    # size is reported then (checked against the pixels just below).
    factor = _reduction(full, image.size)
    assert factor is not None, f"{image.size} is not an even reduction of {full}"
    shorter, full_shorter = min(image.size), min(full)
    if reduce_for is None:
        assert factor == 1, f"reduced {full} to {image.size} without reduce_for"
    elif full_shorter <= reduce_for:
        assert image.size == full, f"reduced {full} to {image.size} below reduce_for={reduce_for}"
    else:
        assert reduce_for <= shorter < 2 * reduce_for, (
            f"reduce_for={reduce_for}: {full} became {image.size}"
        )


# --- what happens to a decoded image -----------------------------------------------------------


class OverBudget(AssertionError):
    """Pillow was asked for an image larger than the path's budget."""


@contextmanager
def pixel_budget(limit: int) -> Iterator[list[tuple[str, tuple[int, int]]]]:
    """Record the size of every image `resize`, `crop`, `reduce` and `Image.new` are asked for
    while the block runs, and fail *before* one of more than `limit` pixels is allocated (the
    probe's 3-gigapixel strip would take the test machine down with it)."""
    requests: list[tuple[str, tuple[int, int]]] = []
    resize, crop, reduce, new = Image.Image.resize, Image.Image.crop, Image.Image.reduce, Image.new

    def asked(operation: str, size: tuple[int, int]) -> None:
        requests.append((operation, size))
        if size[0] * size[1] > limit:
            raise OverBudget(
                f"{operation} asked for {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels, "
                f"over the budget of {limit:,}"
            )

    def spy_resize(self: Image.Image, size: Any, *args: Any, **kwargs: Any) -> Image.Image:
        asked("resize", (int(size[0]), int(size[1])))
        return resize(self, size, *args, **kwargs)

    def spy_crop(self: Image.Image, box: Any = None) -> Image.Image:
        if box is not None:
            left, top, right, bottom = (round(v) for v in box)
            asked("crop", (max(0, right - left), max(0, bottom - top)))
        return crop(self, box)

    def spy_reduce(self: Image.Image, factor: Any, box: Any = None) -> Image.Image:
        result = reduce(self, factor, box)
        asked("reduce", result.size)
        return result

    def spy_new(mode: str, size: Any, *args: Any, **kwargs: Any) -> Image.Image:
        asked("new", (int(size[0]), int(size[1])))
        return new(mode, size, *args, **kwargs)

    Image.Image.resize = spy_resize  # type: ignore[method-assign]
    Image.Image.crop = spy_crop  # type: ignore[method-assign]
    Image.Image.reduce = spy_reduce  # type: ignore[method-assign]
    Image.new = spy_new
    try:
        yield requests
    finally:
        Image.Image.resize = resize  # type: ignore[method-assign]
        Image.Image.crop = crop  # type: ignore[method-assign]
        Image.Image.reduce = reduce  # type: ignore[method-assign]
        Image.new = new


def budget(output_pixels: int, image: Image.Image) -> int:
    return max(4 * output_pixels, image.width * image.height)


@dataclass(frozen=True)
class Source:
    """Where the image a path gets comes from: a decoded upload (what ingest and search hand
    over), a picture built directly in any mode, or a JPEG opened but not yet decoded (the
    preprocessor asks its decoder for a reduced scale)."""

    kind: str
    picture: Picture
    reduce_for: int | None = None
    icc: str | None = None

    def image(self) -> Image.Image:
        if self.kind == "picture":
            return self.picture.build()
        plugin = "JPEG" if self.kind == "lazy-jpeg" else "PNG"
        data = EncodedFile(self.picture, plugin, icc=self.icc, quality=90).build()
        if self.kind == "lazy-jpeg":
            return Image.open(io.BytesIO(data))
        decoded = decode_image(
            data,
            max_bytes=1 << 30,
            max_pixels=MAX_PIXELS,
            reduce_for=self.reduce_for,
            max_aspect_ratio=1e9,  # strips get through, to be resized
        )
        return decoded.image


@st.composite
def sources(draw: st.DrawFn, modes: tuple[str, ...] = ALL_MODES) -> Source:
    kind = draw(st.sampled_from(("decoded", "picture", "lazy-jpeg")))
    if kind == "lazy-jpeg":
        picture = draw(pictures(modes=("L", "RGB", "CMYK")))
    elif kind == "decoded":
        picture = draw(pictures(modes=("L", "LA", "P", "RGB", "RGBA", "I;16")))
    else:
        picture = draw(pictures(modes=modes))
    return Source(
        kind=kind,
        picture=picture,
        reduce_for=draw(st.none() | st.sampled_from((224, 256, 1000))),
        icc=draw(st.sampled_from((None, "srgb", "garbage"))),
    )


preprocess_configs = st.builds(
    PreprocessConfig,
    size=st.sampled_from((8, 32, 224)),
    mean=st.just((0.48, 0.46, 0.41)),
    std=st.just((0.27, 0.26, 0.28)),
    resize_mode=st.sampled_from(("shortest", "squash", "pad")),
    interpolation=st.sampled_from(("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")),
    fill_color=st.integers(0, 255),
)


@settings(FUZZ, max_examples=150)
@given(source=sources(), config=preprocess_configs)
def test_model_input_has_its_shape_and_a_bounded_resize(
    source: Source, config: PreprocessConfig
) -> None:
    image = source.image()
    preprocessor = ImagePreprocessor(config)
    size = config.size
    with pixel_budget(budget(size * size, image)):
        tensor = preprocessor(image)
    assert tensor.shape == (3, size, size)
    assert tensor.dtype == np.float32
    assert np.isfinite(tensor).all()
    # Every value is a pixel in 0..255 through the manifest's normalisation.
    mean, std = np.asarray(config.mean), np.asarray(config.std)
    low, high = (-mean / std)[:, None, None], ((1 - mean) / std)[:, None, None]
    assert (tensor >= low - 1e-4).all() and (tensor <= high + 1e-4).all()


@settings(FUZZ, max_examples=80)
@given(
    source=sources(modes=("L", "RGB", "RGBA", "P", "LA", "1")),
    size=st.sampled_from((1, 16, 256, 512)),
)
def test_thumbnail_fits_its_box_and_resizes_within_budget(source: Source, size: int) -> None:
    image = source.image()
    with pixel_budget(budget(size * size, image)):
        data = make_thumbnail(image, size=size)
    with Image.open(io.BytesIO(data)) as thumb:
        assert thumb.format == "WEBP"
        assert max(thumb.size) == min(size, max(image.size)), (image.size, thumb.size)
        assert min(thumb.size) >= 1


@settings(FUZZ, max_examples=80)
@given(source=sources())
def test_phash_is_16_hex_digits_and_resizes_within_budget(source: Source) -> None:
    image = source.image()
    with pixel_budget(budget(32 * 32, image)):
        value = phash_hex(image)
    assert len(value) == 16 and int(value, 16) >= 0 and value == value.lower()


@settings(FUZZ, max_examples=80)
@given(source=sources())
def test_quality_scores_are_in_0_1_and_resize_within_budget(source: Source) -> None:
    image = source.image()
    original = (source.picture.width, source.picture.height)
    # The working copy: WORKING_SIZE on the shorter side, at most 4 times that on the longer.
    with pixel_budget(budget(WORKING_SIZE * 4 * WORKING_SIZE, image)):
        score = quality_score(image, original)
    for name, value in score.as_dict().items():
        assert math.isfinite(value) and 0.0 <= value <= 1.0, (name, value)


@settings(FUZZ, max_examples=80)
@given(source=sources())
def test_nsfw_input_has_its_shape(source: Source) -> None:
    image = source.image()
    with pixel_budget(budget(INPUT_SIZE * INPUT_SIZE, image)):
        tensor = detector_input(image)
    assert tensor.shape == (1, 3, INPUT_SIZE, INPUT_SIZE)
    assert tensor.dtype == np.float32
    assert np.isfinite(tensor).all() and tensor.min() >= 0.0 and tensor.max() <= 1.0


@settings(FUZZ, max_examples=100)
@given(source=sources())
def test_crop_boxes_lie_inside_the_image(source: Source) -> None:
    image = source.image()
    with pixel_budget(budget(SALIENCY_SIZE * SALIENCY_SIZE, image)):
        saliency = compute_saliency(image)
        boxes = crop_boxes(image)
    assert saliency.shape == (SALIENCY_SIZE, SALIENCY_SIZE)
    assert np.isfinite(saliency).all() and (saliency >= 0).all()
    assert 4 <= len(boxes) <= MAX_CROPS
    for left, top, right, bottom in boxes:
        assert 0 <= left < right <= image.width, (image.size, boxes)
        assert 0 <= top < bottom <= image.height, (image.size, boxes)


@pytest.fixture(scope="module")
def clip_embedder(
    tiny_clip: str, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Embedder:
    return load_embedder(
        make_settings(tmp_path_factory.mktemp("fuzz-crops"), models_dir, model=tiny_clip)
    )


@settings(FUZZ, max_examples=60)
@given(source=sources(modes=("L", "RGB", "RGBA")))
def test_crop_tensors_have_the_model_shape(clip_embedder: Embedder, source: Source) -> None:
    image = source.image()
    if image.mode != "RGB":
        image = image.convert("RGB")  # crops are taken of decoded (RGB) images
    size = clip_embedder.input_size
    with pixel_budget(budget(size * size, image)):
        tensors = crop_tensors(clip_embedder, image)
    assert tensors.ndim == 4 and tensors.shape[1:] == (3, size, size)
    assert 4 <= tensors.shape[0] <= MAX_CROPS
    assert np.isfinite(tensors).all()
