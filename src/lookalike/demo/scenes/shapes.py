"""Flat shapes and shadows: Pillow-drawn coverage masks, soft edges, cast shadows, sprites."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .canvas import _Array, _blend, _Colour, _darken
from .texture import _noise


def _shape(
    width: int, height: int, draw: Callable[[ImageDraw.ImageDraw], None], blur: float = 0.0
) -> _Array:
    """Coverage of whatever `draw` paints with fill=255 on a black width x height mask."""
    mask = Image.new("L", (max(width, 1), max(height, 1)), 0)
    draw(ImageDraw.Draw(mask))
    if blur > 0:
        mask = mask.filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(mask, dtype=np.float32) / 255.0


def _blur(alpha: _Array, radius: float) -> _Array:
    """A coverage map softened by a Gaussian blur of `radius` pixels."""
    mask = Image.fromarray((np.clip(alpha, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
    return np.asarray(mask.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255.0


def _soft_rectangle(width: float, height: float, soft: float) -> _Array:
    """Coverage of a width x height rectangle whose edges fade over `soft` pixels each way.

    The patch is `soft` larger on every side. Made of two ramps, which is far cheaper than
    blurring a drawn rectangle.
    """
    columns = np.arange(int(width + 2 * soft), dtype=np.float32)
    rows = np.arange(int(height + 2 * soft), dtype=np.float32)
    across = np.clip(np.minimum(columns, width + 2 * soft - columns) / (2 * soft), 0.0, 1.0)
    down = np.clip(np.minimum(rows, height + 2 * soft - rows) / (2 * soft), 0.0, 1.0)
    return np.outer(down, across)


def _cast_shadow(
    canvas: _Array, x: float, y: float, rx: float, ry: float, strength: float, blur: float
) -> None:
    """A soft elliptical shadow on the ground, centred at (x, y)."""
    pad = int(blur * 3 + 2)
    width, height = int(2 * rx) + 2 * pad, int(2 * ry) + 2 * pad
    box = (pad, pad, pad + 2 * rx, pad + 2 * ry)
    alpha = _shape(width, height, lambda d: d.ellipse(box, fill=255), blur=blur)
    _darken(canvas, alpha, strength, int(x - rx) - pad, int(y - ry) - pad)


class _Sprites:
    """Many flat-coloured shapes drawn by Pillow in one go, then laid down with one blend.

    Drawing each small shape as its own numpy blend would cost a full pass per shape; Pillow
    draws hundreds in the time of one pass.
    """

    def __init__(self, width: int, height: int) -> None:
        self.colour = Image.new("RGB", (width, height), (0, 0, 0))
        self.alpha = Image.new("L", (width, height), 0)
        self._paint = ImageDraw.Draw(self.colour)
        self._cover = ImageDraw.Draw(self.alpha)

    @staticmethod
    def _fill(colour: _Colour) -> tuple[int, int, int]:
        red, green, blue = (int(max(0.0, min(1.0, float(c))) * 255 + 0.5) for c in colour)
        return red, green, blue

    def polygon(self, points: Sequence[tuple[float, float]], colour: _Colour) -> None:
        self._paint.polygon(list(points), fill=self._fill(colour))
        self._cover.polygon(list(points), fill=255)

    def ellipse(self, box: tuple[float, float, float, float], colour: _Colour) -> None:
        self._paint.ellipse(box, fill=self._fill(colour))
        self._cover.ellipse(box, fill=255)

    def rectangle(self, box: tuple[float, float, float, float], colour: _Colour) -> None:
        self._paint.rectangle(box, fill=self._fill(colour))
        self._cover.rectangle(box, fill=255)

    def line(self, points: Sequence[tuple[float, float]], colour: _Colour, width: int) -> None:
        self._paint.line(list(points), fill=self._fill(colour), width=width, joint="curve")
        self._cover.line(list(points), fill=255, width=width, joint="curve")

    def coverage(self, blur: float = 0.0) -> tuple[_Array, int, int]:
        """The shapes' coverage, cropped to where they are, and that crop's left and top."""
        pad = int(3 * blur) + 1
        box = self.alpha.getbbox()
        if box is None:
            return np.zeros((0, 0), np.float32), 0, 0
        left, top = max(box[0] - pad, 0), max(box[1] - pad, 0)
        right, bottom = min(box[2] + pad, self.alpha.width), min(box[3] + pad, self.alpha.height)
        alpha = self.alpha.crop((left, top, right, bottom))
        if blur:
            alpha = alpha.filter(ImageFilter.GaussianBlur(blur))
        return np.asarray(alpha, dtype=np.float32) / 255.0, left, top

    def lay_on(
        self,
        canvas: _Array,
        rng: np.random.Generator | None = None,
        *,
        cell: float = 2.0,
        amount: float = 0.0,
        blur: float = 0.0,
    ) -> None:
        """Blends the shapes onto the canvas, their colour mottled by noise of `cell` pixels."""
        alpha, left, top = self.coverage(blur)
        height, width = alpha.shape
        if height == 0:
            return
        colour = self.colour.crop((left, top, left + width, top + height))
        paint = np.asarray(colour, dtype=np.float32) / 255.0
        if rng is not None and amount:
            texture = _noise(rng, width, height, cell, octaves=3)
            paint *= (1.0 + amount * (texture - 0.5))[..., None]
        _blend(canvas, alpha, paint, left, top)
