"""Are two images one photograph? Local features, one homography, then the pixels.

Embedding cosine and pHash say two images *look* alike; neither can tell a resized, cropped,
bordered or recoloured copy of a photo from another shot of the same scene (a burst, a stereo
pair, a re-take). What tells them apart is geometry: every point of a copy maps to a point of
the original under one homography (scale, crop, rotation, perspective and squash are all
homographies), while a second shot has parallax and a different frame.

`match_photos` measures that, on grayscale copies brought to one scale:

1. ORB keypoints, matched by Hamming distance with Lowe's ratio test, and a RANSAC homography.
2. *Coverage*: the share of each frame that lands inside the other under the homography
   (uniform margins, i.e. added borders and letterbox bars, are trimmed first). A crop lies
   wholly inside its original and covers most of it; two pans of one scene each cover only
   part of the other.
3. *Correlation*: the first image warped onto the second, both slightly blurred at a small
   size, and their normalised cross-correlation over the overlap. Recolouring, brightness,
   noise, blur, JPEG and a watermark keep it near 1; parallax (a second shot) does not.

What counts as "the same photograph" from these figures is the caller's decision
(`dedup.tiers.DedupThresholds`); this module only measures. Speed: about 10 ms to prepare an
image and about 10 ms per match on one core (1,000 keypoints each).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

# Every image is brought to this longer side, small ones enlarged: a quarter-size copy then
# meets its original at one scale (ORB's pyramid alone loses repetitive textures), and 512 px
# keeps the work to milliseconds.
MATCH_SIDE = 512
_FEATURES = 1000
_MIN_FEATURE_SIDE = 48
_RATIO = 0.8  # Lowe's ratio test
_RANSAC_PIXELS = 4.0
# The correlation's scale (128 px on the longer side): parallax shows, JPEG and noise do not.
_SMALL_SCALE = 0.25
_MARGIN_TOLERANCE = 6  # grey levels a uniform border may vary by
_GRID = 20  # points per side sampled to measure coverage
_SPREAD_GRID = 8  # cells per side to measure how widely the inliers spread

Gray = NDArray[np.uint8]


@dataclass(frozen=True)
class PhotoFeatures:
    """One image prepared for matching (about 50 kB): ORB features of its grayscale pixels,
    uniform margins trimmed and the longer side brought to MATCH_SIDE, and a small blurred
    copy of those pixels for the correlation."""

    shape: tuple[int, int]  # (height, width) of the matched pixels
    points: NDArray[np.float32]  # keypoint positions, (n, 2)
    descriptors: NDArray[np.uint8] | None  # (n, 32), None when no keypoints were found
    small: NDArray[np.float32]  # the pixels at _SMALL_SCALE, blurred
    pixel_digest: bytes  # the RGB pixels as decoded, for "same pixels"
    size: tuple[int, int]  # the image's full size (width, height)

    @property
    def keypoints(self) -> int:
        return len(self.points)


@dataclass(frozen=True)
class PhotoMatch:
    """What the geometry says of two images (see the module docstring)."""

    keypoints: int  # the fewer of the two images' keypoint counts
    matches: int  # matches passing the ratio test
    inliers: int  # matches consistent with the homography
    overlap: float  # the smaller share of a frame inside the other (0..1)
    containment: float  # the larger share: 1 when one image lies wholly inside the other
    correlation: float  # normalised cross-correlation of the aligned pixels (-1..1)
    same_pixels: bool = False  # identical pixels at the same size
    # The share of the matches that a second homography explains, among those the first
    # leaves out: a second plane, i.e. parallax, i.e. another shot. Zero for a copy.
    second_plane: float = 0.0
    # The share of the first image's detailed areas (grid cells with keypoints, inside the
    # overlap) that hold an inlier: agreement across the picture, not in one patch of it (a
    # watermark, or the fill an edit left in two different photos' corners).
    spread: float = 0.0

    @property
    def inlier_ratio(self) -> float:
        return self.inliers / self.matches if self.matches else 0.0

    def as_dict(self) -> dict[str, float | int | bool]:
        return {
            "keypoints": self.keypoints,
            "matches": self.matches,
            "inliers": self.inliers,
            "overlap": round(self.overlap, 4),
            "containment": round(self.containment, 4),
            "correlation": round(self.correlation, 4),
            "same_pixels": self.same_pixels,
            "second_plane": round(self.second_plane, 4),
            "spread": round(self.spread, 4),
        }


def photo_features(image: Image.Image, size: tuple[int, int] | None = None) -> PhotoFeatures:
    """`image` prepared for `match_photos` (any mode; it is read as grayscale). `size` is the
    full size when `image` was decoded smaller; two images have "the same pixels" only when
    their full sizes and their decoded pixels agree."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    gray = _scaled(_trimmed(np.asarray(rgb.convert("L"))), MATCH_SIDE)
    keypoints: Sequence[cv2.KeyPoint] = ()
    descriptors = None
    # A sliver (a 4000 x 3 banner) has no room for ORB's border and pyramid: no features.
    if min(gray.shape) >= _MIN_FEATURE_SIDE:
        detector = cv2.ORB.create(nfeatures=_FEATURES, fastThreshold=10, edgeThreshold=15)
        keypoints, found = detector.detectAndCompute(gray, None)
        descriptors = None if found is None else np.asarray(found, dtype=np.uint8)
    points = np.array([k.pt for k in keypoints], dtype=np.float32).reshape(-1, 2)
    small = np.asarray(
        cv2.GaussianBlur(_resized_float(gray, _SMALL_SCALE), (0, 0), 1.0), dtype=np.float32
    )
    digest = hashlib.blake2b(rgb.tobytes(), digest_size=16).digest()
    shape = (int(gray.shape[0]), int(gray.shape[1]))
    return PhotoFeatures(shape, points, descriptors, small, digest, size or rgb.size)


def match_photos(a: PhotoFeatures, b: PhotoFeatures) -> PhotoMatch:
    """How well `a` maps onto `b` under one homography (see the module docstring)."""
    same_pixels = a.size == b.size and a.pixel_digest == b.pixel_digest
    keypoints = min(a.keypoints, b.keypoints)
    none = PhotoMatch(keypoints, 0, 0, 0.0, 0.0, 0.0, same_pixels)
    if a.descriptors is None or b.descriptors is None or keypoints < 8:
        return none
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(a.descriptors, b.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < _RATIO * p[1].distance]
    if len(good) < 8:
        return PhotoMatch(keypoints, len(good), 0, 0.0, 0.0, 0.0, same_pixels)
    source = a.points[[m.queryIdx for m in good]].reshape(-1, 1, 2)
    target = b.points[[m.trainIdx for m in good]].reshape(-1, 1, 2)
    found, mask = cv2.findHomography(source, target, cv2.RANSAC, _RANSAC_PIXELS)
    if found is None or not _plausible(homography := np.asarray(found, dtype=np.float64)):
        return PhotoMatch(keypoints, len(good), 0, 0.0, 0.0, 0.0, same_pixels)
    inliers = int(mask.sum())
    inlying = mask.ravel() > 0
    second_plane = _second_plane(source, target, inlying) / len(good)
    spread = _spread(a, source[inlying].reshape(-1, 2), homography, b.shape)
    inverse = np.asarray(np.linalg.inv(homography), dtype=np.float64)
    a_in_b = _inside(_frame_points(a.shape), homography, b.shape)
    b_in_a = _inside(_frame_points(b.shape), inverse, a.shape)
    correlation = _aligned_correlation(a.small, b.small, homography)
    return PhotoMatch(
        keypoints,
        len(good),
        inliers,
        overlap=min(a_in_b, b_in_a),
        containment=max(a_in_b, b_in_a),
        correlation=correlation,
        same_pixels=same_pixels,
        second_plane=second_plane,
        spread=spread,
    )


def _trimmed(gray: Gray) -> Gray:
    """`gray` without uniform margins (added borders, letterbox bars) of the corners' shade.
    Left whole when the margins would take most of it: then the "margin" is the picture."""
    height, width = gray.shape
    corners = np.array([gray[0, 0], gray[0, -1], gray[-1, 0], gray[-1, -1]], dtype=np.int16)
    shade = int(np.median(corners))
    differs = np.abs(gray.astype(np.int16) - shade) > _MARGIN_TOLERANCE
    rows = np.flatnonzero(differs.mean(axis=1) > 0.02)
    cols = np.flatnonzero(differs.mean(axis=0) > 0.02)
    if len(rows) == 0 or len(cols) == 0:
        return gray
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    if (bottom - top) * (right - left) < 0.25 * height * width:
        return gray
    return gray[top:bottom, left:right]


def _scaled(gray: Gray, side: int) -> Gray:
    height, width = gray.shape
    scale = side / max(height, width)
    if abs(scale - 1.0) < 1e-3:
        return np.ascontiguousarray(gray)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return np.asarray(cv2.resize(gray, size, interpolation=interpolation), dtype=np.uint8)


def _plausible(homography: NDArray[np.float64]) -> bool:
    """A homography a copy can have: no mirror, no collapse, no extreme zoom. RANSAC on a
    handful of chance matches finds degenerate ones that "explain" them."""
    det = float(np.linalg.det(homography[:2, :2]))
    return 0.05 < det < 20.0 and abs(homography[2, 0]) < 0.01 and abs(homography[2, 1]) < 0.01


def _second_plane(
    source: NDArray[np.float32], target: NDArray[np.float32], first: NDArray[np.bool_]
) -> int:
    """How many of the matches the first homography left out a second one explains. A copy's
    leftovers are chance matches that agree on nothing; in two shots of one scene, the
    foreground and the background each follow a homography of their own."""
    rest = ~first
    if rest.sum() < 8:
        return 0
    homography, mask = cv2.findHomography(source[rest], target[rest], cv2.RANSAC, _RANSAC_PIXELS)
    return int(mask.sum()) if homography is not None else 0


def _spread(
    a: PhotoFeatures,
    inliers: NDArray[np.float32],
    homography: NDArray[np.float64],
    b_shape: tuple[int, ...],
) -> float:
    """The share of `a`'s grid cells that have keypoints and lie inside `b` once mapped, and
    that hold an inlier."""
    height, width = a.shape

    def cells(points: NDArray[np.float32]) -> set[int]:
        column = np.clip((points[:, 0] * _SPREAD_GRID / width).astype(int), 0, _SPREAD_GRID - 1)
        row = np.clip((points[:, 1] * _SPREAD_GRID / height).astype(int), 0, _SPREAD_GRID - 1)
        return set((row * _SPREAD_GRID + column).tolist())

    centres = _frame_points(a.shape, _SPREAD_GRID)
    mapped = cv2.perspectiveTransform(centres, homography)[:, 0, :]
    inside = (mapped[:, 0] >= 0) & (mapped[:, 0] < b_shape[1])
    inside &= (mapped[:, 1] >= 0) & (mapped[:, 1] < b_shape[0])
    overlapping = set(np.flatnonzero(inside).tolist())
    detailed = cells(a.points) & overlapping
    if not detailed:
        return 0.0
    return len(cells(inliers) & detailed) / len(detailed)


def _frame_points(shape: tuple[int, ...], grid: int = _GRID) -> NDArray[np.float32]:
    """The centres of a grid x grid split of a frame, row by row, as (n, 1, 2) points."""
    height, width = shape[:2]
    xs = (np.arange(grid) + 0.5) * width / grid
    ys = (np.arange(grid) + 0.5) * height / grid
    grid_x, grid_y = np.meshgrid(xs, ys)
    return np.stack([grid_x.ravel(), grid_y.ravel()], axis=1).astype(np.float32).reshape(-1, 1, 2)


def _inside(
    points: NDArray[np.float32], homography: NDArray[np.float64], shape: tuple[int, ...]
) -> float:
    """The share of `points`, mapped by `homography`, inside a frame of `shape`."""
    mapped = cv2.perspectiveTransform(points, homography)[:, 0, :]
    height, width = shape[:2]
    x, y = mapped[:, 0], mapped[:, 1]
    return float(np.mean((x >= 0) & (x < width) & (y >= 0) & (y < height)))


def _aligned_correlation(
    small_a: NDArray[np.float32], small_b: NDArray[np.float32], homography: NDArray[np.float64]
) -> float:
    """Normalised cross-correlation of `a` warped onto `b`, at a small size and slightly
    blurred, over the part of `b` that `a` covers (its edge eroded away)."""
    to_small = np.diag([_SMALL_SCALE, _SMALL_SCALE, 1.0])
    small_h = to_small @ homography @ np.linalg.inv(to_small)
    size = (small_b.shape[1], small_b.shape[0])
    warped = cv2.warpPerspective(small_a, small_h, size, flags=cv2.INTER_LINEAR)
    covered = cv2.warpPerspective(
        np.ones_like(small_a, dtype=np.uint8), small_h, size, flags=cv2.INTER_NEAREST
    )
    valid = cv2.erode(covered, np.ones((5, 5), np.uint8)) > 0
    if valid.sum() < 50:
        return 0.0
    x = warped[valid] - warped[valid].mean()
    y = small_b[valid] - small_b[valid].mean()
    denominator = float(np.sqrt(float((x * x).sum()) * float((y * y).sum())))
    return float((x * y).sum()) / denominator if denominator > 1e-6 else 0.0


def _resized_float(gray: Gray, scale: float) -> NDArray[np.float32]:
    height, width = gray.shape
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = cv2.resize(gray.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    return np.asarray(resized, dtype=np.float32)
