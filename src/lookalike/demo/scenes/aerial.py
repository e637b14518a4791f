"""The aerial scene: farmland from above, fields, hedges, roads, a river, farmsteads, trees."""

from __future__ import annotations

import math

import numpy as np

from .canvas import _RGB, _Array, _darken, _frac, _grid, _jitter, _pick, _rgb, _uniform
from .light import _side_of_light
from .shapes import _Sprites
from .texture import _noise

_CROPS: tuple[tuple[_RGB, float], ...] = (
    ((0.80, 0.70, 0.35), 0.15),  # ripe wheat, faint rows
    ((0.35, 0.52, 0.20), 0.10),  # pasture
    ((0.45, 0.33, 0.22), 0.45),  # ploughed
    ((0.42, 0.58, 0.22), 0.40),  # young crop in rows
    ((0.16, 0.28, 0.12), 0.05),  # woodland
    ((0.62, 0.62, 0.30), 0.25),  # stubble
)


def _aerial(rng: np.random.Generator, width: int, height: int) -> _Array:
    """Farmland from the air: a warped patchwork of fields, hedges, roads, a river, farmsteads."""
    canvas = _fields(rng, width, height)
    light_x = _side_of_light(rng)
    if rng.random() < 0.55:
        _river(canvas, rng)
    road_points = [_road_path(rng, width, height) for _ in range(int(rng.integers(1, 4)))]
    roads = _Sprites(width, height)
    scale = height / 480
    for path in road_points:
        roads.line(path, (0.25, 0.25, 0.24), max(int(7 * scale), 2))
    roads.lay_on(canvas, rng, cell=3.0, amount=0.3)
    for path in road_points:
        for _ in range(int(rng.integers(0, 3))):
            _farmstead(canvas, rng, path[int(rng.integers(len(path)))], light_x)
    _scatter_canopy(canvas, rng, light_x)
    canvas += 0.12 * (_rgb((0.7, 0.76, 0.82)) - canvas)  # the haze of a few hundred metres of air
    return canvas


def _fields(rng: np.random.Generator, width: int, height: int) -> _Array:
    """The patchwork: a rotated, warped grid of fields, each with its own crop and row direction."""
    angle = _uniform(rng, 0.0, math.pi)
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    cell = width * _uniform(rng, 0.12, 0.3)
    aspect = _uniform(rng, 0.5, 1.3)
    ys, xs = _grid(height, width)
    warp_u = (_noise(rng, width, height, width * 0.5, octaves=2) - 0.5) * cell * 0.8
    warp_v = (_noise(rng, width, height, width * 0.5, octaves=2) - 0.5) * cell * 0.8
    v = (-xs * sin_a + ys * cos_a + warp_v) / (cell * aspect)
    row = np.floor(v)
    shifts = rng.uniform(0.0, 1.0, 64).astype(np.float32)
    u = (xs * cos_a + ys * sin_a + warp_u) / cell + shifts[row.astype(np.intp) % 64]
    column = np.floor(u)
    field = ((column.astype(np.intp) * 31 + row.astype(np.intp) * 17) % 256).astype(np.intp)
    crop_of_field = rng.integers(0, len(_CROPS), 256)
    colours = np.stack([_jitter(rng, _CROPS[int(crop)][0], 0.05) for crop in crop_of_field])
    furrows = np.array([_CROPS[int(crop)][1] for crop in crop_of_field], np.float32)
    along_u = rng.random(256) < 0.5
    pitch = rng.uniform(0.02, 0.05, 256).astype(np.float32)
    lines = np.where(along_u[field], u, v) / pitch[field]
    stripes = np.abs(_frac(lines) - 0.5) * 2.0
    texture = _noise(rng, width, height, 4.0, octaves=4)
    tone = (1.0 - furrows[field] * stripes) * (0.8 + 0.4 * texture)
    paint = colours[field] * tone[..., None]
    edge_u, edge_v = (
        np.minimum(_frac(u), 1 - _frac(u)) * cell,
        np.minimum(_frac(v), 1 - _frac(v)) * cell * aspect,
    )
    hedge_noise = _noise(rng, width, height, 3.0, octaves=2)
    hedge = np.clip(
        (3.0 * height / 480 - np.minimum(edge_u, edge_v)) + (hedge_noise - 0.5) * 3.0, 0.0, 1.0
    )
    paint += hedge[..., None] * (
        _rgb((0.1, 0.2, 0.08)) * (0.6 + 0.8 * hedge_noise)[..., None] - paint
    )
    return np.asarray(paint, dtype=np.float32)


def _road_path(rng: np.random.Generator, width: int, height: int) -> list[tuple[float, float]]:
    """A gently wandering road from one edge of the frame to another."""
    heading = _uniform(rng, 0.0, 2.0 * math.pi)
    x, y = width * _uniform(rng, 0.2, 0.8), height * _uniform(rng, 0.2, 0.8)
    step = width * 0.05
    # Walk both ways from a point inside the frame, so the road always crosses it.
    forward = _walk(rng, x, y, heading, step, width, height)
    backward = _walk(rng, x, y, heading + math.pi, step, width, height)
    return list(reversed(backward)) + forward[1:]


def _walk(
    rng: np.random.Generator,
    x: float,
    y: float,
    heading: float,
    step: float,
    width: int,
    height: int,
) -> list[tuple[float, float]]:
    """Points of a random walk from (x, y) until it leaves the frame."""
    points = [(x, y)]
    while -step < x < width + step and -step < y < height + step:
        heading += _uniform(rng, -0.25, 0.25)
        x += math.cos(heading) * step
        y += math.sin(heading) * step
        points.append((x, y))
    return points


def _river(canvas: _Array, rng: np.random.Generator) -> None:
    """A meandering river with a tree-lined bank."""
    height, width = canvas.shape[:2]
    path = _road_path(rng, width, height)
    scale = height / 480
    bank = _Sprites(width, height)
    water = _Sprites(width, height)
    river_width = int(_uniform(rng, 8, 22) * scale)
    bank.line(path, (0.1, 0.2, 0.08), river_width + int(8 * scale))
    water.line(path, _jitter(rng, (0.18, 0.3, 0.32), 0.04), river_width)
    bank.lay_on(canvas, rng, cell=2.5, amount=1.2, blur=1.0)
    water.lay_on(canvas, rng, cell=12.0, amount=0.5, blur=0.8)


def _farmstead(
    canvas: _Array, rng: np.random.Generator, at: tuple[float, float], light_x: float
) -> None:
    """A few roofs beside the road, each with a ridge line and a shadow."""
    height = canvas.shape[0]
    scale = height / 480
    angle = _uniform(rng, 0.0, math.pi)
    for _ in range(int(rng.integers(1, 5))):
        cx = at[0] + _uniform(rng, -30, 30) * scale
        cy = at[1] + _uniform(rng, -30, 30) * scale
        long, short = _uniform(rng, 8, 22) * scale, _uniform(rng, 5, 10) * scale
        roof = _jitter(
            rng, _pick(rng, ((0.65, 0.28, 0.18), (0.35, 0.35, 0.38), (0.55, 0.5, 0.45))), 0.05
        )
        corners = _rectangle_corners(cx, cy, long, short, angle)
        shadow = _Sprites(canvas.shape[1], height)
        shadow.polygon(
            [(px - light_x * 4 * scale, py + 4 * scale) for px, py in corners], (0, 0, 0)
        )
        alpha, left, top = shadow.coverage()
        _darken(canvas, alpha, 0.5, left, top)
        house = _Sprites(canvas.shape[1], height)
        half_a = _rectangle_corners(
            cx - math.sin(angle) * short / 4,
            cy + math.cos(angle) * short / 4,
            long,
            short / 2,
            angle,
        )
        house.polygon(corners, roof)
        house.polygon(half_a, roof * 0.7)
        house.lay_on(canvas, rng, cell=1.5, amount=0.3)


def _rectangle_corners(
    cx: float, cy: float, long: float, short: float, angle: float
) -> list[tuple[float, float]]:
    """Corners of a rectangle `long` x `short` centred at (cx, cy), turned by `angle`."""
    ux, uy = math.cos(angle) * long / 2, math.sin(angle) * long / 2
    vx, vy = -math.sin(angle) * short / 2, math.cos(angle) * short / 2
    return [
        (cx - ux - vx, cy - uy - vy),
        (cx + ux - vx, cy + uy - vy),
        (cx + ux + vx, cy + uy + vy),
        (cx - ux + vx, cy - uy + vy),
    ]


def _scatter_canopy(canvas: _Array, rng: np.random.Generator, light_x: float) -> None:
    """Copses and lone trees seen from above: dark crowns with shadows beside them."""
    height, width = canvas.shape[:2]
    scale = height / 480
    crowns = _Sprites(width, height)
    shadows = _Sprites(width, height)
    for _ in range(int(rng.integers(2, 8))):
        cx, cy = _uniform(rng, 0, width), _uniform(rng, 0, height)
        spread = _uniform(rng, 5, 60) * scale
        for _ in range(int(rng.integers(3, 30))):
            x, y = cx + float(rng.normal(0, spread)), cy + float(rng.normal(0, spread))
            r = _uniform(rng, 2.5, 7) * scale
            shadows.ellipse(
                (x - r - light_x * r, y - r + r * 0.8, x + r - light_x * r, y + r + r * 0.8),
                (0, 0, 0),
            )
            crowns.ellipse((x - r, y - r, x + r, y + r), _jitter(rng, (0.12, 0.25, 0.1), 0.04))
    alpha, left, top = shadows.coverage()
    _darken(canvas, alpha, 0.45, left, top)
    crowns.lay_on(canvas, rng, cell=2.0, amount=1.0, blur=0.6)
