"""An NSFW score for one image, from the NudeNet detector that ships inside the `nudenet` wheel.

The wheel carries `nudenet/320n.onnx`, an Ultralytics YOLOv8n detector of 18 body-part classes
(`LABELS`). Only the ONNX file is used: nudenet's Python code imports OpenCV, which we neither
load nor need. The file is found with `importlib.util.find_spec`, which locates the package
without running its `__init__` (that would import cv2).

**What the score means.** `score` is the highest confidence, over every anchor of the detector,
of the five *exposed explicit* classes (`EXPLICIT_LABELS`: exposed female breast, female and male
genitalia, buttocks, anus). It is the detector's confidence that at least one such region is
visible, in 0..1. Exposed bellies, armpits, feet and male chests, faces and every *covered*
class do not count: they are not what a moderation filter such as `nsfw < 0.3` is meant to
remove. No non-maximum suppression or 0.2 cut-off as in nudenet's `detect()`: a maximum over
anchors needs neither, and a continuous score makes a better filter than a detection list.

On the scikit-image/matplotlib sample photos the score stays below 0.3; the highest is the coffee
cup at about 0.29 (a round brown shape reads a little as BUTTOCKS_EXPOSED), so thresholds below
0.3 will drop some innocent photos. `tests/quality/test_nsfw.py` keeps those numbers.

**Input.** nudenet's reference preprocessing, reproduced with numpy on the decoded RGB pixels: pad
the image to a square at the bottom and right with black, resize that square to 320x320 with
OpenCV's `INTER_LINEAR` (to the last bit when downscaling, see `_linear_taps`), scale to [0, 1],
NCHW. nudenet's `detect(path)` reads files as BGR and then swaps the channels twice
(`cvtColor(RGBA2BGR)` and `blobFromImage(swapRB=True)`), so the model gets BGR; we feed RGB, what
Ultralytics trains with. On the sample photos RGB gives the faces higher confidence (astronaut
0.81 vs 0.72, Grace Hopper 0.76 vs 0.62), which is how the model tells it was trained on RGB.

**Cost.** 30-40 ms of one core per image (bench/per_image.py; mostly the 320x320 forward pass,
the preprocessing is 5-10 ms), more than the EfficientNet-Lite0 embedding. With `threads=1` (the
default) ONNX Runtime computes in the calling thread: at ingest that is a niced prepare thread,
so the embedding model keeps the cores first.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from functools import cache
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from lookalike.core.errors import ModelUnavailable
from lookalike.embedding.sessions import OrtSession

__all__ = [
    "EXPLICIT_LABELS",
    "INPUT_SIZE",
    "LABELS",
    "NsfwDetector",
    "detector_input",
    "nudenet_model_path",
    "shared_detector",
]

log = logging.getLogger(__name__)

MODEL_FILE = "320n.onnx"
INPUT_SIZE = 320

# The detector's classes in output order (nudenet/nudenet.py, and the graph's `names` metadata).
LABELS: tuple[str, ...] = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)
EXPLICIT_LABELS: tuple[str, ...] = (
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "BUTTOCKS_EXPOSED",
    "ANUS_EXPOSED",
)
_EXPLICIT_ROWS = np.array([LABELS.index(label) for label in EXPLICIT_LABELS])
_BOX_ROWS = 4  # cx, cy, w, h come before the class scores

# OpenCV's fixed-point INTER_LINEAR for 8-bit images: 11-bit weights, and the vertical pass of
# its SIMD code, which drops 4 + 16 bits before the final rounding.
_COEF_SCALE = 2048


def nudenet_model_path() -> Path | None:
    """Where the installed `nudenet` package keeps its detector, or None when it is not there."""
    try:
        spec = importlib.util.find_spec("nudenet")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / MODEL_FILE
        if path.is_file():
            return path
    return None


def _linear_taps(
    src: int, dst: int
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.int32], NDArray[np.int32]]:
    """Source indices and 11-bit weights of OpenCV's `INTER_LINEAR` from `src` to `dst` pixels.

    Half-pixel centres, the edge pixel repeated, and each weight rounded on its own from float32:
    that is what makes the result match OpenCV's to the last bit on downscales (and on all but
    the first and last row when upscaling).
    """
    centres = ((np.arange(dst, dtype=np.float64) + 0.5) * (src / dst) - 0.5).astype(np.float32)
    first = np.floor(centres).astype(np.intp)
    frac = centres - first.astype(np.float32)
    before = first < 0
    first[before], frac[before] = 0, 0.0
    after = first >= src - 1
    first[after], frac[after] = src - 1, 0.0
    second = np.minimum(first + 1, src - 1)
    w0 = np.rint((np.float32(1.0) - frac) * np.float32(_COEF_SCALE)).astype(np.int32)
    w1 = np.rint(frac * np.float32(_COEF_SCALE)).astype(np.int32)
    return first, second, w0, w1


def _padded_subset(
    pixels: NDArray[np.uint8], rows: NDArray[np.intp], cols: NDArray[np.intp]
) -> NDArray[np.int32]:
    """`pixels[rows][:, cols]` for sorted indices, where an index past the image is the black
    padding (so those are a tail of `rows` or `cols`)."""
    height, width = pixels.shape[:2]
    inside_rows = int(np.searchsorted(rows, height))
    inside_cols = int(np.searchsorted(cols, width))
    out = np.zeros((len(rows), len(cols), 3), dtype=np.int32)
    picked = pixels.take(rows[:inside_rows], axis=0).take(cols[:inside_cols], axis=1)
    out[:inside_rows, :inside_cols] = picked
    return out


def detector_input(image: Image.Image, size: int = INPUT_SIZE) -> NDArray[np.float32]:
    """`image` as the detector's (1, 3, size, size) float32 RGB input in [0, 1].

    The image is padded to a square at the bottom and right with black and resized to `size`.
    Neither the padded square nor the full-size image is converted: only the (at most 2 x size)
    rows and columns the interpolation reads are.
    """
    pixels = np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)
    height, width = pixels.shape[:2]
    if height < 1 or width < 1:
        raise ValueError("empty image")
    side = max(height, width)
    y0, y1, wy0, wy1 = _linear_taps(side, size)
    x0, x1, wx0, wx1 = _linear_taps(side, size)
    rows = np.unique(np.concatenate([y0, y1]))
    cols = np.unique(np.concatenate([x0, x1]))
    sub = _padded_subset(pixels, rows, cols)
    # Horizontal pass, then vertical, in OpenCV's order and integer arithmetic.
    across = (
        sub[:, np.searchsorted(cols, x0)] * wx0[None, :, None]
        + sub[:, np.searchsorted(cols, x1)] * wx1[None, :, None]
    )  # (rows, size, 3): pixel values times 2048
    top = across[np.searchsorted(rows, y0)] >> 4
    bottom = across[np.searchsorted(rows, y1)] >> 4
    out = (((wy0[:, None, None] * top) >> 16) + ((wy1[:, None, None] * bottom) >> 16) + 2) >> 2
    resized = np.clip(out, 0, 255).astype(np.float32) * np.float32(1.0 / 255.0)
    return np.ascontiguousarray(resized.transpose(2, 0, 1)[None])


class NsfwDetector:
    """The NudeNet detector, loaded on first use. Thread-safe.

    A missing or unloadable model file is not an error: it is logged once as a warning and every
    score is None from then on (ingest goes on without moderation scores).
    """

    def __init__(self, model_path: Path | None = None, *, threads: int = 1) -> None:
        self._path = model_path
        self.threads = threads
        self._session: OrtSession | None = None
        self._failed: str | None = None
        self._lock = threading.Lock()

    @property
    def unavailable_reason(self) -> str | None:
        """Why the detector cannot run, once loading was tried and failed."""
        return self._failed

    def _load(self) -> OrtSession | None:
        if self._session is not None or self._failed is not None:
            return self._session
        with self._lock:  # two first images must not load the graph twice
            if self._session is not None or self._failed is not None:
                return self._session
            path = self._path or nudenet_model_path()
            try:
                if path is None or not path.is_file():
                    raise ModelUnavailable(
                        f"no NudeNet detector at {path or 'nudenet/' + MODEL_FILE}; "
                        "install the `nudenet` package"
                    )
                self._session = OrtSession(path, threads=self.threads)
            except ModelUnavailable as exc:
                self._failed = exc.message
                log.warning("NSFW scores are off: %s", exc.message)
            return self._session

    def raw_scores(self, image: Image.Image) -> NDArray[np.float32] | None:
        """Per-anchor class scores, shape (anchors, len(LABELS)); None when unavailable."""
        session = self._load()
        if session is None:
            return None
        output = session.run_one(detector_input(image))  # (1, 4 + classes, anchors)
        scores: NDArray[np.float32] = output[0, _BOX_ROWS:].T
        return scores

    def class_scores(self, image: Image.Image) -> dict[str, float] | None:
        """The highest confidence of each class anywhere in the image; None when unavailable."""
        raw = self.raw_scores(image)
        if raw is None:
            return None
        return {label: float(v) for label, v in zip(LABELS, raw.max(axis=0), strict=True)}

    def score(self, image: Image.Image) -> float | None:
        """The NSFW score in 0..1 (see the module docstring); None when unavailable."""
        raw = self.raw_scores(image)
        if raw is None:
            return None
        return float(np.clip(raw[:, _EXPLICIT_ROWS].max(), 0.0, 1.0))

    def scores(self, images: list[Image.Image]) -> list[float] | None:
        """`score` of each image, from one model call per batch; None when unavailable."""
        session = self._load()
        if session is None:
            return None
        if not images:
            return []
        output = session.run_one(np.concatenate([detector_input(im) for im in images]))
        explicit = output[:, _BOX_ROWS:][:, _EXPLICIT_ROWS]  # (batch, explicit classes, anchors)
        return [float(v) for v in np.clip(explicit.max(axis=(1, 2)), 0.0, 1.0)]


@cache
def shared_detector(threads: int = 1) -> NsfwDetector:
    """One detector per process (and thread count): every runtime in it shares the session."""
    return NsfwDetector(threads=threads)
