"""A profile's reference image and what alignment keeps of it: the grey image at work and fine scale, and its ORB
features. Computed once per reference file and cached (a changed file is read again)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from smartmeter.ocr.image_io import load_image, to_grey

FINE_PX = 800  # long side of the reference for the last, precise translation + rotation pass
WORK_PX = 320  # long side of the images features are computed on (speed vs. precision: ~2 px at 640 px)
N_FEATURES = 250
N_LEVELS = 2  # a fixed camera barely changes scale: few pyramid levels are enough, and much faster


@dataclass(frozen=True)
class ReferenceFeatures:
    """What we keep of a reference image: its size, the downscaled grey image, ORB features."""

    size: tuple[int, int]  # (width, height), full resolution
    scale: float  # work / full
    grey: np.ndarray
    keypoints: np.ndarray  # (N, 2) float32 at work scale
    descriptors: np.ndarray | None
    fine: np.ndarray  # float32 grey at the fine scale (the last alignment pass)
    fine_scale: float  # fine / full


def downscale(grey: np.ndarray, work_px: int) -> tuple[np.ndarray, float]:
    h, w = grey.shape[:2]
    scale = min(1.0, work_px / max(h, w))
    if scale >= 1.0:
        return grey, 1.0
    small = cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return small, scale


@functools.lru_cache(maxsize=8)
def orb_detector() -> cv2.ORB:
    return cv2.ORB_create(nfeatures=N_FEATURES, fastThreshold=10, nlevels=N_LEVELS)  # type: ignore[attr-defined]


def compute_features(image: np.ndarray, work_px: int = WORK_PX) -> ReferenceFeatures:
    full = to_grey(image)
    grey, scale = downscale(full, work_px)
    fine, fine_scale = downscale(full, FINE_PX)
    kps, desc = orb_detector().detectAndCompute(grey, None)
    pts = np.array([k.pt for k in kps], dtype=np.float32).reshape(-1, 2)
    h, w = image.shape[:2]
    return ReferenceFeatures((w, h), scale, grey, pts, desc, fine.astype(np.float32), fine_scale)


@functools.lru_cache(maxsize=16)
def _reference_cached(path: str, mtime_ns: int, work_px: int) -> tuple[np.ndarray, ReferenceFeatures]:
    image = load_image(path)
    return image, compute_features(image, work_px)


def load_reference(path: Path, work_px: int = WORK_PX) -> tuple[np.ndarray, ReferenceFeatures]:
    """Reference image and its features, cached per file (a changed file is re-read)."""
    return _reference_cached(str(path), path.stat().st_mtime_ns, work_px)


