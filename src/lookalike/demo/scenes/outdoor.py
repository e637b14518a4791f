"""Outdoor scenes at eye level: the landscape, the forest and the seascape."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .canvas import _RGB, _Array, _blend, _Colour, _grid, _jitter, _lerp, _pick, _rgb, _uniform
from .finish import _defocus
from .light import _DAYLIGHTS, _Daylight, _haze, _side_of_light, _sky
from .shapes import _cast_shadow, _shape, _Sprites
from .solids import _lathe
from .texture import _noise, _profile, _relief
from .trees import _FOLIAGE, _broadleaf_tree, _conifer, _foliage

# --- landscape -----------------------------------------------------------------------


def _landscape(rng: np.random.Generator, width: int, height: int) -> _Array:
    """Mountains under a sky, a meadow, maybe a lake, trees scattered in perspective."""
    light = _pick(rng, _DAYLIGHTS)
    horizon = height * _uniform(rng, 0.3, 0.62)
    light_x = _side_of_light(rng)
    canvas = _sky(rng, width, height, horizon, light, 0.5 - 0.4 * light_x)
    _mountains(canvas, rng, horizon, light, light_x)
    foliage = _pick(rng, _FOLIAGE)
    _meadow(canvas, rng, horizon, light, foliage)
    lake = _lake(canvas, rng, horizon, light) if rng.random() < 0.5 else None
    _scatter_trees(canvas, rng, horizon, light, light_x, foliage, lake)
    return canvas


_ROCKS: tuple[_RGB, ...] = ((0.42, 0.40, 0.38), (0.48, 0.38, 0.30), (0.34, 0.36, 0.40))


def _mountains(
    canvas: _Array, rng: np.random.Generator, horizon: float, light: _Daylight, light_x: float
) -> None:
    """One to three ridges, farther ones paler and bluer; lit and shaded slopes, snow."""
    height, width = canvas.shape[:2]
    ridges = int(rng.integers(1, 4))
    rock = _jitter(rng, _pick(rng, _ROCKS), 0.05) * _rgb(light.tint)
    for ridge in range(ridges):
        nearness = (ridge + 1) / ridges
        peak = height * _uniform(rng, 0.1, 0.32) * (1.15 - 0.45 * nearness)
        line = horizon + 2 - peak * _profile(rng, width, width * _uniform(rng, 0.2, 0.6))
        top = max(int(line.min()) - 1, 0)
        rows = int(horizon) + 3 - top
        if rows <= 1:
            continue
        ys, _ = _grid(rows, width)
        ys = ys + top
        alpha = np.clip(ys - line[None, :] + 0.5, 0.0, 1.0)
        slope = np.gradient(line)[None, :] * (-light_x) * 0.6
        crags = _noise(rng, width, rows, 10.0, octaves=5, stretch=(1.0, 2.5))
        bumps = _relief(crags, light_x, 6.0 * nearness)
        shade = np.clip((0.75 + slope + 0.5 * (crags - 0.5)) * bumps, 0.25, 1.4)
        paint = rock * shade[..., None]
        if peak > height * 0.14 and rng.random() < 0.5:
            snowline = line[None, :] + peak * (0.25 + 0.35 * crags)
            snow = np.clip((snowline - ys) * 0.5, 0.0, 1.0)
            paint += snow[..., None] * (_rgb((0.93, 0.94, 0.97)) * shade[..., None] - paint)
        haze = 0.75 * (1.0 - nearness) + 0.12
        paint += haze * (_rgb(light.horizon) - paint)
        _blend(canvas, alpha, paint, 0, top)


def _meadow(
    canvas: _Array,
    rng: np.random.Generator,
    horizon: float,
    light: _Daylight,
    foliage: tuple[_RGB, _RGB, _RGB],
) -> None:
    """Grass from the horizon down: patches of colour, blades that grow with nearness."""
    height, width = canvas.shape[:2]
    top = int(horizon)
    rows = height - top
    patches = _noise(rng, width, rows, width * 0.25, octaves=3)
    far_blades = _noise(rng, width, rows, 3.0, octaves=2, stretch=(1.0, 2.0))
    near_blades = _noise(rng, width, rows, 5.0, octaves=3, stretch=(1.0, 5.0))
    ys, _ = _grid(rows, width)
    nearness = ys / rows
    blades = far_blades + nearness * (near_blades - far_blades)
    dry = _jitter(rng, (0.62, 0.58, 0.30), 0.06)
    green = _rgb(foliage[1])
    base = green + (patches * 0.8)[..., None] * (dry - green)
    paint = base * (0.55 + 0.9 * blades)[..., None] * _rgb(light.tint)
    canvas[top:] = paint
    _haze(canvas, top, top + rows // 2, light.horizon, 0.55)


def _lake(
    canvas: _Array, rng: np.random.Generator, horizon: float, light: _Daylight
) -> tuple[float, float, float]:
    """A lake just below the horizon, mirroring the sky, rippled: its centre, reach and depth."""
    height, width = canvas.shape[:2]
    reach = width * _uniform(rng, 0.25, 0.6)
    centre = width * _uniform(rng, 0.2, 0.8)
    depth = (height - horizon) * _uniform(rng, 0.15, 0.4)
    box_width, box_height = int(2 * reach), int(2 * depth)
    mask = _shape(
        box_width, box_height, lambda d: d.ellipse((0, 0, 2 * reach, 2 * depth), fill=255)
    )
    mask = mask[box_height // 2 :]
    rows = mask.shape[0]
    ripples = _noise(rng, box_width, rows, 14.0, octaves=4, stretch=(8.0, 1.0))
    edge = _noise(rng, box_width, rows, 8.0, octaves=3)
    alpha = np.clip((mask - 0.3) * 3.0 + (edge - 0.5), 0.0, 1.0)
    ys, _ = _grid(rows, box_width)
    mirror = _lerp(np.clip(ys / rows, 0, 1), light.horizon, light.zenith) * 0.85
    paint = mirror * (0.75 + 0.5 * ripples)[..., None]
    _blend(canvas, alpha, paint, int(centre - reach), int(horizon) + 1)
    return centre, reach, depth


def _scatter_trees(
    canvas: _Array,
    rng: np.random.Generator,
    horizon: float,
    light: _Daylight,
    light_x: float,
    foliage: tuple[_RGB, _RGB, _RGB],
    lake: tuple[float, float, float] | None,
) -> None:
    """Trees across the ground, in a few clumps, bigger the nearer they stand; none in the lake."""
    height, width = canvas.shape[:2]
    conifers = rng.random() < 0.45
    stands: list[tuple[float, float]] = []
    for _ in range(int(rng.integers(2, 6))):
        cx = _uniform(rng, -0.05, 1.05) * width
        nearness = _uniform(rng, 0.02, 1.0) ** 1.5
        for _ in range(int(rng.integers(1, 9))):
            spread = width * 0.06 * (0.3 + nearness)
            x = cx + float(rng.normal(0.0, spread))
            y = horizon + 3 + (height - horizon) * min(nearness + _uniform(rng, 0, 0.08), 1.1)
            stands.append((x, y))
    for x, y in sorted(stands, key=lambda stand: stand[1]):
        if lake is not None:
            centre, reach, depth = lake
            if ((x - centre) / reach) ** 2 + ((y - horizon) / depth) ** 2 < 1.15:
                continue
        nearness = (y - horizon) / (height - horizon)
        size = height * (0.04 + 0.55 * nearness * nearness + 0.08 * nearness)
        size *= _uniform(rng, 0.7, 1.3)
        draw = _conifer if conifers else _broadleaf_tree
        colours = _FOLIAGE[3] if conifers else foliage  # firs stay green all year
        draw(canvas, rng, x, y, size, colours, light_x, light.shadow)


# --- forest --------------------------------------------------------------------------


_FOREST_FLOOR: tuple[tuple[_RGB, _RGB], ...] = (
    ((0.18, 0.12, 0.07), (0.50, 0.38, 0.22)),  # leaf litter
    ((0.10, 0.16, 0.06), (0.40, 0.50, 0.22)),  # moss
    ((0.25, 0.16, 0.08), (0.75, 0.45, 0.15)),  # autumn leaves
)
_BARK: tuple[_RGB, ...] = (
    (0.30, 0.24, 0.18),
    (0.45, 0.42, 0.38),
    (0.22, 0.16, 0.12),
    (0.70, 0.68, 0.62),
)


def _forest(rng: np.random.Generator, width: int, height: int) -> _Array:
    """Woodland: misty trunks behind, leafy canopy, textured trunks and undergrowth in front."""
    foliage = _pick(rng, _FOLIAGE)
    light = _pick(rng, _DAYLIGHTS)
    light_x = _side_of_light(rng)
    ground = height * _uniform(rng, 0.5, 0.78)
    canvas = _forest_depths(rng, width, height, ground, foliage, light)
    for _ in range(int(rng.integers(12, 35))):
        _trunk(
            canvas,
            rng,
            _uniform(rng, -0.02, 1.02) * width,
            ground + _uniform(rng, 0, 8),
            height * _uniform(rng, 0.004, 0.012),
            light_x,
            haze=0.55,
            colour=light.horizon,
        )
    canvas = _defocus(canvas, _uniform(rng, 1.5, 3.0) * height / 480)
    _canopy(canvas, rng, ground, foliage, light_x)
    _forest_floor(canvas, rng, ground, light)
    trunks = [
        (_uniform(rng, 0.0, 1.0), _uniform(rng, -0.05, 1.05) * width)
        for _ in range(int(rng.integers(3, 11)))
    ]
    for nearness, x in sorted(trunks):
        base = ground + (height - ground) * nearness * 0.8
        radius = height * (0.01 + 0.06 * nearness * nearness)
        _cast_shadow(
            canvas, x - light_x * radius * 2, base, radius * 3, radius * 0.5, 0.5, radius * 0.3
        )
        _trunk(canvas, rng, x, base, radius, light_x, haze=0.0, colour=light.horizon)
        _undergrowth(canvas, rng, x, base + radius * 0.3, radius * 4, foliage, light_x)
    for _ in range(int(rng.integers(2, 7))):
        _bush(
            canvas,
            rng,
            _uniform(rng, -0.05, 1.05) * width,
            ground + (height - ground) * _uniform(rng, 0.3, 1.1),
            foliage,
            light_x,
        )
    _light_shafts(canvas, rng, light)
    return canvas


def _forest_depths(
    rng: np.random.Generator,
    width: int,
    height: int,
    ground: float,
    foliage: Sequence[_Colour],
    light: _Daylight,
) -> _Array:
    """The far wood: a misty wall of foliage fading up into bright sky light."""
    ys, _ = _grid(height, width)
    fog = _lerp(
        np.clip(ys / max(ground, 1.0), 0.0, 1.0), light.horizon, _rgb(foliage[1]) * 0.6 + 0.3
    )
    mass = _noise(rng, width, height, 40.0, octaves=5)
    canvas = fog * (0.8 + 0.4 * mass)[..., None]
    return np.broadcast_to(canvas, (height, width, 3)).astype(np.float32)


def _trunk(
    canvas: _Array,
    rng: np.random.Generator,
    x: float,
    base: float,
    radius: float,
    light_x: float,
    *,
    haze: float,
    colour: _Colour,
) -> None:
    """A trunk from above the frame down to `base`, widening at the foot, its bark grooved."""
    rows = int(base) + 2
    if rows < 2:
        return
    t = np.linspace(0.0, 1.0, rows, dtype=np.float32)
    flare = t * t
    flare = flare * flare
    flare = flare * flare  # t ** 8, by multiplication
    radii = (radius * (0.85 + 0.15 * t + 0.6 * flare)).astype(np.float32)
    bark = _jitter(rng, _pick(rng, _BARK), 0.04)
    bark = bark + haze * (_rgb(colour) - bark)
    _lathe(
        canvas,
        rng,
        x,
        -2.0,
        radii,
        bark,
        light_x,
        gloss=0.0,
        texture=0.45 * (1 - haze),
        grain=(1.0, 5.0),
    )


def _canopy(
    canvas: _Array,
    rng: np.random.Generator,
    ground: float,
    foliage: Sequence[_Colour],
    light_x: float,
) -> None:
    """Leaves across the top of the frame, thinning towards the ground."""
    height, width = canvas.shape[:2]
    rows = int(ground * _uniform(rng, 0.45, 0.85))
    if rows < 4:
        return
    ys, _ = _grid(rows, width)
    mass = _noise(rng, width, rows, width * 0.15, octaves=4)
    mask = np.clip(mass + 0.55 - ys / rows * 1.1, 0.0, 1.0)
    alpha, paint = _foliage(rng, mask, foliage, light_x, 5.0 * height / 480)
    _blend(canvas, alpha, paint, 0, 0)


def _forest_floor(
    canvas: _Array, rng: np.random.Generator, ground: float, light: _Daylight
) -> None:
    """Leaf litter or moss from the far ground line down, hazy in the distance."""
    height, width = canvas.shape[:2]
    top = int(ground)
    rows = height - top
    dark, bright = (_jitter(rng, colour, 0.04) for colour in _pick(rng, _FOREST_FLOOR))
    litter = _noise(rng, width, rows, 4.0, octaves=3, contrast=3.0)
    clumps = _noise(rng, width, rows, 60.0, octaves=3)
    paint = _lerp(np.clip(litter * 0.7 + clumps * 0.3, 0, 1), dark, bright) * _rgb(light.tint)
    edge = _profile(rng, width, width * 0.1) * 10.0
    ys, _ = _grid(rows, width)
    alpha = np.clip(ys - edge[None, :] + 0.5, 0.0, 1.0)
    _blend(canvas, alpha, paint, 0, top)
    _haze(canvas, top, top + rows // 3, light.horizon, 0.45)


def _bush(
    canvas: _Array,
    rng: np.random.Generator,
    x: float,
    base: float,
    foliage: Sequence[_Colour],
    light_x: float,
) -> None:
    """A leafy bush standing on the ground at (x, base)."""
    height = canvas.shape[0]
    size = height * _uniform(rng, 0.08, 0.25)
    w, h = int(size * 2.2), int(size)
    mask = _shape(w, h, lambda d: d.ellipse((0, h * 0.15, w, h * 1.0), fill=255), blur=size * 0.1)
    alpha, paint = _foliage(rng, mask, foliage, light_x, max(size / 12.0, 1.5))
    _blend(canvas, alpha, paint, int(x - w / 2), int(base - h))


def _undergrowth(
    canvas: _Array,
    rng: np.random.Generator,
    x: float,
    base: float,
    wide: float,
    foliage: Sequence[_Colour],
    light_x: float,
) -> None:
    """Low, ragged growth around a trunk's foot, so that it stands in the ground, not on it."""
    w, h = int(wide) + 4, int(wide * 0.35) + 4
    mask = _shape(w, h, lambda d: d.ellipse((0, h * 0.3, w, h * 1.6), fill=255), blur=wide * 0.05)
    dark = tuple(float(c) * 0.8 for c in foliage[0])
    alpha, paint = _foliage(
        rng, mask, (dark, foliage[0], foliage[1]), light_x, max(wide / 14.0, 1.2)
    )
    _blend(canvas, alpha, paint, int(x - w / 2), int(base - h))


def _light_shafts(canvas: _Array, rng: np.random.Generator, light: _Daylight) -> None:
    """Sunbeams slanting through the trees."""
    height, width = canvas.shape[:2]
    slope = _uniform(rng, -0.6, 0.6)
    ys, xs = _grid(height, width)
    across = xs + ys * slope
    span = int(width + height * abs(slope)) + 2
    beams = _profile(rng, span, width * 0.05, octaves=3)
    index = np.clip(across + height * abs(slope), 0, span - 1).astype(np.intp)
    glow = np.clip((beams[index] - 0.6) * 2.0, 0.0, 1.0) * (1.0 - ys / height)
    canvas += (glow * 0.25 * light.glow)[..., None] * _rgb(light.sun)


# --- seascape ------------------------------------------------------------------------


_SEA: tuple[_RGB, ...] = (
    (0.05, 0.22, 0.32),
    (0.08, 0.30, 0.35),
    (0.04, 0.14, 0.26),
    (0.12, 0.32, 0.30),
)
_SAND: tuple[_RGB, ...] = (
    (0.85, 0.76, 0.58),
    (0.72, 0.64, 0.52),
    (0.55, 0.52, 0.48),
    (0.9, 0.84, 0.72),
)


def _seascape(rng: np.random.Generator, width: int, height: int) -> _Array:
    """The sea under a sky: headland, waves and sun glitter, a beach with rocks, maybe a boat."""
    light = _pick(rng, _DAYLIGHTS)
    horizon = height * _uniform(rng, 0.28, 0.6)
    light_x = _side_of_light(rng)
    sun_x = _uniform(rng, 0.15, 0.85)
    canvas = _sky(rng, width, height, horizon, light, sun_x)
    if rng.random() < 0.6:
        _headland(canvas, rng, horizon, light)
    _sea(canvas, rng, horizon, light, sun_x)
    shore = height * _uniform(rng, 0.72, 0.95) if rng.random() < 0.75 else float(height + 10)
    if shore < height:
        _beach(canvas, rng, shore, light)
    if rng.random() < 0.4:
        _boat(canvas, rng, horizon, light_x)
    rocks = [
        (_uniform(rng, horizon + 6, height * 1.05), _uniform(rng, -0.05, 1.05) * width)
        for _ in range(int(rng.integers(0, 6)))
    ]
    for y, x in sorted(rocks):
        _rock(canvas, rng, x, y, (y - horizon) / (height - horizon), light, light_x)
    return canvas


def _headland(canvas: _Array, rng: np.random.Generator, horizon: float, light: _Daylight) -> None:
    """A hazy headland on one side of the horizon."""
    height, width = canvas.shape[:2]
    rise = height * _uniform(rng, 0.03, 0.12)
    ys, xs = _grid(1, width)
    reach = _uniform(rng, 0.2, 0.6)
    taper = np.clip((reach - xs[0] / width) * 8.0, 0.0, 1.0)
    if rng.random() < 0.5:
        taper = taper[::-1]
    line = horizon + 1 - rise * taper * (0.5 + 0.5 * _profile(rng, width, width * 0.15))
    top = max(int(line.min()) - 1, 0)
    rows = int(horizon) + 2 - top
    ys, _ = _grid(rows, width)
    alpha = np.clip(ys + top - line[None, :] + 0.5, 0.0, 1.0)
    land = _lerp(_noise(rng, width, rows, 6.0, octaves=4), (0.12, 0.18, 0.12), (0.35, 0.38, 0.28))
    land += 0.55 * (_rgb(light.horizon) - land)
    _blend(canvas, alpha, land, 0, top)


def _sea(
    canvas: _Array, rng: np.random.Generator, horizon: float, light: _Daylight, sun_x: float
) -> None:
    """Water down to the frame's foot: small waves far off, big ones near, glitter under the sun."""
    height, width = canvas.shape[:2]
    top = int(horizon) + 1
    rows = height - top
    ys, xs = _grid(rows, width)
    nearness = ys / rows
    fine = _noise(rng, width, rows, 5.0, octaves=3, stretch=(7.0, 1.0), contrast=3.0)
    coarse = _noise(rng, width, rows, 30.0, octaves=4, stretch=(5.0, 1.0), contrast=3.0)
    waves = fine + nearness * (coarse - fine)
    deep = _jitter(rng, _pick(rng, _SEA), 0.03)
    sky_mirror = _rgb(light.horizon) * 0.75
    base = sky_mirror + np.sqrt(nearness)[..., None] * (deep - sky_mirror)
    paint = base * (0.7 + 0.6 * waves)[..., None]
    crests = np.clip((waves - 0.82) * 5.0, 0.0, 1.0) * (0.3 + nearness)
    paint += crests[..., None] * (_rgb(light.cloud_lit) - paint)
    spread = width * (0.04 + 0.12 * nearness)
    column = 1.0 / (1.0 + ((xs - sun_x * width) / spread) ** 2)
    glitter = np.clip((fine - 0.55) * 3.0, 0.0, 1.0) * column * light.glow
    paint += glitter[..., None] * _rgb(light.sun)
    canvas[top:] = paint


def _beach(canvas: _Array, rng: np.random.Generator, shore: float, light: _Daylight) -> None:
    """Sand below a wavy waterline: wet band, foam line, grainy dry sand."""
    height, width = canvas.shape[:2]
    swing = height * _uniform(rng, 0.02, 0.08)
    line = shore + swing * (_profile(rng, width, width * 0.3) - 0.5)
    top = max(int(line.min()) - 4, 0)
    rows = height - top
    ys, _ = _grid(rows, width)
    below = ys + top - line[None, :]
    sand = _jitter(rng, _pick(rng, _SAND), 0.04) * _rgb(light.tint)
    grain = _noise(rng, width, rows, 2.0, octaves=2, contrast=3.0)
    ripples = _noise(rng, width, rows, 16.0, octaves=3, stretch=(4.0, 1.0))
    paint = sand * (0.8 + 0.25 * grain + 0.2 * ripples)[..., None]
    wet = np.clip(1.0 - below / (height * 0.05), 0.0, 1.0)
    paint *= (1.0 - 0.35 * wet)[..., None]
    foam_noise = _noise(rng, width, rows, 5.0, octaves=3)
    foam = np.clip(1.0 - np.abs(below) / 3.0, 0.0, 1.0) * np.clip(
        (foam_noise - 0.3) * 3.0, 0.0, 1.0
    )
    alpha = np.clip(below + 0.5, 0.0, 1.0)
    _blend(canvas, alpha, paint, 0, top)
    _blend(canvas, foam, (0.95, 0.96, 0.96), 0, top)


def _rock(
    canvas: _Array,
    rng: np.random.Generator,
    x: float,
    y: float,
    nearness: float,
    light: _Daylight,
    light_x: float,
) -> None:
    """A boulder sitting at (x, y): a rounded, lumpy outline and a weathered, lit surface."""
    height = canvas.shape[0]
    size = height * (0.015 + 0.13 * nearness * nearness) * _uniform(rng, 0.6, 1.4)
    w, h = int(size * 2.4) + 4, int(size * 1.4) + 4
    corners = 24
    # Random reach at a few control angles, smoothed by averaging neighbours: lumps, not spikes.
    lumps = rng.uniform(0.7, 1.2, corners + 2)
    reach = (lumps[:-2] + lumps[1:-1] + lumps[2:]) / 3.0
    points = []
    for corner in range(corners):
        angle = math.pi + math.pi * corner / (corners - 1)  # the upper half
        radius = size * float(reach[corner])
        points.append((w / 2 + math.cos(angle) * radius, h - 2 + math.sin(angle) * radius * 1.1))
    mask = _shape(w, h, lambda d: d.polygon(points, fill=255), blur=0.7)
    ys, xs = _grid(h, w)
    stone = _noise(rng, w, h, max(size / 3.0, 2.0), octaves=5, contrast=2.0)
    lit = np.clip(0.7 + 0.45 * light_x * (xs / w - 0.5) - 0.5 * (ys / h - 0.5), 0.3, 1.3)
    shade = lit * _relief(stone, light_x, size * 0.6) * (0.75 + 0.5 * stone)
    colour = _jitter(rng, _pick(rng, _ROCKS), 0.05) * _rgb(light.tint)
    _cast_shadow(canvas, x - light_x * size * 0.6, y, size * 1.3, size * 0.25, light.shadow, 2.0)
    _blend(canvas, mask, colour * shade[..., None], int(x - w / 2), int(y - h + 2))


def _boat(canvas: _Array, rng: np.random.Generator, horizon: float, light_x: float) -> None:
    """A small sailing boat out on the water."""
    height, width = canvas.shape[:2]
    y = horizon + (height - horizon) * _uniform(rng, 0.03, 0.25)
    size = height * _uniform(rng, 0.03, 0.08)
    x = width * _uniform(rng, 0.1, 0.9)
    boat = _Sprites(width, height)
    boat.polygon(
        [
            (x - size, y - size * 0.25),
            (x + size, y - size * 0.25),
            (x + size * 0.7, y),
            (x - size * 0.7, y),
        ],
        (0.15, 0.12, 0.1),
    )
    boat.polygon(
        [
            (x, y - size * 0.3),
            (x, y - size * 2.2),
            (x + size * 0.9 * (1 if light_x > 0 else -1), y - size * 0.35),
        ],
        (0.95, 0.93, 0.88),
    )
    boat.lay_on(canvas)
