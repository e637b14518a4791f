"""Deterministic, photo-like synthetic scenes: extra distinct originals for duplicate evaluations.

The twenty-odd real photos in `samples.py` are too few to measure how often a duplicate detector
calls two *different* photos copies of each other. That needs many photos that are different
yet alike, the way two sunsets or two street views are. Every scene here is drawn from a seed,
and the seed decides the layout (horizon, how many objects, where, how big), the palette and
the time of day, so two seeds of one kind are two photographs of the same sort of subject,
never one photograph with fresh noise.

Detectors and perceptual hashes only behave as on photos if the scenes carry detail where a
camera would see it, so surfaces are textured with fractal noise (terrain, foliage, bark,
brick, wood grain, fabric) and objects are shaded and cast shadows. Each scene is then
finished like a photo: a soft lens, defocused backgrounds, vignetting and sensor noise.

Only arithmetic, square roots and Pillow's filters touch the pixels. numpy's vectorised
transcendental functions (sin, exp, power) take different SIMD paths on different CPUs, and a
difference in the last bit could change the PNG bytes; powers are written as products, and
angles are worked out with `math` on scalars.

The package, from the entry point down: this module picks a painter per kind; `outdoor`
(landscape, forest, seascape), `aerial`, `urban` (city, market) and `indoor` (still life,
interior) paint them; `trees`, `table_objects` and `materials` hold what several kinds share.
Beneath them lie the painting helpers: `light` (times of day, sky, haze), `texture` (noise,
relief), `shapes` (masks, shadows, sprites), `solids` (shaded balls, turned profiles, blocks)
and `canvas` (types, random picks, blending); `finish` turns a painted canvas into a photo.
Names with a leading underscore are the package's own: its modules share them, nothing else
should import them.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image

from .aerial import _aerial
from .canvas import _Array
from .finish import _finish
from .indoor import _interior, _still_life
from .outdoor import _forest, _landscape, _seascape
from .urban import _city, _market

__all__ = ["SCENE_KINDS", "synthetic_scene", "synthetic_scenes"]

SCENE_KINDS: tuple[str, ...] = (
    "landscape",
    "city",
    "still_life",
    "interior",
    "forest",
    "seascape",
    "market",
    "aerial",
)

# Mixed into every seed so that no other seeded code in the project shares these streams.
_SEED_SALT = 0x5CE7E5
_MIN_SIDE = 64

_PAINTERS: dict[str, Callable[[np.random.Generator, int, int], _Array]] = {
    "landscape": _landscape,
    "city": _city,
    "still_life": _still_life,
    "interior": _interior,
    "forest": _forest,
    "seascape": _seascape,
    "market": _market,
    "aerial": _aerial,
}


def synthetic_scene(kind: str, seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """One RGB scene of `kind` (one of `SCENE_KINDS`), the same pixels for the same arguments.

    Different seeds give different photographs of the same sort of subject. Raises
    `ValueError` for an unknown kind, a negative seed or a side under 64 pixels.
    """
    if kind not in SCENE_KINDS:
        raise ValueError(f"unknown scene kind {kind!r}; known: {', '.join(SCENE_KINDS)}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    width, height = size
    if min(width, height) < _MIN_SIDE:
        raise ValueError(f"scene sides must be at least {_MIN_SIDE} pixels, got {size}")
    # A SeedSequence from the kind's index and the seed: never hash(), which changes per process.
    rng = np.random.default_rng([_SEED_SALT, SCENE_KINDS.index(kind), seed])
    canvas = _PAINTERS[kind](rng, width, height)
    return _finish(canvas, rng)


def synthetic_scenes(count: int = 40, *, size: tuple[int, int] = (640, 480)) -> dict[str, bytes]:
    """Scene name -> PNG bytes for `count` scenes, kinds taken in turn.

    Names read "scene_landscape_03": kind, then that kind's seed. With `count` a multiple of
    `len(SCENE_KINDS)`, every kind gets the same number of seeds. Deterministic.
    """
    if count < 0:
        raise ValueError(f"count must be non-negative, got {count}")
    scenes: dict[str, bytes] = {}
    for number in range(count):
        kind = SCENE_KINDS[number % len(SCENE_KINDS)]
        seed = number // len(SCENE_KINDS)
        buffer = io.BytesIO()
        synthetic_scene(kind, seed, size).save(buffer, format="PNG", compress_level=1)
        scenes[f"scene_{kind}_{seed:02d}"] = buffer.getvalue()
    return scenes
