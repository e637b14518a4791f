"""Shaded solids lit from the side of the key light: balls, turned profiles, blocks."""

from __future__ import annotations

import numpy as np

from .canvas import _Array, _blend, _Colour, _grid, _paste, _rgb
from .texture import _noise


def _sphere(
    canvas: _Array,
    rng: np.random.Generator,
    cx: float,
    cy: float,
    radius: float,
    colour: _Colour,
    light_x: float,
    *,
    gloss: float = 0.5,
    texture: float = 0.2,
) -> None:
    """A lit ball (fruit, a wheel, a lamp) centred at (cx, cy)."""
    alpha, paint = _ball(rng, radius, colour, light_x, gloss=gloss, texture=texture)
    _blend(canvas, alpha, paint, int(cx - alpha.shape[1] / 2), int(cy - alpha.shape[0] / 2))


def _ball(
    rng: np.random.Generator,
    radius: float,
    colour: _Colour,
    light_x: float,
    *,
    gloss: float = 0.5,
    texture: float = 0.2,
) -> tuple[_Array, _Array]:
    """Coverage and colour of a lit ball: diffuse shading, a highlight, a mottled skin.

    Returned rather than drawn so that a heap of fruit can reuse one ball many times.
    """
    size = int(2 * radius) + 4
    ys, xs = _grid(size, size)
    centre = size / 2
    u = (xs + 0.5 - centre) / radius
    v = (ys + 0.5 - centre) / radius
    d2 = u * u + v * v
    alpha = np.clip((1.0 - np.sqrt(d2)) * radius + 0.5, 0.0, 1.0)
    nz = np.sqrt(np.clip(1.0 - d2, 0.0, 1.0))
    lx, ly, lz = 0.55 * light_x, -0.55, 0.63
    diffuse = np.clip(u * lx + v * ly + nz * lz, 0.0, 1.0)
    highlight = diffuse * diffuse
    highlight = highlight * highlight
    highlight = highlight * highlight * highlight  # ** 12, by multiplication
    shade = 0.22 + 0.85 * diffuse
    if radius >= 4:
        skin = _noise(rng, size, size, max(radius / 2.5, 2.0), octaves=3)
        shade = shade * (1.0 + texture * (skin - 0.5))
    paint = _rgb(colour) * shade[..., None] + (gloss * highlight)[..., None]
    return alpha, paint


def _lathe(
    canvas: _Array,
    rng: np.random.Generator,
    cx: float,
    top: float,
    radii: _Array,
    colour: _Colour,
    light_x: float,
    *,
    gloss: float = 0.4,
    texture: float = 0.15,
    grain: tuple[float, float] = (1.0, 1.0),
    opacity: float = 1.0,
) -> None:
    """A solid of revolution seen from the side (bottle, vase, trunk, pole): one radius per row.

    Shaded as a cylinder lit from `light_x`, with a vertical highlight for glossy materials
    and a surface texture stretched by `grain` (bark runs along the trunk).
    """
    rows = len(radii)
    reach = float(radii.max()) if rows else 0.0
    if rows == 0 or reach < 0.5:
        return
    width = int(2 * reach) + 4
    x0, y0 = int(cx - reach) - 2, int(top)
    _, xs = _grid(rows, width)
    offset = xs + x0 + 0.5 - cx
    r = np.maximum(radii, 0.5)[:, None]
    alpha = np.clip(r - np.abs(offset) + 0.5, 0.0, 1.0) * (radii[:, None] > 0.25)
    u = np.clip(offset / r, -1.0, 1.0)
    nz = np.sqrt(1.0 - u * u)
    diffuse = np.clip(u * 0.75 * light_x + nz * 0.66, 0.0, 1.0)
    band = np.clip(1.0 - np.abs(u - 0.45 * light_x) * 6.0, 0.0, 1.0)
    surface = _noise(
        rng, width, rows, max(reach / 2.0, 2.0), octaves=4, stretch=grain, contrast=2.2
    )
    shade = (0.25 + 0.8 * diffuse) * (1.0 + texture * 2.0 * (surface - 0.5))
    paint = _rgb(colour) * shade[..., None] + (gloss * band * band)[..., None]
    _blend(canvas, alpha * opacity, paint, x0, y0)


def _box(
    canvas: _Array,
    rng: np.random.Generator,
    box: tuple[float, float, float, float],
    colour: _Colour,
    light_x: float,
    *,
    texture: float = 0.25,
    cell: float = 6.0,
    grain: tuple[float, float] = (1.0, 1.0),
    depth: float = 0.0,
) -> None:
    """A lit block seen from the front: textured face, a shaded side `depth` pixels deep.

    `grain` stretches the texture as `_noise` does: (8, 1) gives wood's long fibres.
    """
    left, top, right, bottom = (round(value) for value in box)
    width, height = right - left, bottom - top
    if width < 1 or height < 1:
        return
    surface = _noise(rng, width, height, cell, octaves=3, stretch=grain)
    ys, _ = _grid(height, width)
    # Faces get a little darker towards the ground, as in any photo of a lit box.
    falloff = 1.0 - 0.18 * ys / height
    paint = _rgb(colour) * ((1.0 + texture * (surface - 0.5)) * falloff)[..., None]
    _paste(canvas, paint, left, top)
    if depth >= 1:
        side_width = int(depth)
        side_left = left - side_width if light_x > 0 else right
        side = np.broadcast_to(_rgb(colour) * 0.55, (height, side_width, 3))
        _paste(canvas, side, side_left, top)
