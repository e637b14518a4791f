"""Crop embeddings: which parts of an image get a vector of their own, and under what name.

A collection created with `use_crops` stores, besides each image's global vector, one vector per
crop in a multivector (`<vector_name>-crops`, scored by MaxSim). A query that shows only part of
an image (a logo, a product in a scene) then meets a crop that shows about as much as it does.

Crops of one image (at most `MAX_CROPS`, in this order):

- **A fixed 2x2 grid** of cells, each `GRID_CELL` (60%) of the image's width and height,
  anchored at the four corners: they overlap by a fifth in the middle, so an object on a
  dividing line is still whole in one of them.
- **Up to `SALIENT_CROPS` salient squares.** Saliency is the spectral residual of Hou & Zhang
  (CVPR 2007) on a `SALIENCY_SIZE`-pixel greyscale copy: the log amplitude spectrum minus its
  local average keeps what is unexpected in the image and drops repeated texture (grass,
  gravel, brick), which a plain gradient energy would pick. Candidate windows are squares
  (in pixels, as the models see them) whose side is one of `SALIENT_SIDES` of the shorter
  image side, at every position of the map. A window scores the saliency it holds *above the
  map's mean*, so it grows to cover a salient blob and stops where the background starts.
  The best windows are taken greedily, skipping one that overlaps a grid cell by more than
  `MAX_GRID_IOU` (the grid has it already) or an earlier pick by more than `MAX_PICK_IOU`.
  A flat image has no salient window.

Every crop goes through the model's own preprocessing, like a query image would. Embedding cost
per image is 1 + `MAX_CROPS` = 7 model inputs instead of 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from lookalike.embedding.base import Embedder

__all__ = [
    "CROPS_SUFFIX",
    "MAX_CROPS",
    "Box",
    "crop_boxes",
    "crop_tensors",
    "crops_vector_name",
    "grid_boxes",
    "saliency_map",
    "salient_boxes",
    "uses_crops",
]

Box = tuple[int, int, int, int]  # left, top, right, bottom in pixels (right/bottom exclusive)

CROPS_SUFFIX = "-crops"
GRID = 2
GRID_CELL = 0.6
SALIENT_CROPS = 2
SALIENT_SIDES = (0.25, 0.4, 0.55)
MAX_GRID_IOU = 0.5
MAX_PICK_IOU = 0.3
SALIENCY_SIZE = 64
MAX_CROPS = GRID * GRID + SALIENT_CROPS
_BLUR_SIGMA = 2.5  # map pixels: merges the residual's speckle into blobs
_FLAT_STD = 2.0  # grey levels: below this the spectrum is rounding noise, and nothing stands out


def crops_vector_name(vector_name: str) -> str:
    """The multivector holding the crops of the images whose global vector is `vector_name`."""
    return f"{vector_name}{CROPS_SUFFIX}"


def uses_crops(vector_settings: Mapping[str, Any] | None) -> bool:
    """Whether a collection with these `vector_settings` stores crop embeddings."""
    return bool(vector_settings and vector_settings.get("use_crops"))


def grid_boxes(width: int, height: int) -> list[Box]:
    """The 2x2 grid: cells of `GRID_CELL` of each side, anchored at the corners."""
    cell_w = max(1, round(width * GRID_CELL))
    cell_h = max(1, round(height * GRID_CELL))
    return [
        (left, top, left + cell_w, top + cell_h)
        for top in (0, height - cell_h)
        for left in (0, width - cell_w)
    ]


def saliency_map(image: Image.Image, size: int = SALIENCY_SIZE) -> NDArray[np.float64]:
    """Spectral-residual saliency of `image` on a `size` x `size` grid (squashed), >= 0; all
    zeros for a flat image."""
    grey = np.asarray(
        image.convert("L").resize((size, size), Image.Resampling.BILINEAR), dtype=np.float64
    )
    if grey.std() < _FLAT_STD:
        return np.zeros((size, size))
    spectrum = np.fft.fft2(grey)
    log_amplitude = np.log(np.abs(spectrum) + 1e-8)
    # 3x3 local average of the log spectrum (it is periodic, so wrap around).
    local = sum(
        np.roll(np.roll(log_amplitude, dy, axis=0), dx, axis=1)
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    )
    residual = log_amplitude - local / 9.0
    saliency = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2
    # Gaussian blur as a product in the frequency domain.
    freq = np.fft.fftfreq(size)
    gauss = np.exp(-2.0 * (np.pi * _BLUR_SIGMA) ** 2 * (freq[:, None] ** 2 + freq[None, :] ** 2))
    blurred = np.real(np.fft.ifft2(np.fft.fft2(saliency) * gauss))
    return np.maximum(blurred, 0.0)


def _iou(boxes: NDArray[np.float64], box: NDArray[np.float64]) -> NDArray[np.float64]:
    """IoU of each row of `boxes` (n, 4: x0, y0, x1, y1) with `box`."""
    ix = np.clip(np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]), 0, None)
    iy = np.clip(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]), 0, None)
    inter = ix * iy
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area = (box[2] - box[0]) * (box[3] - box[1])
    result: NDArray[np.float64] = inter / (areas + area - inter)
    return result


def salient_boxes(
    image: Image.Image, avoid: Sequence[Box] = (), count: int = SALIENT_CROPS
) -> list[Box]:
    """Up to `count` square windows holding the most saliency above the mean (see the module
    docstring), none overlapping a box of `avoid` by more than `MAX_GRID_IOU`."""
    width, height = image.size
    saliency = saliency_map(image)
    size = saliency.shape[0]
    excess = saliency - saliency.mean()
    if count < 1 or float(saliency.max()) <= 1e-12:
        return []
    integral = np.zeros((size + 1, size + 1))
    integral[1:, 1:] = excess.cumsum(axis=0).cumsum(axis=1)
    boxes: list[NDArray[np.float64]] = []
    scores: list[NDArray[np.float64]] = []
    shorter = min(width, height)
    for fraction in SALIENT_SIDES:
        if fraction * shorter < 1:
            continue  # a window under one pixel: nothing to see in it
        # A square in pixels is a rectangle on the squashed map.
        win_w = max(1, min(size, round(fraction * shorter / width * size)))
        win_h = max(1, min(size, round(fraction * shorter / height * size)))
        ys, xs = np.mgrid[0 : size - win_h + 1, 0 : size - win_w + 1]
        sums = (
            integral[ys + win_h, xs + win_w]
            - integral[ys, xs + win_w]
            - integral[ys + win_h, xs]
            + integral[ys, xs]
        )
        scale_x, scale_y = width / size, height / size
        side = fraction * shorter
        left = np.clip((xs + win_w / 2) * scale_x - side / 2, 0, width - side)
        top = np.clip((ys + win_h / 2) * scale_y - side / 2, 0, height - side)
        boxes.append(np.stack([left, top, left + side, top + side], axis=-1).reshape(-1, 4))
        scores.append(sums.reshape(-1))
    if not boxes:
        return []
    candidates = np.concatenate(boxes)
    score = np.concatenate(scores)
    keep = score > 0
    for box in avoid:
        keep &= _iou(candidates, np.asarray(box, dtype=np.float64)) <= MAX_GRID_IOU
    candidates, score = candidates[keep], score[keep]
    picked: list[Box] = []
    while len(picked) < count and len(score):
        best = int(np.argmax(score))
        chosen = candidates[best]
        box = (
            round(chosen[0]),
            round(chosen[1]),
            min(width, round(chosen[2])),
            min(height, round(chosen[3])),
        )
        if box[2] > box[0] and box[3] > box[1]:
            picked.append(box)
        rest = _iou(candidates, chosen) <= MAX_PICK_IOU
        candidates, score = candidates[rest], score[rest]
    return picked


def crop_boxes(image: Image.Image) -> list[Box]:
    """The grid cells, then the salient windows, of `image` (see the module docstring)."""
    grid = grid_boxes(*image.size)
    return grid + salient_boxes(image, avoid=grid)


def crop_tensors(embedder: Embedder, image: Image.Image) -> NDArray[np.float32]:
    """The model inputs (n, C, H, W) of the crops of `image`, through `embedder`'s own
    preprocessing."""
    return np.stack([embedder.preprocess(image.crop(box)) for box in crop_boxes(image)])
