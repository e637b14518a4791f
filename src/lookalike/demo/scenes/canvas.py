"""A painter's basics: the array and colour types, seeded random picks, laying on paint.

A canvas is a float32 height x width x 3 array, red, green and blue from 0 to 1, painted in
place; `finish.py` turns it into 8-bit pixels at the end. Every random choice comes from the
scene's one generator, so the order of the calls is part of the picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

_Array = npt.NDArray[np.floating[Any]]
_RGB = tuple[float, float, float]
_Colour = Sequence[float] | _Array  # red, green, blue from 0 to 1
_T = TypeVar("_T")


def _pick(rng: np.random.Generator, options: Sequence[_T]) -> _T:
    return options[int(rng.integers(len(options)))]


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _rgb(colour: _Colour) -> _Array:
    return np.asarray(colour, dtype=np.float32)


def _jitter(rng: np.random.Generator, colour: _Colour, amount: float) -> _Array:
    """A colour nudged at random, so no two scenes share exact paint."""
    return np.clip(_rgb(colour) + rng.uniform(-amount, amount, 3).astype(np.float32), 0, 1)


def _grid(height: int, width: int) -> tuple[_Array, _Array]:
    """Pixel coordinates as a column (ys) and a row (xs) that broadcast to a plane."""
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    return ys, xs


def _lerp(t: _Array, low: _Colour, high: _Colour) -> _Array:
    """Colours between `low` (t=0) and `high` (t=1), one per element of `t`."""
    low_rgb = _rgb(low)
    return low_rgb + t[..., None] * (_rgb(high) - low_rgb)


def _frac(values: _Array) -> _Array:
    return values - np.floor(values)


def _blend(canvas: _Array, alpha: _Array, colour: _Colour, x0: int = 0, y0: int = 0) -> None:
    """Lays `colour` (one colour, or one per pixel of `alpha`) over the canvas at (x0, y0).

    `alpha` is coverage from 0 to 1; whatever falls outside the frame is dropped.
    """
    height, width = alpha.shape
    top, left = max(y0, 0), max(x0, 0)
    bottom = min(y0 + height, canvas.shape[0])
    right = min(x0 + width, canvas.shape[1])
    if top >= bottom or left >= right:
        return
    cover = alpha[top - y0 : bottom - y0, left - x0 : right - x0, None]
    paint = np.asarray(colour, dtype=np.float32)
    if paint.ndim == 3:
        paint = paint[top - y0 : bottom - y0, left - x0 : right - x0]
    region = canvas[top:bottom, left:right]
    region += cover * (paint - region)


def _paste(canvas: _Array, paint: _Array, x0: int = 0, y0: int = 0) -> None:
    """Puts an opaque patch of colour on the canvas at (x0, y0), dropping what falls outside."""
    height, width = paint.shape[:2]
    top, left = max(y0, 0), max(x0, 0)
    bottom = min(y0 + height, canvas.shape[0])
    right = min(x0 + width, canvas.shape[1])
    if top < bottom and left < right:
        canvas[top:bottom, left:right] = paint[top - y0 : bottom - y0, left - x0 : right - x0]


def _darken(canvas: _Array, alpha: _Array, strength: float, x0: int = 0, y0: int = 0) -> None:
    """Multiplies the canvas under `alpha` by up to (1 - strength): a cast shadow."""
    height, width = alpha.shape
    top, left = max(y0, 0), max(x0, 0)
    bottom = min(y0 + height, canvas.shape[0])
    right = min(x0 + width, canvas.shape[1])
    if top >= bottom or left >= right:
        return
    cover = alpha[top - y0 : bottom - y0, left - x0 : right - x0, None]
    canvas[top:bottom, left:right] *= 1.0 - strength * cover
