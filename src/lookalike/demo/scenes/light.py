"""The light: times of day, where the key light comes from, the sky, the haze of distance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .canvas import _RGB, _Array, _Colour, _grid, _lerp, _rgb, _uniform
from .texture import _noise


@dataclass(frozen=True)
class _Daylight:
    """The light of one time of day: the sky's colours and what the light does to the ground."""

    zenith: _RGB
    horizon: _RGB
    sun: _RGB
    glow: float  # how brightly the sky glows around the sun
    cloud_lit: _RGB
    cloud_shade: _RGB
    tint: _RGB  # multiplies the colour of everything the light falls on
    shadow: float  # how dark cast shadows are: deep in sunshine, faint under cloud


_DAYLIGHTS: tuple[_Daylight, ...] = (
    _Daylight(  # clear midday
        (0.20, 0.40, 0.78), (0.66, 0.79, 0.93), (1.0, 0.98, 0.90), 0.30,
        (0.98, 0.98, 0.98), (0.60, 0.64, 0.72), (1.0, 1.0, 0.97), 0.55,
    ),
    _Daylight(  # golden hour
        (0.26, 0.40, 0.66), (1.0, 0.76, 0.48), (1.0, 0.85, 0.55), 0.75,
        (1.0, 0.88, 0.70), (0.55, 0.46, 0.52), (1.10, 0.93, 0.76), 0.55,
    ),
    _Daylight(  # overcast
        (0.52, 0.56, 0.62), (0.80, 0.81, 0.83), (0.92, 0.92, 0.92), 0.05,
        (0.88, 0.88, 0.90), (0.50, 0.52, 0.57), (0.86, 0.89, 0.93), 0.2,
    ),
    _Daylight(  # dusk
        (0.12, 0.13, 0.32), (0.95, 0.52, 0.38), (1.0, 0.62, 0.35), 0.85,
        (0.88, 0.52, 0.48), (0.30, 0.24, 0.36), (0.74, 0.62, 0.68), 0.35,
    ),
    _Daylight(  # hazy morning
        (0.42, 0.58, 0.82), (0.90, 0.88, 0.84), (1.0, 0.96, 0.88), 0.45,
        (0.96, 0.95, 0.93), (0.66, 0.68, 0.74), (0.98, 0.96, 0.92), 0.4,
    ),
)  # fmt: skip

_NIGHT = _Daylight(
    (0.02, 0.03, 0.09), (0.16, 0.15, 0.24), (1.0, 0.9, 0.7), 0.0,
    (0.20, 0.18, 0.24), (0.08, 0.08, 0.12), (0.40, 0.40, 0.50), 0.15,
)  # fmt: skip


def _side_of_light(rng: np.random.Generator) -> float:
    """Where the key light comes from: -1 far left, +1 far right, never straight on."""
    return _uniform(rng, 0.35, 1.0) * (1.0 if rng.random() < 0.5 else -1.0)


def _sky(
    rng: np.random.Generator,
    width: int,
    height: int,
    horizon: float,
    light: _Daylight,
    sun_x: float,
    *,
    cloudiness: float | None = None,
) -> _Array:
    """A full frame whose top (to just below `horizon`) is sky: gradient, sun glow, clouds.

    The sky has no fine detail, so it is painted at half size and enlarged: a quarter of the work.
    """
    canvas = np.empty((height, width, 3), np.float32)
    canvas[:] = _rgb(light.horizon)
    rows = min(height, int(horizon) + 4)
    if rows <= 0:
        return canvas
    full_width, full_rows = width, rows
    width, rows, horizon = (width + 1) // 2, (rows + 1) // 2, horizon / 2
    ys, xs = _grid(rows, width)
    t = np.clip(ys / max(horizon, 1.0), 0.0, 1.0)
    t = t * np.sqrt(t)
    sky = np.broadcast_to(_lerp(t, light.zenith, light.horizon), (rows, width, 3)).copy()
    sun_y = horizon * _uniform(rng, 0.45, 0.95)
    d2 = ((xs - sun_x * width) ** 2 + (ys - sun_y) ** 2) / (0.28 * width) ** 2
    sky += (0.5 * light.glow / (1.0 + 5.0 * d2))[..., None] * _rgb(light.sun)
    if cloudiness is None:
        cloudiness = 0.75 if light is _DAYLIGHTS[2] else _uniform(rng, 0.1, 0.7)
    cover = 0.78 - 0.45 * cloudiness
    puffs = _noise(
        rng,
        width,
        rows,
        width * _uniform(rng, 0.2, 0.45),
        octaves=6,
        stretch=(_uniform(rng, 1.5, 3.5), 1.0),
    )
    thickness = np.clip((puffs - cover) * float(rng.uniform(3.0, 6.0)), 0.0, 1.0)
    density = thickness * np.clip(1.25 - t, 0.0, 1.0)
    clouds = _lerp(np.clip((puffs - cover) * 2.2, 0.0, 1.0), light.cloud_lit, light.cloud_shade)
    sky += density[..., None] * (clouds - sky)
    canvas[:full_rows] = _enlarge(sky, full_width, full_rows)
    return canvas


def _enlarge(image: _Array, width: int, height: int) -> _Array:
    """An RGB float image resized to width x height, one channel at a time (Pillow's "F" mode)."""
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(image[..., channel])).resize(
                (width, height), Image.Resampling.BICUBIC
            ),
            dtype=np.float32,
        )
        for channel in range(3)
    ]
    return np.stack(channels, axis=-1)


def _haze(canvas: _Array, top: int, bottom: int, colour: _Colour, amount: float) -> None:
    """Aerial perspective: rows from `top` (most haze) to `bottom` (none) fade into `colour`."""
    top, bottom = max(top, 0), min(bottom, canvas.shape[0])
    if bottom <= top:
        return
    t = np.linspace(1.0, 0.0, bottom - top, dtype=np.float32)[:, None]
    cover = amount * t * t
    region = canvas[top:bottom]
    region += cover[..., None] * (_rgb(colour) - region)
