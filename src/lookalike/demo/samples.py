"""Real sample photos that ship inside installed packages, and test sets derived from them.

scikit-image (`skimage/data`), matplotlib (`mpl-data/sample_data`) and scikit-learn
(`datasets/images`) install a handful of real photographs. `lookalike demo`, the test suite
and the duplicate-detection evaluation use them, and the edited copies `derived_set` makes
(resized, recompressed, cropped, rotated, flipped, brightened, grayscale, captioned, framed,
watermarked, warped, blurred, noised, squashed, recoloured), so that no binary image has to
live in this repository. The three packages come with `pip install "lookalike[samples]"`.

Note for evaluations: `motorcycle_left` and `motorcycle_right` are the two views of one stereo
pair, so they are near-duplicates of each other by design.
"""

from __future__ import annotations

import importlib.util
import io
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

from lookalike.core.errors import LookalikeError
from lookalike.imaging.decode import sniff_mime

__all__ = [
    "DEFAULT_TRANSFORMS",
    "SAMPLE_PHOTOS",
    "TRANSFORM_KINDS",
    "DerivedImage",
    "SamplePhoto",
    "SamplesUnavailable",
    "derived_set",
    "sample_photo_names",
    "sample_photos",
    "transform",
]


class SamplesUnavailable(LookalikeError):
    """The packages that carry the sample photos are not installed."""

    code = "samples_unavailable"
    status = 503


@dataclass(frozen=True)
class SamplePhoto:
    """Where one sample photo lives: a file inside an installed package."""

    name: str
    package: str  # top-level import name: "skimage" or "matplotlib"
    relative_path: str  # inside the package directory
    grayscale: bool


_SKIMAGE_DATA = "data"
_MPL_SAMPLES = "mpl-data/sample_data"
_SKLEARN_IMAGES = "datasets/images"

# Real photographs only: the synthetic images in those folders (chessboards, colour wheels,
# logos, phantoms) are left out because they look nothing like what users upload.
SAMPLE_PHOTOS: tuple[SamplePhoto, ...] = (
    SamplePhoto("astronaut", "skimage", f"{_SKIMAGE_DATA}/astronaut.png", grayscale=False),
    SamplePhoto("coffee", "skimage", f"{_SKIMAGE_DATA}/coffee.png", grayscale=False),
    SamplePhoto("chelsea", "skimage", f"{_SKIMAGE_DATA}/chelsea.png", grayscale=False),
    SamplePhoto("rocket", "skimage", f"{_SKIMAGE_DATA}/rocket.jpg", grayscale=False),
    SamplePhoto(
        "motorcycle_left", "skimage", f"{_SKIMAGE_DATA}/motorcycle_left.png", grayscale=False
    ),
    SamplePhoto(
        "motorcycle_right", "skimage", f"{_SKIMAGE_DATA}/motorcycle_right.png", grayscale=False
    ),
    SamplePhoto(
        "hubble_deep_field", "skimage", f"{_SKIMAGE_DATA}/hubble_deep_field.jpg", grayscale=False
    ),
    SamplePhoto("retina", "skimage", f"{_SKIMAGE_DATA}/retina.jpg", grayscale=False),
    SamplePhoto("ihc", "skimage", f"{_SKIMAGE_DATA}/ihc.png", grayscale=False),
    SamplePhoto("camera", "skimage", f"{_SKIMAGE_DATA}/camera.png", grayscale=True),
    SamplePhoto("coins", "skimage", f"{_SKIMAGE_DATA}/coins.png", grayscale=True),
    SamplePhoto("moon", "skimage", f"{_SKIMAGE_DATA}/moon.png", grayscale=True),
    SamplePhoto("page", "skimage", f"{_SKIMAGE_DATA}/page.png", grayscale=True),
    SamplePhoto("text", "skimage", f"{_SKIMAGE_DATA}/text.png", grayscale=True),
    SamplePhoto("brick", "skimage", f"{_SKIMAGE_DATA}/brick.png", grayscale=True),
    SamplePhoto("grass", "skimage", f"{_SKIMAGE_DATA}/grass.png", grayscale=True),
    SamplePhoto("gravel", "skimage", f"{_SKIMAGE_DATA}/gravel.png", grayscale=True),
    SamplePhoto("cell", "skimage", f"{_SKIMAGE_DATA}/cell.png", grayscale=True),
    SamplePhoto("clock_motion", "skimage", f"{_SKIMAGE_DATA}/clock_motion.png", grayscale=True),
    SamplePhoto("grace_hopper", "matplotlib", f"{_MPL_SAMPLES}/grace_hopper.jpg", grayscale=False),
    SamplePhoto("china", "sklearn", f"{_SKLEARN_IMAGES}/china.jpg", grayscale=False),
    SamplePhoto("flower", "sklearn", f"{_SKLEARN_IMAGES}/flower.jpg", grayscale=False),
)

_BY_NAME = {photo.name: photo for photo in SAMPLE_PHOTOS}
_INSTALL_HINT = 'Install them with: pip install "lookalike[samples]"'
_PIP_NAMES = {"skimage": "scikit-image", "matplotlib": "matplotlib", "sklearn": "scikit-learn"}


@cache
def _package_dir(package: str) -> Path | None:
    """The installed package's directory, found without importing it (both are slow to import)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _photo_path(photo: SamplePhoto) -> Path | None:
    root = _package_dir(photo.package)
    if root is None:
        return None
    path = root / photo.relative_path
    return path if path.is_file() else None


def sample_photo_names() -> list[str]:
    """Names of the sample photos present in this installation, in `SAMPLE_PHOTOS` order."""
    return [photo.name for photo in SAMPLE_PHOTOS if _photo_path(photo) is not None]


def sample_photos(
    names: Iterable[str] | None = None, *, grayscale: bool | None = None
) -> dict[str, bytes]:
    """Sample photo name -> the original file's bytes (PNG or JPEG, as shipped).

    `names` picks photos (an unknown name raises `KeyError`); by default every photo this
    installation has is returned. `grayscale=True/False` keeps only grayscale or only colour
    photos. Raises `SamplesUnavailable`, naming what to install, when a package the photos
    live in is missing or a named photo cannot be found.
    """
    if names is None:
        wanted = list(SAMPLE_PHOTOS)
        explicit = False
    else:
        names = list(names)
        unknown = [name for name in names if name not in _BY_NAME]
        if unknown:
            raise KeyError(f"unknown sample photos {unknown}; known: {sorted(_BY_NAME)}")
        wanted = [_BY_NAME[name] for name in names]
        explicit = True
    if grayscale is not None:
        wanted = [photo for photo in wanted if photo.grayscale == grayscale]

    missing = sorted(
        {_PIP_NAMES[photo.package] for photo in wanted if _package_dir(photo.package) is None}
    )
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise SamplesUnavailable(
            f"The sample photos ship with {' and '.join(missing)}, which {verb} not installed. "
            f"{_INSTALL_HINT}"
        )

    photos: dict[str, bytes] = {}
    for photo in wanted:
        path = _photo_path(photo)
        if path is None:
            # A package release may drop a file; only a photo asked for by name is an error.
            if explicit:
                raise SamplesUnavailable(
                    f"The sample photo {photo.name!r} is not in the installed "
                    f"{_PIP_NAMES[photo.package]} "
                    f"(looked for {photo.relative_path}). {_INSTALL_HINT}"
                )
            continue
        photos[photo.name] = path.read_bytes()
    if wanted and not photos:
        raise SamplesUnavailable(f"No sample photos were found. {_INSTALL_HINT}")
    return photos


# --- edits -------------------------------------------------------------------

TRANSFORM_KINDS: tuple[str, ...] = (
    "resize",
    "jpeg",
    "crop",
    "rotate",
    "flip",
    "brightness",
    "grayscale",
    "text_overlay",
    "border",
    "letterbox",
    "watermark",
    "perspective",
    "blur",
    "noise",
    "squash",
    "hue",
    "contrast",
)


def transform(image: Image.Image, kind: str, **params: Any) -> Image.Image:
    """An edited RGB copy of `image`: the kinds of change near-duplicates show in real life.

    kind and params (defaults in brackets):
      - resize: scale [0.5], or size=(width, height)
      - jpeg: quality [40]; a JPEG round trip with its block artefacts
      - crop: keep [0.8], the central fraction of each side kept; or box=(l, t, r, b)
      - rotate: degrees [5] counter-clockwise, corners filled white, same size
      - flip: direction ["horizontal"] or "vertical"
      - brightness: factor [1.3]
      - grayscale: (none); stays a 3-channel image
      - text_overlay: text ["lookalike sample"], size [fraction of height, 0.08]
      - border: width [0.06 of each side], colour [white]; the frame grows
      - letterbox: aspect [16/9], bars [black] above and below (or beside) the photo
      - watermark: text ["(c) lookalike"], opacity [0.4]; large, across the middle
      - perspective: strength [0.08]; a keystone, as a photo of a print or a screen shows
      - blur: radius [2.0]; Gaussian
      - noise: sigma [12.0] grey levels, seeded; Gaussian per channel
      - squash: x [1.0], y [0.75]; scale each axis on its own (a wrong aspect ratio)
      - hue: degrees [30]; rotate every colour's hue
      - contrast: factor [1.4]
    Deterministic: the same input and params give the same pixels.
    """
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    edit = _TRANSFORMS.get(kind)
    if edit is None:
        raise ValueError(f"unknown transform {kind!r}; known: {', '.join(TRANSFORM_KINDS)}")
    return edit(rgb, **params)


def _resize(
    image: Image.Image, *, scale: float = 0.5, size: tuple[int, int] | None = None
) -> Image.Image:
    if size is None:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _jpeg(image: Image.Image, *, quality: int = 40) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as reopened:
        return reopened.convert("RGB")


def _crop(
    image: Image.Image, *, keep: float = 0.8, box: tuple[int, int, int, int] | None = None
) -> Image.Image:
    if box is None:
        if not 0 < keep <= 1:
            raise ValueError(f"crop keep must be in (0, 1], got {keep}")
        dx = round(image.width * (1 - keep) / 2)
        dy = round(image.height * (1 - keep) / 2)
        box = (dx, dy, image.width - dx, image.height - dy)
    return image.crop(box)


def _rotate(image: Image.Image, *, degrees: float = 5.0) -> Image.Image:
    return image.rotate(
        degrees, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=(255, 255, 255)
    )


def _flip(image: Image.Image, *, direction: str = "horizontal") -> Image.Image:
    if direction == "horizontal":
        return ImageOps.mirror(image)
    if direction == "vertical":
        return ImageOps.flip(image)
    raise ValueError(f"flip direction is 'horizontal' or 'vertical', got {direction!r}")


def _brightness(image: Image.Image, *, factor: float = 1.3) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(factor)


def _grayscale(image: Image.Image) -> Image.Image:
    return image.convert("L").convert("RGB")


def _text_overlay(
    image: Image.Image, *, text: str = "lookalike sample", size: float = 0.08
) -> Image.Image:
    edited = image.copy()
    draw = ImageDraw.Draw(edited)
    font_px = max(10, round(image.height * size))
    font = ImageFont.load_default(size=font_px)
    margin = max(4, font_px // 2)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    origin = (max(0, image.width - (right - left) - margin), image.height - (bottom - top) - margin)
    # White text with a dark outline stays readable on any photo, like a real watermark.
    draw.text(
        origin,
        text,
        font=font,
        fill=(255, 255, 255),
        stroke_width=max(1, font_px // 12),
        stroke_fill=(0, 0, 0),
    )
    return edited


def _border(
    image: Image.Image, *, width: float = 0.06, colour: tuple[int, int, int] = (255, 255, 255)
) -> Image.Image:
    dx, dy = max(1, round(image.width * width)), max(1, round(image.height * width))
    return ImageOps.expand(image, border=(dx, dy, dx, dy), fill=colour)


def _letterbox(
    image: Image.Image, *, aspect: float = 16 / 9, colour: tuple[int, int, int] = (0, 0, 0)
) -> Image.Image:
    width, height = image.size
    if width / height < aspect:
        size = (round(height * aspect), height)  # bars beside (pillarbox)
    else:
        size = (width, round(width / aspect))  # bars above and below
    framed = Image.new("RGB", size, colour)
    framed.paste(image, ((size[0] - width) // 2, (size[1] - height) // 2))
    return framed


def _watermark(
    image: Image.Image, *, text: str = "(c) lookalike", opacity: float = 0.4
) -> Image.Image:
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    font = ImageFont.load_default(size=max(12, round(image.width / (0.6 * max(1, len(text))))))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    origin = ((image.width - (right - left)) // 2, (image.height - (bottom - top)) // 2 - top)
    draw.text(origin, text, font=font, fill=(255, 255, 255, round(255 * opacity)))
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def _perspective(image: Image.Image, *, strength: float = 0.08) -> Image.Image:
    # The top edge shrinks toward the middle: the corners (0, 0) and (w, 0) of the output
    # come from points `inset` further out, so the photo appears tilted away.
    width, height = image.size
    inset = strength * width
    source = [(-inset, 0.0), (width + inset, 0.0), (width, height), (0.0, height)]
    target = [(0.0, 0.0), (float(width), 0.0), (float(width), float(height)), (0.0, float(height))]
    coefficients = _perspective_coefficients(target, source)
    return image.transform(
        image.size,
        Image.Transform.PERSPECTIVE,
        coefficients,
        Image.Resampling.BICUBIC,
        fillcolor=(255, 255, 255),
    )


def _perspective_coefficients(
    target: Sequence[tuple[float, float]], source: Sequence[tuple[float, float]]
) -> tuple[float, ...]:
    """Pillow's eight coefficients mapping output points `target` to input points `source`."""
    rows: list[list[float]] = []
    values: list[float] = []
    for (x, y), (u, v) in zip(target, source, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        values.extend((u, v))
    solution = np.linalg.solve(np.array(rows), np.array(values))
    return tuple(float(c) for c in solution)


def _blur(image: Image.Image, *, radius: float = 2.0) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius))


def _noise(image: Image.Image, *, sigma: float = 12.0, seed: int = 0) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32)
    noisy = pixels + np.random.default_rng(seed).normal(0.0, sigma, pixels.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _squash(image: Image.Image, *, x: float = 1.0, y: float = 0.75) -> Image.Image:
    size = (max(1, round(image.width * x)), max(1, round(image.height * y)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _hue(image: Image.Image, *, degrees: float = 30.0) -> Image.Image:
    hsv = np.asarray(image.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int32) + round(degrees / 360 * 256)) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


def _contrast(image: Image.Image, *, factor: float = 1.4) -> Image.Image:
    return ImageEnhance.Contrast(image).enhance(factor)


_TRANSFORMS: dict[str, Callable[..., Image.Image]] = {
    "resize": _resize,
    "jpeg": _jpeg,
    "crop": _crop,
    "rotate": _rotate,
    "flip": _flip,
    "brightness": _brightness,
    "grayscale": _grayscale,
    "text_overlay": _text_overlay,
    "border": _border,
    "letterbox": _letterbox,
    "watermark": _watermark,
    "perspective": _perspective,
    "blur": _blur,
    "noise": _noise,
    "squash": _squash,
    "hue": _hue,
    "contrast": _contrast,
}

# One moderate edit of each kind: each result is still "the same photo" to a person.
DEFAULT_TRANSFORMS: tuple[tuple[str, Mapping[str, Any]], ...] = (
    ("resize", {"scale": 0.5}),
    ("jpeg", {"quality": 40}),
    ("crop", {"keep": 0.85}),
    ("rotate", {"degrees": 4}),
    ("flip", {"direction": "horizontal"}),
    ("brightness", {"factor": 1.3}),
    ("grayscale", {}),
    ("text_overlay", {"text": "lookalike sample"}),
)


class DerivedImage(NamedTuple):
    """One edited copy of a sample photo."""

    name: str  # file name, e.g. "coffee__crop.jpg"
    data: bytes  # encoded image
    original_name: str  # the sample photo it came from
    transform: str  # e.g. "crop(keep=0.85)", or "original"


def _describe(kind: str, params: Mapping[str, Any]) -> str:
    args = ", ".join(f"{key}={value!r}" for key, value in sorted(params.items()))
    return f"{kind}({args})"


def _encode(image: Image.Image, fmt: str, quality: int) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.save(buffer, format="JPEG", quality=quality)
    elif fmt == "PNG":
        image.save(buffer, format="PNG", compress_level=1)
    elif fmt == "WEBP":
        image.save(buffer, format="WEBP", quality=quality)
    else:
        raise ValueError(f"format must be JPEG, PNG or WEBP, got {fmt!r}")
    return buffer.getvalue()


_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
_ORIGINAL_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/gif": "gif",
    "image/webp": "webp",
    "image/avif": "avif",
    "image/heic": "heic",
    "image/heif": "heif",
}


def derived_set(
    photos: Mapping[str, bytes] | None = None,
    *,
    transforms: Sequence[tuple[str, Mapping[str, Any]]] = DEFAULT_TRANSFORMS,
    include_originals: bool = False,
    fmt: str = "JPEG",
    quality: int = 92,
) -> list[DerivedImage]:
    """Edited copies of sample photos, each labelled with the photo it came from.

    `photos` defaults to `sample_photos()`. Every (photo, transform) pair gives one image,
    encoded as `fmt` (JPEG at `quality`, PNG or WEBP). With `include_originals`, each
    photo's original file bytes come first, with transform "original" (exact duplicates of
    what a test ingests from `sample_photos()`). Deterministic, so a test can rely on it.
    """
    if photos is None:
        photos = sample_photos()
    fmt = fmt.upper()
    extension = _EXTENSIONS.get(fmt)
    if extension is None:
        raise ValueError(f"format must be JPEG, PNG or WEBP, got {fmt!r}")
    derived: list[DerivedImage] = []
    kind_counts = Counter(kind for kind, _ in transforms)
    for original_name, data in photos.items():
        if include_originals:
            source_ext = _ORIGINAL_EXTENSIONS.get(sniff_mime(data) or "", "bin")
            derived.append(
                DerivedImage(f"{original_name}.{source_ext}", data, original_name, "original")
            )
        with Image.open(io.BytesIO(data)) as opened:
            image = opened.convert("RGB")
        seen: Counter[str] = Counter()
        for kind, params in transforms:
            edited = transform(image, kind, **params)
            seen[kind] += 1
            # Two edits of one kind (resize 0.5 and 0.25) need two file names.
            suffix = f"-{seen[kind]}" if kind_counts[kind] > 1 else ""
            derived.append(
                DerivedImage(
                    name=f"{original_name}__{kind}{suffix}.{extension}",
                    data=_encode(edited, fmt, quality),
                    original_name=original_name,
                    transform=_describe(kind, params),
                )
            )
    return derived
