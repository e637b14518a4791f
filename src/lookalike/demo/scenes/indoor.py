"""Indoor scenes: the still life (objects on a table) and the interior (a furnished room)."""

from __future__ import annotations

import math

import numpy as np

from .canvas import _Array, _darken, _frac, _grid, _jitter, _lerp, _paste, _pick, _uniform
from .finish import _defocus
from .light import _DAYLIGHTS, _side_of_light, _sky
from .materials import _BOOKS, _CERAMIC, _FABRIC, _FRUIT, _WALLS, _WOOD_GRAIN, _WOODS
from .shapes import _cast_shadow, _Sprites
from .solids import _box, _lathe
from .table_objects import _table_object
from .texture import _noise
from .trees import _FOLIAGE

# --- still life ----------------------------------------------------------------------


def _still_life(rng: np.random.Generator, width: int, height: int) -> _Array:
    """A group of objects on a table against a backdrop, each shaded and casting a shadow."""
    light_x = _side_of_light(rng)
    table = height * _uniform(rng, 0.32, 0.6)
    front = height * _uniform(rng, 0.82, 1.1)
    canvas = _wall(rng, width, height, light_x, _jitter(rng, _pick(rng, _WALLS), 0.06))
    canvas = _defocus(canvas, _uniform(rng, 1.2, 3.0) * height / 480)
    _tabletop(canvas, rng, table, front, light_x)
    centre = width * _uniform(rng, 0.25, 0.75)
    spread = width * _uniform(rng, 0.12, 0.3)
    placements = []
    for _ in range(int(rng.integers(4, 9))):
        depth = _uniform(rng, 0.0, 1.0)
        base = table + (min(front, height) - table) * (0.1 + 0.75 * depth)
        size = height * _uniform(rng, 0.3, 0.6) * (0.7 + 0.5 * depth)
        x = min(max(centre + float(rng.normal(0.0, spread)), 0.04 * width), 0.96 * width)
        placements.append((base, x, size))
    for base, x, size in sorted(placements):
        _table_object(canvas, rng, x, base, size, light_x)
    return canvas


def _wall(
    rng: np.random.Generator, width: int, height: int, light_x: float, colour: _Array
) -> _Array:
    """A backdrop: painted plaster, a hanging drape, striped paper or panelling, lit from a side."""
    ys, xs = _grid(height, width)
    plaster = _noise(rng, width, height, 40.0, octaves=7)
    tone = 0.88 + 0.22 * (plaster - 0.5)
    style = int(rng.integers(4))
    if style == 1:  # a drape: vertical folds
        folds = _noise(
            rng, width, height, width / _uniform(rng, 6, 16), octaves=3, stretch=(1.0, 40.0)
        )
        tone = tone * (0.55 + 0.7 * folds)
    elif style == 2:  # striped wallpaper
        period = _uniform(rng, 12, 40) * height / 480
        tone = tone * np.where(_frac(xs / period) < _uniform(rng, 0.2, 0.6), 1.0, 0.85)
    elif style == 3:  # tongue-and-groove panelling
        period = _uniform(rng, 14, 36) * height / 480
        groove = _frac(xs / period)
        tone = tone * (0.8 + 0.2 * groove) * np.where(groove < 0.06, 0.6, 1.0)
    lit = 1.0 + 0.35 * light_x * (0.5 - xs / width) - 0.15 * ys / height
    return colour * (tone * lit)[..., None]


def _tabletop(
    canvas: _Array, rng: np.random.Generator, table: float, front: float, light_x: float
) -> None:
    """The table from `table` down to its front edge: wood grain with boards, or a checked cloth.

    Below the front edge, if it is in frame, lie the table's dark apron and the floor.
    """
    height, width = canvas.shape[:2]
    top = int(table)
    rows = height - top
    ys, xs = _grid(rows, width)
    depth = np.sqrt(ys + 4.0)  # board seams crowd together with distance
    if rng.random() < 0.65:
        dark, light = (_jitter(rng, colour, 0.04) for colour in _pick(rng, _WOODS))
        warp = _noise(rng, width, rows, width * 0.3, octaves=3)
        fibres = _noise(rng, width, rows, 8.0, octaves=4, stretch=(14.0, 1.0))
        rings = _frac(depth * 1.7 + warp * 3.0)
        grain = np.abs(rings - 0.5) * 2.0 * 0.55 + fibres * 0.45
        paint = _lerp(grain, dark, light)
        seams = _frac(depth / _uniform(rng, 1.5, 3.0)) < 0.05
        paint[np.broadcast_to(seams, (rows, width))] *= 0.55
    else:
        cloth = _jitter(rng, _pick(rng, _FRUIT + _FABRIC), 0.08)
        check = _uniform(rng, 10, 30) * height / 480
        band_x = _frac((xs - width / 2) / (check * (1 + ys / rows))) < 0.5
        band_y = _frac(depth * _uniform(rng, 0.8, 1.6)) < 0.5
        weave = _noise(rng, width, rows, 2.0, octaves=2)
        creases = _noise(rng, width, rows, 40.0, octaves=3)
        mix = (band_x.astype(np.float32) + band_y.astype(np.float32)) / 2.0
        tone = (0.85 + 0.25 * weave) * (0.8 + 0.4 * creases)
        paint = _lerp(mix, (0.95, 0.93, 0.9), cloth) * tone[..., None]
    lit = 1.0 + 0.2 * light_x * (0.5 - xs / width) - 0.15 * (1.0 - ys / rows)
    canvas[top:] = paint * lit[..., None]
    canvas[top : top + 2] *= 1.25  # the far edge catches the light
    edge = int(front)
    if edge < height:
        # Over the front edge the wood or cloth turns down, into the table's own shade.
        folds = _noise(rng, width, height - edge, width / 14, octaves=3, stretch=(1.0, 10.0))
        canvas[edge:] *= (0.25 + 0.35 * folds)[..., None]
        canvas[edge : edge + 2] = canvas[edge : edge + 2] * 0.5 + 0.3  # the rounded edge's sheen


# --- interior ------------------------------------------------------------------------


def _interior(rng: np.random.Generator, width: int, height: int) -> _Array:
    """A room: wall with a window and pictures, a floor in perspective, furniture along the wall."""
    light_x = _side_of_light(rng)
    floor = height * _uniform(rng, 0.58, 0.8)
    paint = _jitter(rng, _pick(rng, _WALLS), 0.06)
    canvas = _wall(rng, width, height, light_x, paint)
    ceiling = floor * _uniform(rng, 0.05, 0.16) if rng.random() < 0.6 else 0.0
    if ceiling >= 2:
        _ceiling(canvas, rng, ceiling)
    _room_floor(canvas, rng, floor)
    items = ["shelf", "sofa", "plant", "lamp", "sideboard", "window", "picture", "picture"]
    rng.shuffle(items)
    chosen = items[: int(rng.integers(3, 6))]
    slots = np.sort(rng.uniform(0.05, 0.85, len(chosen)))
    for item, slot in zip(chosen, slots, strict=True):
        _room_item(canvas, rng, item, float(slot) * width, floor, light_x)
    if rng.random() < 0.5:
        _side_wall(canvas, rng, ceiling, floor, light_x, paint)
    return canvas


def _ceiling(canvas: _Array, rng: np.random.Generator, ceiling: float) -> None:
    """A white ceiling above the back wall, darker towards the lens, with a cornice's shadow."""
    width = canvas.shape[1]
    rows = int(ceiling)
    ys, _ = _grid(rows, width)
    plaster = _noise(rng, width, rows, 6.0, octaves=3)
    tone = (0.6 + 0.3 * ys / rows) * (0.95 + 0.1 * plaster)
    canvas[:rows] = _jitter(rng, (0.9, 0.89, 0.86), 0.03) * tone[..., None]
    canvas[rows : rows + max(int(ceiling * 0.08), 2)] *= 0.7


def _room_floor(canvas: _Array, rng: np.random.Generator, floor: float) -> None:
    """Floorboards or tiles converging on a vanishing point above the floor line."""
    height, width = canvas.shape[:2]
    top = int(floor)
    rows = height - top
    ys, xs = _grid(rows, width)
    vanish_x = width * _uniform(rng, 0.3, 0.7)
    distance = ys + rows * 0.6
    across = (xs - vanish_x) / distance  # constant along each line to the vanishing point
    along = rows * 4.0 / distance  # grows with distance
    if rng.random() < 0.6:
        dark, light = (_jitter(rng, colour, 0.04) for colour in _pick(rng, _WOODS))
        planks = across * _uniform(rng, 4.0, 9.0)
        board = np.floor(planks)
        fibres = _noise(rng, width, rows, 6.0, octaves=3, stretch=(1.0, 6.0))
        tone = _frac(board * 0.37) * 0.5 + fibres * 0.5
        paint = _lerp(tone, dark, light)
        joints = (_frac(planks) < 0.05) | (_frac(along * 0.8 + board * 0.43) < 0.03)
    else:
        tile_a = _jitter(rng, (0.85, 0.83, 0.78), 0.05)
        tile_b = _jitter(rng, _pick(rng, _WALLS), 0.08)
        a, b = np.floor(across * 5.0), np.floor(along * 1.6)
        checker = (a + b - 2.0 * np.floor((a + b) / 2.0)).astype(np.float32)
        marble = _noise(rng, width, rows, 12.0, octaves=5)
        paint = _lerp(checker, tile_a, tile_b) * (0.85 + 0.3 * marble)[..., None]
        joints = (_frac(across * 5.0) < 0.03) | (_frac(along * 1.6) < 0.04)
    paint[joints] *= 0.5
    canvas[top:] = paint
    canvas[top : top + max(int(height / 100), 2)] *= 0.5  # skirting shadow


def _room_item(
    canvas: _Array, rng: np.random.Generator, item: str, x: float, floor: float, light_x: float
) -> None:
    """One piece of furniture or wall decoration, its left edge at `x`."""
    height, width = canvas.shape[:2]
    scale = height / 480
    base = floor + _uniform(rng, 2, 12) * scale
    if item == "shelf":
        _bookshelf(canvas, rng, x, base, light_x)
    elif item == "sofa":
        _sofa(canvas, rng, x, base, light_x)
    elif item == "plant":
        _plant(canvas, rng, x, base, light_x)
    elif item == "lamp":
        tall = height * _uniform(rng, 0.35, 0.55)
        _cast_shadow(canvas, x - light_x * 20 * scale, base, 20 * scale, 5 * scale, 0.5, 3.0)
        _lathe(
            canvas,
            rng,
            x,
            base - tall,
            np.full(int(tall), 2.0 * scale, np.float32),
            (0.2, 0.18, 0.15),
            light_x,
        )
        t = np.linspace(0.0, 1.0, int(tall * 0.25), dtype=np.float32)
        radii = (tall * (0.1 + 0.12 * t)).astype(np.float32)
        shade_colour = _jitter(rng, (0.92, 0.86, 0.7), 0.06)
        _lathe(
            canvas,
            rng,
            x,
            base - tall - len(t) * 0.6,
            radii,
            shade_colour,
            light_x,
            gloss=0.0,
            texture=0.3,
        )
    elif item == "sideboard":
        wide, tall = width * _uniform(rng, 0.2, 0.35), height * _uniform(rng, 0.18, 0.3)
        wood = _jitter(rng, _pick(rng, _WOODS)[1], 0.05)
        _cast_shadow(canvas, x + wide / 2, base, wide * 0.6, 6 * scale, 0.5, 4.0)
        _box(
            canvas,
            rng,
            (x, base - tall, x + wide, base),
            wood,
            light_x,
            cell=4.0,
            grain=_WOOD_GRAIN,
            depth=6 * scale,
        )
        doors = int(rng.integers(2, 4))
        for door in range(doors):
            left = x + wide * door / doors + 3 * scale
            _box(
                canvas,
                rng,
                (left, base - tall * 0.85, left + wide / doors - 6 * scale, base - tall * 0.1),
                wood * 0.85,
                light_x,
                cell=3.0,
                grain=_WOOD_GRAIN,
            )
        for _ in range(int(rng.integers(1, 4))):
            ox = x + _uniform(rng, 0.1, 0.9) * wide
            _table_object(canvas, rng, ox, base - tall, height * _uniform(rng, 0.1, 0.2), light_x)
    elif item == "window":
        _window(canvas, rng, x, floor, light_x)
    else:
        _picture(canvas, rng, x, floor, light_x)


def _bookshelf(
    canvas: _Array, rng: np.random.Generator, x: float, base: float, light_x: float
) -> None:
    """A bookcase: shelves packed with books of every height and colour."""
    height, width = canvas.shape[:2]
    scale = height / 480
    wide = width * _uniform(rng, 0.15, 0.3)
    tall = base * _uniform(rng, 0.55, 0.95)
    top = base - tall
    wood = _jitter(rng, _pick(rng, _WOODS)[0], 0.05)
    _box(
        canvas,
        rng,
        (x, top, x + wide, base),
        wood,
        light_x,
        cell=4.0,
        grain=_WOOD_GRAIN,
        depth=5 * scale,
    )
    shelves = int(rng.integers(3, 7))
    pitch = tall / shelves
    books = _Sprites(width, height)
    for shelf in range(shelves):
        floor_y = top + pitch * (shelf + 1) - 3 * scale
        _box(
            canvas,
            rng,
            (x + 3 * scale, floor_y - pitch + 6 * scale, x + wide - 3 * scale, floor_y),
            wood * 0.45,
            light_x,
        )
        cursor = x + 4 * scale
        while cursor < x + wide - 8 * scale:
            thick = _uniform(rng, 3, 9) * scale
            if rng.random() < 0.08:
                cursor += thick * 2  # a gap
                continue
            rise = (pitch - 8 * scale) * _uniform(rng, 0.6, 0.95)
            colour = _jitter(rng, _pick(rng, _BOOKS), 0.08)
            right = min(cursor + thick, x + wide - 4 * scale)
            if right - 1 <= cursor:
                break
            books.rectangle((cursor, floor_y - rise, right - 1, floor_y), colour)
            band = floor_y - rise * _uniform(rng, 0.6, 0.85)
            books.rectangle((cursor, band, right - 1, band + 2 * scale), colour * 0.6 + 0.3)
            cursor += thick
    books.lay_on(canvas, rng, cell=3.0, amount=0.25)


def _sofa(canvas: _Array, rng: np.random.Generator, x: float, base: float, light_x: float) -> None:
    """A sofa: back, seat, arms and cushions in one fabric, textured and shaded."""
    height, width = canvas.shape[:2]
    scale = height / 480
    wide = width * _uniform(rng, 0.3, 0.5)
    tall = height * _uniform(rng, 0.22, 0.32)
    fabric = _jitter(rng, _pick(rng, _FABRIC), 0.06)
    _cast_shadow(
        canvas, x + wide / 2 - light_x * 10 * scale, base, wide * 0.55, 8 * scale, 0.6, 5.0
    )
    shapes = _Sprites(width, height)
    arm = wide * 0.1
    radius = 10 * scale
    shapes.polygon(
        [(x, base - tall), (x + wide, base - tall), (x + wide, base), (x, base)], fabric * 0.85
    )
    cushions = int(rng.integers(2, 4))
    seat = base - tall * 0.42
    for cushion in range(cushions):
        left = x + arm + (wide - 2 * arm) * cushion / cushions
        right = x + arm + (wide - 2 * arm) * (cushion + 1) / cushions
        shapes.ellipse((left, base - tall * 0.95, right, base - tall * 0.35), fabric * 1.05)
        shapes.rectangle((left + 1, seat, right - 1, base - tall * 0.2), fabric * 1.12)
    shapes.ellipse((x - radius, base - tall * 0.65, x + arm, base - tall * 0.1), fabric)
    shapes.ellipse(
        (x + wide - arm, base - tall * 0.65, x + wide + radius, base - tall * 0.1), fabric
    )
    shapes.rectangle(
        (x + 2 * scale, base - 2 * scale, x + 8 * scale, base + 4 * scale), (0.1, 0.08, 0.06)
    )
    shapes.rectangle(
        (x + wide - 8 * scale, base - 2 * scale, x + wide - 2 * scale, base + 4 * scale),
        (0.1, 0.08, 0.06),
    )
    shapes.lay_on(canvas, rng, cell=2.5, amount=0.4, blur=0.6)


def _plant(canvas: _Array, rng: np.random.Generator, x: float, base: float, light_x: float) -> None:
    """A potted plant: a ceramic pot and a spray of leaves."""
    height, width = canvas.shape[:2]
    pot = height * _uniform(rng, 0.08, 0.14)
    t = np.linspace(0.0, 1.0, int(pot), dtype=np.float32)
    radii = (pot * (0.55 - 0.15 * t)).astype(np.float32)
    _cast_shadow(canvas, x - light_x * pot * 0.5, base, pot * 0.9, pot * 0.15, 0.5, 3.0)
    leaves = _Sprites(width, height)
    greens = _pick(rng, (_FOLIAGE[0], _FOLIAGE[2], _FOLIAGE[3]))
    reach = height * _uniform(rng, 0.15, 0.35)
    for _ in range(int(rng.integers(9, 22))):
        angle = _uniform(rng, -2.6, -0.5)
        length = reach * _uniform(rng, 0.5, 1.0)
        leaf_width = length * _uniform(rng, 0.1, 0.22)
        tip = (x + math.cos(angle) * length, base - pot + math.sin(angle) * length)
        side = (-math.sin(angle) * leaf_width, math.cos(angle) * leaf_width)
        mid = (x + math.cos(angle) * length * 0.5, base - pot + math.sin(angle) * length * 0.5)
        outline = [
            (x, base - pot),
            (mid[0] + side[0], mid[1] + side[1]),
            tip,
            (mid[0] - side[0], mid[1] - side[1]),
        ]
        leaves.polygon(outline, _jitter(rng, greens[int(rng.integers(1, 3))], 0.06))
    leaves.lay_on(canvas, rng, cell=5.0, amount=0.6, blur=0.5)
    _lathe(canvas, rng, x, base - pot, radii, _jitter(rng, _pick(rng, _CERAMIC), 0.05), light_x)


def _window(
    canvas: _Array, rng: np.random.Generator, x: float, floor: float, light_x: float
) -> None:
    """A window onto a blurred garden, with its frame, glazing bars and a patch of sunlight."""
    height, width = canvas.shape[:2]
    scale = height / 480
    wide = width * _uniform(rng, 0.15, 0.28)
    top = floor * _uniform(rng, 0.08, 0.3)
    bottom = floor * _uniform(rng, 0.6, 0.8)
    w, h = int(wide), int(bottom - top)
    light = _pick(rng, (_DAYLIGHTS[0], _DAYLIGHTS[2], _DAYLIGHTS[4]))
    outside = _sky(rng, w, h, h * _uniform(rng, 0.4, 0.8), light, 0.5)
    greenery = _noise(rng, w, h, 14.0 * scale, octaves=4)
    ys, _ = _grid(h, w)
    trees = np.clip((greenery - 1.1 + ys / h * _uniform(rng, 0.9, 1.5)) * 5.0, 0.0, 1.0)
    green = _lerp(greenery, (0.08, 0.16, 0.06), (0.35, 0.48, 0.22))
    outside += trees[..., None] * (green - outside)
    outside = _defocus(outside, 3.5 * scale) * 1.15
    _paste(canvas, outside, int(x), int(top))
    frame = _Sprites(width, height)
    bar = max(int(4 * scale), 2)
    paint = _jitter(rng, (0.92, 0.92, 0.9), 0.05) if rng.random() < 0.6 else _pick(rng, _WOODS)[1]
    frame.line([(x, top), (x + w, top), (x + w, top + h), (x, top + h), (x, top)], paint, bar * 2)
    columns, rows = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    for column in range(1, columns + 1):
        frame.line(
            [(x + w * column / (columns + 1), top), (x + w * column / (columns + 1), top + h)],
            paint,
            bar,
        )
    for row in range(1, rows + 1):
        frame.line(
            [(x, top + h * row / (rows + 1)), (x + w, top + h * row / (rows + 1))], paint, bar
        )
    frame.lay_on(canvas, rng, cell=3.0, amount=0.2)
    # Sunlight through the window lands on the floor, thrown away from the light.
    patch = _Sprites(width, height)
    shift = -light_x * h * 0.6
    landing = floor + (height - floor) * 0.15
    patch.polygon(
        [(x, landing), (x + w, landing), (x + w + shift, height), (x + shift, height)], (1, 1, 1)
    )
    alpha, left, top = patch.coverage(blur=6 * scale)
    _darken(canvas, alpha, -0.3, left, top)  # a negative shadow: brightens


def _picture(
    canvas: _Array, rng: np.random.Generator, x: float, floor: float, light_x: float
) -> None:
    """A framed picture on the wall: a tiny painted landscape in a moulded frame."""
    height = canvas.shape[0]
    scale = height / 480
    w = int(canvas.shape[1] * _uniform(rng, 0.08, 0.18))
    h = int(w * _uniform(rng, 0.7, 1.4))
    top = int(floor * _uniform(rng, 0.1, 0.45))
    border = max(int(_uniform(rng, 3, 8) * scale), 2)
    frame = _jitter(
        rng,
        _pick(rng, ((0.7, 0.55, 0.2), (0.1, 0.1, 0.1), (0.45, 0.3, 0.18), (0.9, 0.9, 0.88))),
        0.05,
    )
    _cast_shadow(
        canvas,
        x + w / 2 - light_x * 5 * scale,
        top + h / 2 + 4 * scale,
        w * 0.55,
        h * 0.55,
        0.35,
        4 * scale,
    )
    _box(canvas, rng, (x, top, x + w, top + h), frame, light_x, cell=2.0)
    inner_w, inner_h = w - 2 * border, h - 2 * border
    if inner_w < 4 or inner_h < 4:
        return
    art = _sky(
        rng, inner_w, inner_h, inner_h * _uniform(rng, 0.3, 0.7), _pick(rng, _DAYLIGHTS), 0.5
    )
    land = _noise(rng, inner_w, inner_h, inner_w / 3, octaves=4)
    ys, _ = _grid(inner_h, inner_w)
    hills = np.clip((land - 1.2 + ys / inner_h * 1.2) * 6.0, 0.0, 1.0)
    art += hills[..., None] * (_lerp(land, (0.15, 0.25, 0.1), (0.55, 0.5, 0.3)) - art)
    strokes = _noise(rng, inner_w, inner_h, 3.0, octaves=2)
    _paste(canvas, art * (0.85 + 0.3 * strokes)[..., None], int(x) + border, top + border)


def _side_wall(
    canvas: _Array,
    rng: np.random.Generator,
    ceiling: float,
    floor: float,
    light_x: float,
    paint: _Array,
) -> None:
    """A side wall in perspective, in the shade, hiding one edge of the room."""
    height, width = canvas.shape[:2]
    corner = width * _uniform(rng, 0.06, 0.18)
    on_left = light_x > 0
    near = 0.0 if on_left else float(width)
    far = corner if on_left else width - corner
    top = ceiling if ceiling else floor * 0.1
    wall = _Sprites(width, height)
    wall.polygon([(near, -top), (far, top), (far, floor), (near, height * 1.15)], paint * 0.62)
    wall.lay_on(canvas, rng, cell=40.0, amount=0.2)
    corner_line = _Sprites(width, height)
    corner_line.line([(far, top), (far, floor)], paint * 0.45, max(int(height / 240), 1))
    corner_line.lay_on(canvas, blur=1.0)
