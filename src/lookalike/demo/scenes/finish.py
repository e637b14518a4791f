"""The camera: defocused backgrounds, and the finish that makes a painted canvas a photo."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFilter

from .canvas import _Array, _grid, _uniform


def _to_bytes(canvas: _Array) -> npt.NDArray[np.uint8]:
    return (np.clip(canvas, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _defocus(canvas: _Array, radius: float) -> _Array:
    """The canvas as a lens focused elsewhere would see it: for backgrounds behind a subject."""
    blurred = Image.fromarray(_to_bytes(canvas)).filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(blurred, dtype=np.float32) / 255.0


def _finish(canvas: _Array, rng: np.random.Generator) -> Image.Image:
    """Turns a painted canvas into a photograph: vignette, tone curve, soft lens, sensor noise."""
    height, width = canvas.shape[:2]
    ys, xs = _grid(height, width)
    dy, dx = (ys - height / 2) / (height / 2), (xs - width / 2) / (width / 2)
    falloff = 1.0 - _uniform(rng, 0.12, 0.3) * (dx * dx + dy * dy) / 2.0
    balance = 1.0 + rng.uniform(-0.03, 0.03, 3).astype(np.float32)
    image = canvas * (falloff[..., None] * balance)
    np.clip(image, 0.0, 1.0, out=image)
    # A gentle S-curve, as a camera's tone curve gives: x + 0.3 (x²(3 - 2x) - x).
    curve = image * -0.6
    curve += 0.9
    curve *= image
    curve -= 0.3
    curve *= image
    image += curve
    # No lens is perfectly sharp: a small binomial kernel, heavier or lighter per photo.
    centre = int(rng.integers(4, 13))
    kernel = ImageFilter.Kernel((3, 3), [1, 2, 1, 2, centre, 2, 1, 2, 1], scale=12 + centre)
    soft = Image.fromarray(_to_bytes(image)).filter(kernel)
    grainy = rng.standard_normal((height, width, 3), dtype=np.float32)
    grainy *= _uniform(rng, 2.0, 4.5)  # in 8-bit steps
    grainy += np.asarray(soft, dtype=np.float32)
    grainy += 0.5
    np.clip(grainy, 0.0, 255.0, out=grainy)
    return Image.fromarray(grainy.astype(np.uint8))
