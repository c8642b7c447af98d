"""Rotate and mirror photos before reading (the profile's ``transform`` section).

Convention:

* ``rotate`` is in degrees, **counter-clockwise** as seen on screen (so ``90`` turns a photo taken with the
  camera lying on its right side upright). Any angle is allowed. The canvas grows to the rotated image's
  bounding box, so no pixel of the photo is cut off; the new corners are filled with black. Multiples of 90°
  are exact (no interpolation) and keep the canvas tight.
* ``flip`` mirrors *after* rotating: ``horizontal`` swaps left and right, ``vertical`` swaps top and bottom,
  ``both`` does the two (the same as a 180° rotation).
* Profile boxes are pixel coordinates in the image *after* these transforms (the "reference frame").
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np

from smartmeter.ocr.profile import Transform

log = logging.getLogger(__name__)

_FLIP_CODES = {"horizontal": 1, "vertical": 0, "both": -1}
_QUARTER_TURNS = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_CLOCKWISE}


def rotation_matrix(width: int, height: int, angle: float) -> tuple[np.ndarray, tuple[int, int]]:
    """Affine 2x3 matrix rotating a ``width x height`` image by ``angle`` degrees counter-clockwise onto a canvas
    that holds all of it, and that canvas' ``(width, height)``."""
    rad = math.radians(angle)
    cos, sin = abs(math.cos(rad)), abs(math.sin(rad))
    new_w = int(math.ceil(width * cos + height * sin - 1e-9))
    new_h = int(math.ceil(width * sin + height * cos - 1e-9))
    m = cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), angle, 1.0)
    m[0, 2] += (new_w - width) / 2.0
    m[1, 2] += (new_h - height) / 2.0
    return m, (new_w, new_h)


def rotate(image: np.ndarray, angle: float) -> np.ndarray:
    """Rotate by ``angle`` degrees counter-clockwise without cropping (see the module docstring)."""
    a = float(angle) % 360.0
    quarter = round(a / 90.0)
    if abs(a - 90.0 * quarter) < 1e-6:
        quarter %= 4
        return image if quarter == 0 else cv2.rotate(image, _QUARTER_TURNS[quarter])
    h, w = image.shape[:2]
    m, size = rotation_matrix(w, h, a)
    return cv2.warpAffine(image, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def flip(image: np.ndarray, mode: str) -> np.ndarray:
    """Mirror: ``none`` | ``horizontal`` | ``vertical`` | ``both``."""
    if mode == "none":
        return image
    if mode not in _FLIP_CODES:
        raise ValueError(f"unknown flip {mode!r}; expected none, horizontal, vertical or both")
    return cv2.flip(image, _FLIP_CODES[mode])


def apply_transform(image: np.ndarray, transform: Transform) -> np.ndarray:
    """The profile's transform: rotate first, then flip."""
    return flip(rotate(image, transform.rotate), transform.flip)


def is_identity(transform: Transform) -> bool:
    return float(transform.rotate) % 360.0 == 0.0 and transform.flip == "none"


def is_exact(transform: Transform) -> bool:
    """Whether the transform only permutes pixels (quarter turns and flips: no interpolation)."""
    a = float(transform.rotate) % 360.0
    return abs(a - 90.0 * round(a / 90.0)) < 1e-6


def transformed_size(width: int, height: int, transform: Transform) -> tuple[int, int]:
    """``(width, height)`` of a ``width x height`` image after ``apply_transform``."""
    if is_exact(transform):
        return (height, width) if round(float(transform.rotate) % 360.0 / 90.0) % 2 else (width, height)
    return rotation_matrix(width, height, float(transform.rotate) % 360.0)[1]


def transform_matrix(width: int, height: int, transform: Transform) -> np.ndarray:
    """The 3x3 affine matrix taking pixel coordinates of a ``width x height`` photo to where ``apply_transform``
    puts them (the same mapping as :func:`transform_points`)."""
    basis = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    o, ex, ey = transform_points(basis, width, height, transform)
    return np.array([[ex[0] - o[0], ey[0] - o[0], o[0]], [ex[1] - o[1], ey[1] - o[1], o[1]], [0.0, 0.0, 1.0]])


def transform_points(points: np.ndarray, width: int, height: int, transform: Transform) -> np.ndarray:
    """Where pixel coordinates ``(N, 2)`` of the original photo land after ``apply_transform``."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    a = float(transform.rotate) % 360.0
    quarter = round(a / 90.0)
    if abs(a - 90.0 * quarter) < 1e-6:
        quarter %= 4
        x, y = pts[:, 0], pts[:, 1]
        if quarter == 0:
            out, size = pts.copy(), (width, height)
        elif quarter == 1:
            out, size = np.stack([y, width - 1 - x], axis=1), (height, width)
        elif quarter == 2:
            out, size = np.stack([width - 1 - x, height - 1 - y], axis=1), (width, height)
        else:
            out, size = np.stack([height - 1 - y, x], axis=1), (height, width)
    else:
        m, size = rotation_matrix(width, height, a)
        out = pts @ m[:, :2].T + m[:, 2]
    if transform.flip in ("horizontal", "both"):
        out[:, 0] = size[0] - 1 - out[:, 0]
    if transform.flip in ("vertical", "both"):
        out[:, 1] = size[1] - 1 - out[:, 1]
    return out
