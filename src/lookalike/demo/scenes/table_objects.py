"""Objects standing on a table, each with its shadows: fruit, grapes, vessels, bowls, books.

The still life is a group of them; the interior puts a few on its sideboards.
"""

from __future__ import annotations

import math

import numpy as np

from .canvas import _Array, _blend, _jitter, _lerp, _paste, _pick, _rgb, _uniform
from .materials import _BOOKS, _CERAMIC, _FRUIT, _GLASS
from .shapes import _cast_shadow, _shape
from .solids import _ball, _box, _lathe, _sphere
from .texture import _noise


def _table_object(
    canvas: _Array, rng: np.random.Generator, x: float, base: float, size: float, light_x: float
) -> None:
    """One object standing at (x, base), `size` pixels tall, with its shadow."""
    kind = _pick(rng, ("fruit", "fruit", "grapes", "bottle", "vase", "bowl", "cup", "books"))
    if kind == "fruit":
        radius = size * _uniform(rng, 0.12, 0.2)
        _shadows(canvas, x, base, radius, size * 0.5, light_x)
        colour = _jitter(rng, _pick(rng, _FRUIT), 0.06)
        _sphere(canvas, rng, x, base - radius * 0.95, radius, colour, light_x, gloss=0.45)
    elif kind == "grapes":
        _grapes(canvas, rng, x, base, size, light_x)
    elif kind == "bowl":
        _bowl(canvas, rng, x, base, size, light_x)
    elif kind == "books":
        _book_stack(canvas, rng, x, base, size, light_x)
    else:
        _vessel(canvas, rng, kind, x, base, size, light_x)


def _shadows(
    canvas: _Array, x: float, base: float, reach: float, tall: float, light_x: float
) -> None:
    """An object's shadows on the table: a long soft one away from the light, a dark contact one."""
    _cast_shadow(
        canvas, x - light_x * tall * 0.6, base, reach + tall * 0.5, reach * 0.3, 0.45, reach * 0.25
    )
    _cast_shadow(
        canvas, x, base - reach * 0.05, reach * 1.05, reach * 0.15, 0.6, max(reach * 0.06, 0.8)
    )


def _vessel(
    canvas: _Array,
    rng: np.random.Generator,
    kind: str,
    x: float,
    base: float,
    size: float,
    light_x: float,
) -> None:
    """A bottle, vase or cup: a profile turned on a lathe, glass or glazed."""
    rows = int(size * (1.1 if kind == "bottle" else 0.85 if kind == "vase" else 0.38))
    t = np.linspace(0.0, 1.0, max(rows, 2), dtype=np.float32)
    body = size * _uniform(rng, 0.12, 0.2)
    if kind == "bottle":
        shoulder = np.clip((t - _uniform(rng, 0.2, 0.45)) / 0.15, 0.0, 1.0)
        radii = body * (0.3 + 0.7 * shoulder * shoulder * (3 - 2 * shoulder))
        radii[: max(rows // 25, 1)] *= 1.25
        colour, gloss, opacity = _pick(rng, _GLASS), 0.7, 0.9
    elif kind == "vase":
        bulge = 4.0 * t * (1.0 - t)
        rim = (1.0 - t) * (1.0 - t) * (1.0 - t)
        flare = rim * rim  # (1 - t) ** 6, by multiplication
        radii = body * (0.45 + 0.75 * bulge * (t > 0.2) + 0.55 * flare)
        colour, gloss, opacity = _pick(rng, _CERAMIC), 0.5, 1.0
    else:
        radii = body * (0.95 - 0.15 * t)
        colour, gloss, opacity = _pick(rng, _CERAMIC), 0.45, 1.0
    colour = tuple(_jitter(rng, colour, 0.05))
    radii = radii.astype(np.float32)
    reach = float(radii.max())
    _shadows(canvas, x, base, reach, rows, light_x)
    if kind == "cup":
        # The handle first: the cup's body then hides where it joins.
        side = 1.0 if rng.random() < 0.5 else -1.0
        ring_w, ring_h = reach * 0.9, rows * 0.6
        thick = max(int(reach * 0.16), 1)
        handle = _shape(
            int(ring_w) + 2,
            int(ring_h) + 2,
            lambda d: d.ellipse((0, 0, ring_w, ring_h), outline=255, width=thick),
        )
        _blend(
            canvas,
            handle,
            _rgb(colour) * 0.75,
            int(x + side * reach - ring_w / 2),
            int(base - rows * 0.85),
        )
    _lathe(canvas, rng, x, base - rows, radii, colour, light_x, gloss=gloss, opacity=opacity)


def _grapes(
    canvas: _Array, rng: np.random.Generator, x: float, base: float, size: float, light_x: float
) -> None:
    """A bunch of grapes lying on the table: many small glossy berries in an oval heap."""
    berry = size * _uniform(rng, 0.04, 0.06)
    colour = _pick(rng, ((0.3, 0.08, 0.22), (0.55, 0.7, 0.25), (0.18, 0.06, 0.15)))
    balls = [
        _ball(rng, berry * _uniform(rng, 0.9, 1.1), _jitter(rng, colour, 0.05), light_x, gloss=0.6)
        for _ in range(3)
    ]
    reach_x, reach_y = berry * _uniform(rng, 3.0, 6.0), berry * _uniform(rng, 1.5, 3.0)
    _shadows(canvas, x, base, reach_x * 1.1, reach_y * 2, light_x)
    berries = []
    for _ in range(int(rng.integers(15, 40))):
        angle, spread = _uniform(rng, 0.0, 2.0 * math.pi), math.sqrt(_uniform(rng, 0.0, 1.0))
        bx = x + math.cos(angle) * spread * reach_x
        by = base - reach_y - berry + math.sin(angle) * spread * reach_y
        berries.append((by, bx))
    for by, bx in sorted(berries):  # back to front
        alpha, paint = balls[int(rng.integers(3))]
        shade = _uniform(rng, 0.75, 1.1)
        _blend(
            canvas, alpha, paint * shade, int(bx - alpha.shape[1] / 2), int(by - alpha.shape[0] / 2)
        )


def _book_stack(
    canvas: _Array, rng: np.random.Generator, x: float, base: float, size: float, light_x: float
) -> None:
    """A few books lying in a pile: cloth covers, cream page edges."""
    wide = size * _uniform(rng, 0.7, 1.1)
    _shadows(canvas, x, base, wide * 0.5, size * 0.3, light_x)
    top = base
    for _ in range(int(rng.integers(2, 5))):
        thick = size * _uniform(rng, 0.07, 0.14)
        width = wide * _uniform(rng, 0.8, 1.0)
        left = x - width / 2 + _uniform(rng, -0.08, 0.08) * wide
        cover = _jitter(rng, _pick(rng, _BOOKS), 0.06)
        _box(
            canvas,
            rng,
            (left, top - thick, left + width, top),
            cover,
            light_x,
            cell=2.0,
            texture=0.3,
        )
        inset = thick * 0.18
        pages = _noise(
            rng,
            max(int(width - 2 * inset), 1),
            max(int(thick - 2 * inset), 1),
            2.0,
            octaves=2,
            stretch=(12.0, 1.0),
        )
        paper = _lerp(pages, (0.72, 0.68, 0.58), (0.95, 0.92, 0.84))
        _paste(canvas, paper, int(left + inset), int(top - thick + inset))
        top -= thick


def _bowl(
    canvas: _Array, rng: np.random.Generator, x: float, base: float, size: float, light_x: float
) -> None:
    """A bowl heaped with fruit: the fruit's tops first, then the bowl's body over them."""
    radius = size * _uniform(rng, 0.35, 0.5)
    depth = radius * 0.6
    _shadows(canvas, x, base, radius, depth * 2, light_x)
    rim = base - depth
    fruit = _jitter(rng, _pick(rng, _FRUIT), 0.05)
    for _ in range(int(rng.integers(3, 7))):
        r = radius * _uniform(rng, 0.28, 0.4)
        fx = x + _uniform(rng, -0.6, 0.6) * radius
        _sphere(
            canvas,
            rng,
            fx,
            rim - r * _uniform(rng, 0.1, 0.7),
            r,
            _jitter(rng, fruit, 0.08),
            light_x,
        )
    t = np.linspace(0.0, 1.0, max(int(depth), 2), dtype=np.float32)
    radii = (radius * np.sqrt(np.clip(1.0 - t * t, 0.0, 1.0))).astype(np.float32)
    _lathe(canvas, rng, x, rim, radii, _jitter(rng, _pick(rng, _CERAMIC), 0.05), light_x, gloss=0.5)
