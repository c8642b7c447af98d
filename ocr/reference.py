"""A profile's reference image and what alignment keeps of it: the grey image at work and fine scale, and its ORB
features. Computed once per reference file and cached (a changed file is read again).

``find_inside`` finds the reference in a photo that shows much more than it (a full camera frame against a
reference cropped to the meter): normalised cross-correlation of the reference over the photo at ``SEARCH_PX``,
at scales from the largest that fits down to ``INSIDE_SMALLEST`` of it, in steps of ``INSIDE_STEP``."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from smartmeter.errors import AlignmentError
from smartmeter.ocr.image_io import load_image, to_grey
from smartmeter.ocr.warp import scale_matrix

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



SEARCH_PX = 480  # long side of the photo when the reference is looked for inside a larger one
INSIDE_STEP = 1.06  # scale steps of that search (the alignment that follows corrects the rest)
INSIDE_FINE = 6  # ... then that step in this many parts around the best
INSIDE_ANGLES = (-6.0, -4.0, -2.0, 2.0, 4.0, 6.0)  # degrees the camera may be turned, tried at the best scale
INSIDE_SMALLEST = 0.2  # smallest reference looked for, as a share of the largest that fits in the photo
INSIDE_MIN_SCORE = 0.4  # normalised correlation of the best place and scale, at least


def find_inside(grey: np.ndarray, to_search: np.ndarray, search_size: tuple[int, int],
                ref: ReferenceFeatures) -> tuple[np.ndarray, float]:
    """Where the reference sits inside a larger photo: a similarity (3x3, photo pixels -> reference pixels) and its
    score, by normalised cross-correlation of the reference's work image over the photo at ``search_size`` (made
    with ``to_search``, 3x3 photo -> search pixels: shrink and the profile's transform) and over scales.
    AlignmentError when nothing matches well enough."""
    h, w = grey.shape[:2]
    f = float(np.sqrt(abs(np.linalg.det(to_search[:2, :2]))))
    src = grey
    pre = np.eye(3)
    if f < 0.7:  # shrink by area first: a warp alone would alias the large photo
        size = (max(1, round(w * f)), max(1, round(h * f)))
        src = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        pre = scale_matrix(size[0] / w, size[1] / h)
    m = to_search @ np.linalg.inv(pre)
    search = cv2.warpAffine(src, m[:2], search_size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    rh, rw = ref.grey.shape[:2]
    top = min(search_size[0] / rw, search_size[1] / rh)

    def match(t: float, angle: float = 0.0) -> tuple[float, float, float, int, int]:
        tw, th = max(8, round(rw * t)), max(8, round(rh * t))
        if tw > search_size[0] or th > search_size[1]:
            return (-1.0, t, angle, 0, 0)
        template = cv2.resize(ref.grey, (tw, th), interpolation=cv2.INTER_AREA)
        if angle:
            turn = cv2.getRotationMatrix2D(((tw - 1) / 2, (th - 1) / 2), angle, 1.0)
            template = cv2.warpAffine(template, turn, (tw, th), borderMode=cv2.BORDER_REPLICATE)
        _, score, _, (bx, by) = cv2.minMaxLoc(cv2.matchTemplate(search, template, cv2.TM_CCOEFF_NORMED))
        return (float(score) if np.isfinite(score) else -1.0, tw / rw, angle, bx, by)

    steps = int(np.log(1 / INSIDE_SMALLEST) / np.log(INSIDE_STEP)) + 1
    best = max((match(top / INSIDE_STEP ** k) for k in range(steps)), key=lambda m: m[0])
    # then finer around the best scale (a 3 % wrong scale is 6-7 px off at the ends of a 440 px reference), and
    # the camera's turn (2 degrees are 8 px there)
    fine = [best[1] * INSIDE_STEP ** (j / INSIDE_FINE) for j in range(-INSIDE_FINE + 1, INSIDE_FINE) if j]
    best = max([best, *(match(t) for t in fine)], key=lambda m: m[0])
    best = max([best, *(match(best[1], a) for a in INSIDE_ANGLES if a)], key=lambda m: m[0])
    best = max([best, *(match(best[1], best[2] + d) for d in (-1.0, 1.0))], key=lambda m: m[0])
    score, t, angle, bx, by = best
    tw, th = round(rw * t), round(rh * t)
    turn = np.vstack([cv2.getRotationMatrix2D(((tw - 1) / 2, (th - 1) / 2), angle, 1.0), [0.0, 0.0, 1.0]])
    if score < INSIDE_MIN_SCORE:
        raise AlignmentError(f"the reference was not found inside the photo (best match {score:.2f} < "
                         f"{INSIDE_MIN_SCORE})")
    # search pixels -> reference work pixels: minus the match's corner, turned back, divided by its scale
    to_template = np.linalg.inv(turn) @ np.array([[1.0, 0.0, -bx], [0.0, 1.0, -by], [0.0, 0.0, 1.0]])
    search_to_work = np.diag([1 / t, 1 / t, 1.0]) @ to_template
    work_to_ref = np.linalg.inv(scale_matrix(ref.scale, ref.scale))
    return np.asarray(work_to_ref @ search_to_work @ to_search), score

