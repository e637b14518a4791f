"""Image to model input, from a manifest's `preprocess` section. Pillow + numpy only.

This runs once per ingested image, often on a 12-megapixel JPEG, so the expensive part is
avoided rather than optimised: JPEGs are decoded at a reduced scale (`Image.draft`, the DCT does
the downscale for free) and the remaining resize reduces by an integer box filter before the
final resample (`reducing_gap`), which is what Pillow's own thumbnail path does.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from lookalike.core.errors import InvalidInput
from lookalike.embedding.model_dir import PreprocessConfig

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}

# Above 2x the box reduction's blur is invisible after the final resample and it is much cheaper.
_REDUCING_GAP = 2.0
# Shortest-side resizes whose longer side would exceed this many model sizes take the cropped
# part only. Up to it the whole resize is kept: it matches open_clip's preprocessing exactly.
_MAX_STRIP = 4


class ImagePreprocessor:
    """Callable: PIL image -> (3, size, size) float32, normalised with the manifest's mean/std."""

    def __init__(self, config: PreprocessConfig) -> None:
        self.config = config
        self.size = config.size
        self._resample = _RESAMPLE[config.interpolation]
        std = np.asarray(config.std, dtype=np.float32)
        mean = np.asarray(config.mean, dtype=np.float32)
        # (x / 255 - mean) / std as one multiply-add on the uint8 pixels.
        self._scale = (1.0 / (255.0 * std)).astype(np.float32)
        self._offset = (-mean / std).astype(np.float32)

    def __call__(self, image: Image.Image) -> NDArray[np.float32]:
        return self.to_array(self.resize(image))

    def prepare(self, image: Image.Image, model_name: str) -> NDArray[np.float32]:
        """`self(image)`, with a failure reported as `InvalidInput` naming the model."""
        try:
            return self(image)
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"cannot prepare image for {model_name}: {exc}") from exc

    def resize(self, image: Image.Image) -> Image.Image:
        """The model-sized RGB image, before normalisation (useful to look at)."""
        size = self.size
        mode = self.config.resize_mode
        width, height = image.size
        if width < 1 or height < 1:
            raise ValueError("empty image")
        if mode == "shortest":
            scale = size / min(width, height)
        elif mode == "pad":
            scale = size / max(width, height)
        else:
            scale = max(size / width, size / height)
        image = _draft(image, scale)
        image = _to_rgb(image)
        # Coordinates below are in the (possibly drafted) image's own pixels.
        width, height = image.size
        if mode == "squash":
            return image.resize((size, size), self._resample, reducing_gap=_REDUCING_GAP)
        if mode == "shortest":
            # Resize then crop with torchvision's rounding (what open_clip was trained with):
            # cropping first in fractional source coordinates shifts the grid by up to half a
            # pixel, measurably (cosine 0.995 instead of 1.0 on a 427x640 photo).
            if width <= height:
                new_w, new_h = size, int(size * height / width)
            else:
                new_w, new_h = int(size * width / height), size
            left = round((new_w - size) / 2.0)
            top = round((new_h - size) / 2.0)
            if max(new_w, new_h) > _MAX_STRIP * size:
                # A long strip would be resized whole only to be mostly cropped away (a 1x60000
                # image became 224 x 13 million pixels): resample just the part that is kept.
                sx, sy = width / new_w, height / new_h
                box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
                return image.resize(
                    (size, size), self._resample, box=box, reducing_gap=_REDUCING_GAP
                )
            resized = image.resize((new_w, new_h), self._resample, reducing_gap=_REDUCING_GAP)
            return resized.crop((left, top, left + size, top + size))
        # pad: fit the longest side, centre on a square canvas of fill_color.
        scale = size / max(width, height)
        new_w = max(1, round(width * scale))
        new_h = max(1, round(height * scale))
        resized = image.resize((new_w, new_h), self._resample, reducing_gap=_REDUCING_GAP)
        fill = self.config.fill_color
        canvas = Image.new("RGB", (size, size), (fill, fill, fill))
        canvas.paste(resized, ((size - new_w) // 2, (size - new_h) // 2))
        return canvas

    def to_array(self, image: Image.Image) -> NDArray[np.float32]:
        pixels = np.asarray(image, dtype=np.float32)  # (H, W, 3)
        pixels = pixels * self._scale + self._offset
        return np.ascontiguousarray(pixels.transpose(2, 0, 1))

    def pixels_to_input(self, pixels: NDArray[np.uint8]) -> NDArray[np.float32]:
        """A batch of resized pixels (N, H, W, 3) uint8 to model input (N, 3, H, W) float32.

        The same arithmetic as `to_array`, element for element, so the result is bit-identical
        to preprocessing the images here; the embedding service relies on that.
        """
        batch = pixels.astype(np.float32) * self._scale + self._offset
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))

    def input_to_pixels(self, batch: NDArray[np.float32]) -> NDArray[np.uint8] | None:
        """The inverse of `pixels_to_input`, or None when `batch` did not come from uint8 pixels
        (then it must travel as float32). A quarter of the bytes on the wire, and exact."""
        if batch.ndim != 4 or batch.shape[1] != 3:
            return None
        pixels = (batch.transpose(0, 2, 3, 1) - self._offset) / self._scale
        rounded = np.rint(pixels)
        # float32 keeps about 7 digits, so a genuine pixel lands within ~1e-4 of an integer.
        if not np.all(np.abs(pixels - rounded) < 0.01) or rounded.min(initial=0) < 0:
            return None
        if rounded.max(initial=0) > 255:
            return None
        as_uint8: NDArray[np.uint8] = np.ascontiguousarray(rounded.astype(np.uint8))
        if not np.array_equal(self.pixels_to_input(as_uint8), batch):
            return None
        return as_uint8


def _draft(image: Image.Image, scale: float) -> Image.Image:
    """Ask the JPEG decoder for the smallest DCT scale (1/2, 1/4, 1/8) that still covers `scale`.

    Only possible before the pixels are decoded, and it changes `image` in place: a caller that
    needs full resolution afterwards must `load()` first. Already-decoded images are untouched.
    """
    if image.format != "JPEG" or scale >= 0.5 or getattr(image, "tile", None) in (None, []):
        return image
    width, height = image.size
    # +1 pixel margin so rounding in the decoder never leaves us a pixel short.
    target = (math.ceil(width * scale) + 1, math.ceil(height * scale) + 1)
    image.draft("RGB", target)
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels have undefined colour; composite on white as viewers show them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode == "I;16" or image.mode.startswith("I;16") or image.mode in ("I", "F"):
        # 16-bit/float greyscale: scale to 8 bits instead of clipping everything to white.
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        span = high - low if high > low else 1.0
        grey = ((array - low) * (255.0 / span)).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    return image.convert("RGB")
