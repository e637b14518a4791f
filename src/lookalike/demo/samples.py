"""Real sample photos that ship inside installed packages, and test sets derived from them.

scikit-image (`skimage/data`) and matplotlib (`mpl-data/sample_data`) install a handful of
real photographs. `lookalike demo`, the test suite and the duplicate-detection evaluation use
them, and the edited copies `derived_set` makes (resized, recompressed, cropped, rotated,
flipped, brightened, grayscale, captioned), so that no binary image has to live in this
repository. Both packages come with `pip install "lookalike[samples]"`.

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

from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

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
)

_BY_NAME = {photo.name: photo for photo in SAMPLE_PHOTOS}
_INSTALL_HINT = 'Install them with: pip install "lookalike[samples]"'
_PIP_NAMES = {"skimage": "scikit-image", "matplotlib": "matplotlib"}


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


_TRANSFORMS: dict[str, Callable[..., Image.Image]] = {
    "resize": _resize,
    "jpeg": _jpeg,
    "crop": _crop,
    "rotate": _rotate,
    "flip": _flip,
    "brightness": _brightness,
    "grayscale": _grayscale,
    "text_overlay": _text_overlay,
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
