"""Trees and foliage, for the landscape and the forest (and the interior's house plants)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import ImageDraw

from .canvas import _RGB, _Array, _blend, _Colour, _frac, _grid, _rgb, _uniform
from .shapes import _cast_shadow, _shape
from .solids import _lathe
from .texture import _noise


def _foliage(
    rng: np.random.Generator, mask: _Array, colours: Sequence[_Colour], light_x: float, leaf: float
) -> tuple[_Array, _Array]:
    """Ragged-edged, leafy alpha and colour for a crown whose rough shape is `mask`."""
    height, width = mask.shape
    leaves = _noise(rng, width, height, leaf, octaves=3, contrast=3.0)
    alpha = np.clip((mask - 0.5) * 4.0 + (leaves - 0.5) * 2.2 + 0.5, 0.0, 1.0)
    ys, xs = _grid(height, width)
    lit = np.clip(0.5 + 0.45 * light_x * (xs / width - 0.5) * 2 - 0.4 * (ys / height - 0.5), 0, 1)
    tone = np.clip(0.55 * leaves + 0.6 * lit - 0.1, 0.0, 1.0)
    dark, mid, bright = (_rgb(c) for c in colours)
    low = dark + np.clip(tone * 2.0, 0, 1)[..., None] * (mid - dark)
    paint = low + np.clip(tone * 2.0 - 1.0, 0, 1)[..., None] * (bright - mid)
    return alpha, paint


def _broadleaf_tree(
    canvas: _Array,
    rng: np.random.Generator,
    x: float,
    base: float,
    size: float,
    colours: Sequence[_Colour],
    light_x: float,
    shadow: float,
) -> None:
    """A deciduous tree standing at (x, base), `size` pixels tall: shadow, trunk, crown."""
    crown = size * float(rng.uniform(0.3, 0.42))
    trunk_height = size - 1.6 * crown
    _cast_shadow(canvas, x - light_x * crown * 0.9, base, crown * 1.1, crown * 0.22, shadow, 2.0)
    if trunk_height > 1:
        radii = np.full(int(trunk_height + crown * 0.5), max(size * 0.035, 0.7), np.float32)
        _lathe(canvas, rng, x, base - len(radii), radii, (0.3, 0.22, 0.16), light_x, gloss=0.0)
    side = int(crown * 2.6) + 4
    blobs = [
        (_uniform(rng, -0.55, 0.55), _uniform(rng, -0.45, 0.45), _uniform(rng, 0.35, 0.6))
        for _ in range(int(rng.integers(4, 9)))
    ]  # fmt: skip

    def draw(mask: ImageDraw.ImageDraw) -> None:
        for bx, by, br in blobs:
            cx, cy, r = side / 2 + bx * crown, side / 2 + by * crown, br * crown
            mask.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)

    mask = _shape(side, side, draw, blur=max(crown * 0.12, 0.8))
    alpha, paint = _foliage(rng, mask, colours, light_x, max(crown / 5.0, 1.5))
    _blend(canvas, alpha, paint, int(x - side / 2), int(base - size + crown - side / 2))


def _conifer(
    canvas: _Array,
    rng: np.random.Generator,
    x: float,
    base: float,
    size: float,
    colours: Sequence[_Colour],
    light_x: float,
    shadow: float,
) -> None:
    """A fir standing at (x, base): tiers of drooping branches, needled, lit at their tips."""
    half = size * _uniform(rng, 0.16, 0.26)
    _cast_shadow(canvas, x - light_x * half * 1.5, base, half * 1.5, half * 0.3, shadow, 2.0)
    width, height = int(2 * half) + 6, int(size) + 2
    tiers = int(rng.integers(5, 10))
    crown = height * 0.92
    right: list[tuple[float, float]] = [(width / 2, 0.0)]
    for tier in range(1, tiers + 1):
        y = crown * tier / tiers
        reach = half * (tier / tiers) * _uniform(rng, 0.8, 1.1)
        right.append((width / 2 + reach, y + _uniform(rng, -1.0, 2.0)))
        right.append((width / 2 + reach * _uniform(rng, 0.3, 0.6), y - crown / tiers * 0.35))
    left = [(width - px + _uniform(rng, -1.5, 1.5), py) for px, py in reversed(right[1:])]
    mask = _shape(width, height, lambda d: d.polygon(right + left, fill=255), blur=0.8)
    trunk = int(height * 0.1)
    mask[height - trunk :, int(width / 2 - 1) : int(width / 2 + 2)] = 1.0
    alpha, paint = _foliage(rng, mask, colours, light_x, max(half / 9.0, 1.0))
    # Each tier is dark under the one above it and bright along its drooping tips.
    ys, _ = _grid(height, width)
    paint *= (0.45 + 0.75 * _frac(ys * tiers / crown))[..., None]
    _blend(canvas, alpha, paint, int(x - width / 2), int(base - height))


_FOLIAGE: tuple[tuple[_RGB, _RGB, _RGB], ...] = (
    ((0.05, 0.14, 0.05), (0.18, 0.36, 0.10), (0.50, 0.66, 0.25)),  # summer
    ((0.16, 0.07, 0.03), (0.62, 0.28, 0.06), (0.95, 0.68, 0.22)),  # autumn
    ((0.08, 0.18, 0.06), (0.34, 0.55, 0.16), (0.72, 0.86, 0.42)),  # spring
    ((0.04, 0.10, 0.07), (0.12, 0.26, 0.17), (0.34, 0.48, 0.30)),  # dark evergreen
)
