"""Fractal noise, the base of every texture, and relief shading that gives it depth."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from .canvas import _Array


def _noise(
    rng: np.random.Generator,
    width: int,
    height: int,
    cell: float,
    *,
    octaves: int = 4,
    stretch: tuple[float, float] = (1.0, 1.0),
    contrast: float = 2.6,
) -> _Array:
    """Fractal value noise in [0, 1], the base of every texture.

    `cell` is the size in pixels of the coarsest features; each octave halves it. `stretch`
    makes features longer along x or y (grass blades, wood fibres, waves). Pillow's bicubic
    resize of small random grids does the interpolation in C, which keeps a scene fast.
    """
    total = np.zeros((max(height, 0), max(width, 0)), np.float32)
    if total.size == 0:  # a shape squeezed to nothing at a small frame size
        return total
    amplitude = 1.0
    amplitudes = 0.0
    for octave in range(octaves):
        step = max(cell / 2**octave, 1.0)
        columns = max(2, math.ceil(width / (step * stretch[0])) + 1)
        rows = max(2, math.ceil(height / (step * stretch[1])) + 1)
        grid = rng.random((rows, columns), dtype=np.float32)
        layer = Image.fromarray(grid).resize((width, height), Image.Resampling.BICUBIC)
        total += amplitude * np.asarray(layer, dtype=np.float32)
        amplitudes += amplitude
        amplitude *= 0.5
    # Summed octaves gather near 0.5; stretch them back over the range.
    total /= amplitudes
    total -= 0.5
    total *= contrast
    total += 0.5
    return np.clip(total, 0.0, 1.0, out=total)


def _profile(rng: np.random.Generator, length: int, cell: float, *, octaves: int = 5) -> _Array:
    """One-dimensional fractal noise in [0, 1]: ridge lines, shorelines."""
    return _noise(rng, length, 1, cell, octaves=octaves, contrast=1.8).reshape(length)


def _relief(height_field: _Array, light_x: float, depth: float) -> _Array:
    """Shading of a bumpy surface whose heights are `height_field`, lit from above and `light_x`.

    Slopes facing the light brighten and slopes facing away darken, which turns a flat noise
    texture into stone or bark with a sense of depth. `depth` scales how steep the bumps are.
    """
    slope_x = np.zeros_like(height_field)
    slope_y = np.zeros_like(height_field)
    slope_x[:, 1:-1] = (height_field[:, 2:] - height_field[:, :-2]) * 0.5
    slope_y[1:-1] = (height_field[2:] - height_field[:-2]) * 0.5
    return np.clip(1.0 + depth * (slope_x * -light_x * 0.7 + slope_y * 0.7), 0.4, 1.6)
