"""Urban scenes: the city street and the street market, whose backdrop is the city's buildings."""

from __future__ import annotations

import itertools

import numpy as np
from PIL import ImageDraw

from .canvas import (
    _RGB,
    _Array,
    _blend,
    _darken,
    _frac,
    _grid,
    _jitter,
    _lerp,
    _paste,
    _pick,
    _rgb,
    _uniform,
)
from .finish import _defocus
from .light import _DAYLIGHTS, _NIGHT, _Daylight, _side_of_light, _sky
from .materials import _FABRIC, _WOOD_GRAIN, _WOODS
from .shapes import _blur, _cast_shadow, _shape, _soft_rectangle, _Sprites
from .solids import _ball, _box, _lathe, _sphere
from .texture import _noise

# --- city ----------------------------------------------------------------------------


_FACADES: tuple[_RGB, ...] = (
    (0.62, 0.32, 0.22),  # red brick
    (0.72, 0.68, 0.60),  # limestone
    (0.50, 0.52, 0.55),  # concrete
    (0.82, 0.76, 0.58),  # sandstone
    (0.30, 0.38, 0.46),  # blue glass
    (0.86, 0.84, 0.80),  # white render
    (0.55, 0.42, 0.34),  # brown brick
)


def _city(rng: np.random.Generator, width: int, height: int) -> _Array:
    """A street: hazy towers behind, a row of textured buildings with windows, road, cars."""
    light = _pick(rng, (*_DAYLIGHTS, _NIGHT))
    night = light is _NIGHT
    street = height * _uniform(rng, 0.7, 0.9)
    light_x = _side_of_light(rng)
    canvas = _sky(rng, width, height, street, light, 0.5 - 0.4 * light_x)
    if night:
        _stars(canvas, rng, street)
    _skyline(canvas, rng, street, light, light_x, near=False, night=night)
    canvas = _defocus(canvas, 1.2 * height / 480)
    _skyline(canvas, rng, street, light, light_x, near=True, night=night)
    _road(canvas, rng, street, light, night)
    for _ in range(int(rng.integers(0, 5))):
        _car(canvas, rng, street, light, light_x)
    for _ in range(int(rng.integers(0, 4))):
        _street_lamp(canvas, rng, street, light_x, night)
    return canvas


def _stars(canvas: _Array, rng: np.random.Generator, horizon: float) -> None:
    """A sprinkle of stars in the upper night sky."""
    width = canvas.shape[1]
    count = int(rng.integers(40, 160))
    xs = rng.integers(0, width, count)
    ys = rng.integers(0, max(int(horizon * 0.7), 1), count)
    canvas[ys, xs] += rng.uniform(0.2, 0.8, count).astype(np.float32)[:, None]


def _skyline(
    canvas: _Array,
    rng: np.random.Generator,
    street: float,
    light: _Daylight,
    light_x: float,
    *,
    near: bool,
    night: bool,
) -> None:
    """A row of buildings on the street line; the far row is lower, narrower and hazier."""
    height, width = canvas.shape[:2]
    x = -_uniform(rng, 0.0, 0.1) * width
    while x < width:
        span = width * (_uniform(rng, 0.12, 0.32) if near else _uniform(rng, 0.05, 0.14))
        rise = height * (_uniform(rng, 0.35, 0.95) if near else _uniform(rng, 0.25, 0.6))
        top = street - rise
        _building(canvas, rng, (x, top, x + span, street + 1), light, light_x, near, night)
        gap = _uniform(rng, 0.0, 0.08) * width if near and rng.random() < 0.4 else 0.0
        x += span + gap


def _building(
    canvas: _Array,
    rng: np.random.Generator,
    box: tuple[float, float, float, float],
    light: _Daylight,
    light_x: float,
    near: bool,
    night: bool,
) -> None:
    """One facade: material texture, a grid of windows (some lit), ledges, a shaded side."""
    left, top, right, bottom = (int(value) for value in box)
    width, height = right - left, bottom - top
    if width < 4 or height < 4:
        return
    scale = canvas.shape[0] / 480
    facade = _jitter(rng, _pick(rng, _FACADES), 0.06) * _rgb(light.tint)
    _, xs = _grid(height, width)
    grime = _noise(rng, width, height, 12.0 * scale, octaves=4, stretch=(1.0, 3.0))
    paint = facade * (0.8 + 0.4 * grime)[..., None]
    if rng.random() < 0.4:
        _brick_courses(paint, scale)
    floor = _uniform(rng, 14, 30) * scale * (1.0 if near else 0.6)
    bay = _uniform(rng, 10, 26) * scale * (1.0 if near else 0.6)
    _windows(paint, rng, floor, bay, light, night)
    # The side away from the light is in shade: a darker strip, as on a corner building.
    shade = np.clip((xs / width - 0.5) * light_x * -6.0 - 2.2, 0.0, 1.0)
    paint *= (1.0 - 0.35 * shade)[..., None]
    paint[: max(int(3 * scale), 1)] *= 0.6  # parapet shadow line
    if not near:
        paint += 0.45 * (_rgb(light.horizon) - paint)
    _paste(canvas, paint, left, top)


def _brick_courses(paint: _Array, scale: float) -> None:
    """Mortar lines of a running bond, drawn into the facade in place."""
    height, width = paint.shape[:2]
    course = 4.0 * scale
    ys, xs = _grid(height, width)
    row = np.floor(ys / course)
    offset = (row - 2.0 * np.floor(row / 2.0)) * 0.5
    mortar = (_frac(ys / course) < 0.22) | (_frac(xs / (course * 2.4) + offset) < 0.1)
    paint[mortar] = paint[mortar] * 0.7 + 0.18


def _windows(
    paint: _Array,
    rng: np.random.Generator,
    floor: float,
    bay: float,
    light: _Daylight,
    night: bool,
) -> None:
    """A grid of windows: sky-reflecting glass or dark rooms, lit at night, with light sills.

    The grid is a set of window rows crossed with a set of window columns, so it is worked
    out along one row and one column and only the window panes are painted.
    """
    height, width = paint.shape[:2]
    fill_x, fill_y = _uniform(rng, 0.35, 0.75), _uniform(rng, 0.4, 0.7)
    u = (np.arange(width, dtype=np.float32) - bay * 0.5) / bay
    v = (np.arange(height, dtype=np.float32) - floor * 0.8) / floor
    on_facade_x = (u >= 0) & (np.arange(width) < width - bay * 0.4)
    on_facade_y = (v >= 0) & (np.arange(height) < height - floor * 0.9)
    columns, rows = int(width / bay) + 2, int(height / floor) + 2
    lit = rng.random((rows, columns)) < (0.55 if night else 0.08)
    tone = rng.uniform(0.0, 1.0, (rows, columns)).astype(np.float32)
    pane_x = np.flatnonzero(on_facade_x & (_frac(u) < fill_x))
    pane_y = np.flatnonzero(on_facade_y & (_frac(v) < fill_y))
    if len(pane_x) and len(pane_y):
        row = np.clip(np.floor(v[pane_y]), 0, rows - 1).astype(np.intp)
        column = np.clip(np.floor(u[pane_x]), 0, columns - 1).astype(np.intp)
        cell_tone = tone[row[:, None], column[None, :]]
        reflection = _lerp(_frac(v[pane_y]) / fill_y, light.zenith, light.horizon)
        glass = reflection[:, None, :] * (0.35 + 0.35 * cell_tone)[..., None]
        # Lit rooms at night; by day the odd pane catches the sun instead.
        warm, pale = ((1.0, 0.72, 0.35), (1.0, 0.92, 0.7)) if night else (light.horizon, light.sun)
        glow = _lerp(cell_tone, warm, pale)
        lit_panes = lit[row[:, None], column[None, :]]
        paint[np.ix_(pane_y, pane_x)] = np.where(lit_panes[..., None], glow, glass)
    sill_x = np.flatnonzero(on_facade_x & (_frac(u) < fill_x + 0.05))
    sill_y = np.flatnonzero(on_facade_y & (_frac(v) >= fill_y) & (_frac(v) < fill_y + 0.08))
    sills = np.ix_(sill_y, sill_x)
    paint[sills] = np.clip(paint[sills] * 1.35 + 0.08, 0.0, 1.0)


def _road(
    canvas: _Array, rng: np.random.Generator, street: float, light: _Daylight, night: bool
) -> None:
    """Pavement, kerb and asphalt with lane markings below the street line."""
    height, width = canvas.shape[:2]
    top = int(street)
    rows = height - top
    if rows <= 0:
        return
    scale = height / 480
    ys, xs = _grid(rows, width)
    grit = _noise(rng, width, rows, 3.0 * scale, octaves=3, contrast=3.0)
    stains = _noise(rng, width, rows, 40.0 * scale, octaves=3)
    tint = _rgb(light.tint)
    asphalt = _jitter(rng, (0.30, 0.30, 0.31), 0.05) * tint
    paint = asphalt * (0.7 + 0.35 * grit + 0.3 * (stains - 0.5))[..., None]
    kerb = rows * _uniform(rng, 0.12, 0.3)
    slab = 16.0 * scale
    pavement = _jitter(rng, (0.62, 0.60, 0.56), 0.05) * tint
    joints = (_frac(xs / (slab * 1.6) + 0.3 * np.floor(ys / slab)) < 0.06) | (
        _frac(ys / slab) < 0.08
    )
    walk = pavement * (0.85 + 0.25 * grit)[..., None] * np.where(joints, 0.75, 1.0)[..., None]
    on_walk = (ys < kerb)[..., None]
    paint = np.where(on_walk, walk, paint)
    kerb_line = (ys >= kerb) & (ys < kerb + 2.5 * scale)
    paint[np.broadcast_to(kerb_line, (rows, width))] *= 0.45
    lane = kerb + (rows - kerb) * _uniform(rng, 0.45, 0.7)
    dash = (np.abs(ys - lane) < 2.0 * scale) & (
        _frac(xs / (60 * scale) + _uniform(rng, 0, 1)) < 0.5
    )
    paint[dash] = paint[dash] * 0.3 + 0.62
    if night:
        paint *= 0.6
    canvas[top:] = paint


_CAR_PAINT: tuple[_RGB, ...] = (
    (0.7, 0.08, 0.08), (0.1, 0.15, 0.35), (0.85, 0.85, 0.86), (0.08, 0.08, 0.09),
    (0.45, 0.47, 0.5), (0.12, 0.32, 0.2), (0.9, 0.75, 0.2),
)  # fmt: skip


def _car(
    canvas: _Array, rng: np.random.Generator, street: float, light: _Daylight, light_x: float
) -> None:
    """A car in side view on the road: shadow, body, cabin glass, wheels."""
    height, width = canvas.shape[:2]
    base = street + (height - street) * _uniform(rng, 0.55, 0.95)
    length = width * _uniform(rng, 0.16, 0.26) * (base / height)
    tall = length * 0.32
    x = _uniform(rng, -0.1, 1.0) * width
    colour = _jitter(rng, _pick(rng, _CAR_PAINT), 0.04) * _rgb(light.tint)
    _cast_shadow(canvas, x + length / 2, base, length * 0.55, tall * 0.12, 0.6, 2.0)
    body_top = base - tall * 0.65
    _box(canvas, rng, (x, body_top, x + length, base - tall * 0.12), colour, light_x, texture=0.1)
    cabin = _Sprites(width, height)
    cabin.polygon(
        [
            (x + length * 0.22, body_top),
            (x + length * 0.32, base - tall),
            (x + length * 0.68, base - tall),
            (x + length * 0.82, body_top),
        ],
        colour,
    )
    cabin.lay_on(canvas)
    glass = _Sprites(width, height)
    glass.polygon(
        [
            (x + length * 0.27, body_top - 1),
            (x + length * 0.34, base - tall * 0.93),
            (x + length * 0.66, base - tall * 0.93),
            (x + length * 0.76, body_top - 1),
        ],
        _rgb(light.zenith) * 0.45 + 0.05,
    )
    glass.lay_on(canvas)
    for wheel_x in (x + length * 0.2, x + length * 0.8):
        _sphere(
            canvas,
            rng,
            wheel_x,
            base - tall * 0.16,
            tall * 0.18,
            (0.08, 0.08, 0.08),
            light_x,
            gloss=0.1,
        )
        _sphere(
            canvas,
            rng,
            wheel_x,
            base - tall * 0.16,
            tall * 0.08,
            (0.6, 0.6, 0.62),
            light_x,
            gloss=0.3,
        )


def _street_lamp(
    canvas: _Array, rng: np.random.Generator, street: float, light_x: float, night: bool
) -> None:
    """A lamp post on the pavement, its lamp glowing at night."""
    height, width = canvas.shape[:2]
    x = _uniform(rng, 0.03, 0.97) * width
    base = street + (height - street) * _uniform(rng, 0.05, 0.2)
    tall = height * _uniform(rng, 0.3, 0.5)
    radii = np.full(int(tall), 1.6 * height / 480, np.float32)
    _lathe(canvas, rng, x, base - tall, radii, (0.15, 0.16, 0.17), light_x, gloss=0.2)
    head = tall * 0.05
    colour = (1.0, 0.9, 0.65) if night else (0.25, 0.26, 0.27)
    _sphere(canvas, rng, x, base - tall, head, colour, light_x, gloss=0.4)


# --- market --------------------------------------------------------------------------


_PRODUCE: tuple[_RGB, ...] = (
    (0.95, 0.5, 0.05), (0.8, 0.1, 0.08), (0.95, 0.85, 0.2), (0.4, 0.65, 0.15),
    (0.3, 0.08, 0.25), (0.6, 0.45, 0.28), (0.7, 0.2, 0.15), (0.2, 0.45, 0.12),
)  # fmt: skip
_AWNINGS: tuple[_RGB, ...] = (
    (0.75, 0.1, 0.1), (0.1, 0.35, 0.2), (0.15, 0.3, 0.6), (0.9, 0.7, 0.1), (0.4, 0.2, 0.4),
)  # fmt: skip


def _market(rng: np.random.Generator, width: int, height: int) -> _Array:
    """A street market: stalls with striped awnings and crates of produce, houses behind."""
    light = _pick(rng, _DAYLIGHTS)
    light_x = _side_of_light(rng)
    ground = height * _uniform(rng, 0.74, 0.9)
    canvas = _sky(rng, width, height, ground, light, 0.5)
    _skyline(canvas, rng, ground, light, light_x, near=True, night=False)
    canvas = _defocus(canvas, _uniform(rng, 1.5, 3.0) * height / 480)
    _cobbles(canvas, rng, ground, light)
    stalls = int(rng.integers(1, 5))
    edges = np.sort(rng.uniform(0.15, 0.85, stalls - 1))
    bounds = [_uniform(rng, -0.1, 0.1), *[float(edge) for edge in edges], _uniform(rng, 0.9, 1.1)]
    for left, right in itertools.pairwise(bounds):
        if right - left > 0.12:
            _stall(canvas, rng, left * width + 4, right * width - 4, ground, light, light_x)
    for _ in range(int(rng.integers(0, 4))):
        _shopper(canvas, rng, ground, light, light_x)
    return canvas


def _cobbles(canvas: _Array, rng: np.random.Generator, ground: float, light: _Daylight) -> None:
    """A cobbled square: rounded stones in staggered rows, smaller with distance."""
    height, width = canvas.shape[:2]
    top = int(ground)
    rows = height - top
    ys, xs = _grid(rows, width)
    distance = ys + rows * 0.5
    course = np.sqrt(distance) * _uniform(rng, 1.5, 2.5)
    row = np.floor(course)
    across = xs / (distance * 0.12) + row * 0.5
    du, dv = _frac(across) - 0.5, _frac(course) - 0.5
    rounded = 1.0 - np.clip((du * du * du * du + dv * dv * dv * dv) * 20.0, 0.0, 1.0)
    tones = rng.uniform(0.7, 1.15, 64).astype(np.float32)
    tone = tones[(np.floor(across).astype(np.intp) * 7 + row.astype(np.intp) * 13) % 64]
    stone = _jitter(rng, (0.5, 0.48, 0.45), 0.06) * _rgb(light.tint)
    grit = _noise(rng, width, rows, 2.5, octaves=2)
    canvas[top:] = stone * (tone * (0.35 + 0.65 * rounded) * (0.85 + 0.3 * grit))[..., None]


def _stall(
    canvas: _Array,
    rng: np.random.Generator,
    left: float,
    right: float,
    ground: float,
    light: _Daylight,
    light_x: float,
) -> None:
    """One stall: poles, a scalloped striped awning and its shade, a counter of crates."""
    height = canvas.shape[0]
    scale = height / 480
    awning_top = height * _uniform(rng, 0.02, 0.3)
    awning_bottom = awning_top + height * _uniform(rng, 0.07, 0.15)
    counter = ground - height * _uniform(rng, 0.18, 0.3)
    for pole_x in (left + 4 * scale, right - 4 * scale):
        radii = np.full(int(ground + 4 - awning_top), 2.5 * scale, np.float32)
        _lathe(canvas, rng, pole_x, awning_top, radii, (0.35, 0.3, 0.25), light_x)
    # The awning's shade falls on everything beneath it.
    soft = 10 * scale
    shade = _soft_rectangle(right - left, ground - awning_bottom, soft)
    _darken(canvas, shade, 0.35, int(left - soft), int(awning_bottom - soft))
    _counter(canvas, rng, left, right, counter, ground, light_x)
    _awning(canvas, rng, (left, awning_top, right, awning_bottom), light)


def _awning(
    canvas: _Array,
    rng: np.random.Generator,
    box: tuple[float, float, float, float],
    light: _Daylight,
) -> None:
    """A striped canvas awning with a scalloped hem, brighter at its top, with folds."""
    left, top, right, bottom = box
    height = canvas.shape[0]
    first = _jitter(rng, _pick(rng, _AWNINGS), 0.05)
    second = _jitter(rng, (0.95, 0.94, 0.9), 0.04) if rng.random() < 0.7 else first * 0.55
    stripe = _uniform(rng, 10, 28) * height / 480
    x0, y0 = int(left) - 8, int(top)
    w, h = int(right - left) + 16, int(bottom - top + stripe) + 2

    def draw(mask: ImageDraw.ImageDraw) -> None:
        mask.rectangle((2, 0, w - 2, bottom - y0), fill=255)
        x = 2.0
        while x < w - 2:
            mask.ellipse(
                (x, bottom - y0 - stripe * 0.5, x + stripe, bottom - y0 + stripe * 0.5), fill=255
            )
            x += stripe

    alpha = _shape(w, h, draw)
    ys, xs = _grid(h, w)
    stripes = (_frac((xs + x0 - left) / (2 * stripe)) < 0.5).astype(np.float32)
    weave = _noise(rng, w, h, 2.0, octaves=2)
    folds = _noise(rng, w, h, stripe, octaves=2, stretch=(1.0, 6.0))
    fall = np.clip(ys / max(bottom - top, 1.0), 0.0, 1.2)
    tone = (0.75 + 0.35 * (1.0 - fall) + 0.3 * (folds - 0.5)) * (0.9 + 0.2 * weave)
    paint = _lerp(stripes, second, first) * tone[..., None] * _rgb(light.tint)
    _blend(canvas, alpha, paint, x0, y0)


def _counter(
    canvas: _Array,
    rng: np.random.Generator,
    left: float,
    right: float,
    counter: float,
    ground: float,
    light_x: float,
) -> None:
    """A trestle counter under a cloth, with tiers of wooden crates heaped with produce."""
    height, width = canvas.shape[:2]
    scale = height / 480
    cloth = _jitter(rng, _pick(rng, _FABRIC), 0.08)
    w, h = int(right - left), int(ground - counter)
    folds = _noise(rng, w, h, _uniform(rng, 8, 20) * scale, octaves=3, stretch=(1.0, 8.0))
    weave = _noise(rng, w, h, 1.5, octaves=2)
    ys, _ = _grid(h, w)
    skirt = cloth * ((0.55 + 0.6 * folds) * (0.9 + 0.2 * weave) * (1.0 - 0.3 * ys / h))[..., None]
    _paste(canvas, skirt, int(left), int(counter))
    wood = _jitter(rng, _pick(rng, _WOODS)[1], 0.05)
    crate_height = height * _uniform(rng, 0.05, 0.08)
    tiers = int(rng.integers(1, 4))
    for tier in reversed(range(tiers)):
        crate_base = counter - tier * crate_height * 0.9 + 4 * scale
        x = left + _uniform(rng, 2, 12) * scale
        while x < right - 20 * scale:
            crate_width = min(_uniform(rng, 0.07, 0.14) * width, right - x)
            _crate(
                canvas,
                rng,
                (x, crate_base - crate_height, x + crate_width, crate_base),
                wood,
                light_x,
            )
            x += crate_width + _uniform(rng, 2, 8) * scale


def _crate(
    canvas: _Array,
    rng: np.random.Generator,
    box: tuple[float, float, float, float],
    wood: _Array,
    light_x: float,
) -> None:
    """A crate: produce heaped above its rim, then its slatted front, sometimes a price card."""
    left, rim, right, base = box
    wide, tall = right - left, base - rim
    produce = _jitter(rng, _pick(rng, _PRODUCE), 0.05)
    radius = _uniform(rng, 0.16, 0.3) * tall
    # A few balls reused for the whole heap, each laid down a little lighter or darker.
    balls = [
        _ball(rng, radius * _uniform(rng, 0.85, 1.1), produce, light_x, gloss=0.35)
        for _ in range(3)
    ]
    count = max(int(wide / (radius * 1.8)), 1)
    for layer in range(3):
        for item in range(count + 1 - layer):
            alpha, paint = balls[int(rng.integers(3))]
            cx = left + radius * (1 + layer * 0.9) + item * (wide - 2 * radius) / count
            cy = rim - layer * radius * 1.1 + _uniform(rng, -0.25, 0.25) * radius
            size = alpha.shape[0]
            _blend(
                canvas,
                alpha,
                paint * _uniform(rng, 0.8, 1.1),
                int(cx - size / 2),
                int(cy - size / 2),
            )
    slats = int(rng.integers(2, 4))
    for slat in range(slats):
        top = rim + tall * slat / slats
        tone = wood * _uniform(rng, 0.8, 1.05)
        _box(
            canvas,
            rng,
            (left, top, right, top + tall / slats - 2),
            tone,
            light_x,
            cell=2.0,
            texture=0.4,
            grain=_WOOD_GRAIN,
        )
    if rng.random() < 0.35:
        card = _Sprites(canvas.shape[1], canvas.shape[0])
        cx, cy = left + wide * _uniform(rng, 0.2, 0.7), rim - tall * 0.2
        card.rectangle((cx, cy, cx + tall * 0.6, cy + tall * 0.4), (0.95, 0.95, 0.92))
        card.line(
            [(cx + 2, cy + tall * 0.15), (cx + tall * 0.5, cy + tall * 0.15)], (0.1, 0.1, 0.1), 2
        )
        card.line(
            [(cx + 2, cy + tall * 0.28), (cx + tall * 0.35, cy + tall * 0.28)], (0.1, 0.1, 0.1), 2
        )
        card.lay_on(canvas)


_SKIN: tuple[_RGB, ...] = (
    (0.88, 0.7, 0.58),
    (0.62, 0.44, 0.32),
    (0.38, 0.25, 0.18),
    (0.8, 0.62, 0.48),
)


def _shopper(
    canvas: _Array, rng: np.random.Generator, ground: float, light: _Daylight, light_x: float
) -> None:
    """A passer-by in the foreground, close to the lens and so a little out of focus."""
    height = canvas.shape[0]
    feet = ground + (height - ground) * _uniform(rng, 0.3, 1.4)
    tall = height * _uniform(rng, 0.55, 0.8) * feet / height
    blur = _uniform(rng, 1.0, 3.0) * height / 480
    # Drawn on a patch of its own, premultiplied by coverage, so that it can be defocused alone.
    margin = int(3 * blur) + 2
    w, h = int(tall * 0.4) + 2 * margin, int(tall) + 2 * margin
    person = np.zeros((h, w, 3), np.float32)
    x, top, feet_y = w / 2, margin + tall * 0.13, margin + tall
    clothes = _jitter(rng, _pick(rng, _FABRIC + _AWNINGS), 0.08) * _rgb(light.tint)
    t = np.linspace(0.0, 1.0, int(tall * 0.45), dtype=np.float32)
    shoulders = np.sqrt(np.clip(t * 6.0, 0.0, 1.0))
    radii = (tall * (0.07 + 0.07 * shoulders - 0.02 * t)).astype(np.float32)
    legs = np.full(int(tall * 0.45), tall * 0.035, np.float32)
    trousers = _jitter(rng, (0.15, 0.17, 0.22), 0.06)
    for offset in (-0.04, 0.04):
        _lathe(
            person, rng, x + offset * tall, feet_y - len(legs), legs, trousers, light_x, gloss=0.0
        )
    _lathe(person, rng, x, top, radii, clothes, light_x, gloss=0.05, texture=0.3, grain=(1.0, 3.0))
    skin = _jitter(rng, _pick(rng, _SKIN), 0.04)
    _sphere(person, rng, x, top - tall * 0.06, tall * 0.065, skin, light_x, gloss=0.15)
    cover = np.any(person > 0, axis=-1).astype(np.float32)
    soft = _defocus(person, blur)
    alpha = _blur(cover, blur)
    paint = soft / np.maximum(alpha, 1e-3)[..., None]
    _blend(
        canvas,
        alpha,
        paint,
        int(_uniform(rng, 0.0, 1.0) * canvas.shape[1] - w / 2),
        int(feet - feet_y),
    )
