"""Align a photo to its profile's reference image, so a camera that moved a little still reads the right boxes.

Method ``orb`` (default): ORB features on downscaled grey images, ratio-tested matches, a RANSAC homography,
then sanity checks — enough inliers, not degenerate (no mirroring, scale within 0.7-1.4, nearly no perspective)
and no point of the reference frame moved more than ``max_shift_px``. When the features cannot give a trusted
homography it falls back to template matching; a trusted homography that moved too far is final (no fallback).
Method ``template``: the region around the digit boxes is searched in the photo (a pure translation, searched up
to twice ``max_shift_px`` and refused beyond it); the match must be strong (normalised correlation >= 0.5), not on
the border of the searched area, clearly better than anywhere else and better than the region mirrored. If nothing
is trusted, ``AlignmentError`` says why: a doubtful alignment would read the wrong pixels, and a wrong reading is
worse than none.

The result is a homography from photo pixels to reference pixels (full resolution). Reference features are
computed once per reference image and cached.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ocr.image_io import load_image, to_grey
from ocr.profile import Alignment, Box
from smartmeter.errors import UnreadableError

log = logging.getLogger(__name__)

WORK_PX = 320  # long side of the images features are computed on (speed vs. precision: ~2 px at 640 px)
N_FEATURES = 250
N_LEVELS = 2  # a fixed camera barely changes scale: few pyramid levels are enough, and much faster
RATIO = 0.8
MIN_TEMPLATE_SCORE = 0.5
MIN_TEMPLATE_MARGIN = 0.08  # best score minus the best score away from the peak


class AlignmentError(UnreadableError):
    """The photo could not be aligned to the reference with confidence."""


class MovedTooFar(AlignmentError):
    """The alignment is trusted and says the camera moved more than ``max_shift_px``: final, no fallback."""


@dataclass(frozen=True)
class AlignResult:
    homography: np.ndarray  # 3x3, photo pixels -> reference pixels
    method: str  # "identity" | "orb" | "template"
    shift_px: float  # largest movement of a reference-frame corner, reference pixels
    inliers: int = 0
    score: float = 0.0


@dataclass(frozen=True)
class ReferenceFeatures:
    """What we keep of a reference image: its size, the downscaled grey image, ORB features."""

    size: tuple[int, int]  # (width, height), full resolution
    scale: float  # work / full
    grey: np.ndarray
    keypoints: np.ndarray  # (N, 2) float32 at work scale
    descriptors: np.ndarray | None


def _downscale(grey: np.ndarray, work_px: int) -> tuple[np.ndarray, float]:
    h, w = grey.shape[:2]
    scale = min(1.0, work_px / max(h, w))
    if scale >= 1.0:
        return grey, 1.0
    small = cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return small, scale


@functools.lru_cache(maxsize=8)
def _orb() -> cv2.ORB:
    return cv2.ORB_create(nfeatures=N_FEATURES, fastThreshold=10, nlevels=N_LEVELS)  # type: ignore[attr-defined]


def compute_features(image: np.ndarray, work_px: int = WORK_PX) -> ReferenceFeatures:
    grey, scale = _downscale(to_grey(image), work_px)
    kps, desc = _orb().detectAndCompute(grey, None)
    pts = np.array([k.pt for k in kps], dtype=np.float32).reshape(-1, 2)
    h, w = image.shape[:2]
    return ReferenceFeatures((w, h), scale, grey, pts, desc)


@functools.lru_cache(maxsize=16)
def _reference_cached(path: str, mtime_ns: int, work_px: int) -> tuple[np.ndarray, ReferenceFeatures]:
    image = load_image(path)
    return image, compute_features(image, work_px)


def load_reference(path: Path, work_px: int = WORK_PX) -> tuple[np.ndarray, ReferenceFeatures]:
    """Reference image and its features, cached per file (a changed file is re-read)."""
    return _reference_cached(str(path), path.stat().st_mtime_ns, work_px)


def _scale_matrix(s: float) -> np.ndarray:
    return np.diag([s, s, 1.0])


class Aligner:
    """Aligns photos (already rotated/flipped by the profile's transform) to one reference image."""

    def __init__(self, reference: ReferenceFeatures, settings: Alignment, boxes: list[Box]) -> None:
        self.ref = reference
        self.settings = settings
        self.work_px = round(max(reference.size) * reference.scale)
        w, h = reference.size
        self.corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
        x0 = min(b[0] for b in boxes)
        y0 = min(b[1] for b in boxes)
        x1 = max(b[0] + b[2] for b in boxes)
        y1 = max(b[1] + b[3] for b in boxes)
        pad = max(x1 - x0, y1 - y0) * 0.15
        self.template_box = (max(0, int(x0 - pad)), max(0, int(y0 - pad)), min(w, int(x1 + pad)), min(h, int(y1 + pad)))
        self._matcher = cv2.BFMatcher(cv2.NORM_HAMMING)

    def align(self, image: np.ndarray) -> AlignResult:
        """Homography photo -> reference, or AlignmentError."""
        if self.settings.method == "none":
            return AlignResult(np.eye(3), "identity", 0.0)
        h, w = image.shape[:2]
        rw, rh = self.ref.size
        if abs(w / h - rw / rh) > 0.02:
            raise AlignmentError(f"photo is {w}x{h} but the reference is {rw}x{rh} (another camera or transform?)")
        grey = to_grey(image)
        scale = self.ref.scale * rw / w  # photo pixels -> work pixels, same work size as the reference
        small = cv2.resize(grey, self.ref.grey.shape[::-1], interpolation=cv2.INTER_AREA) if scale != 1.0 else grey
        reasons: list[str] = []
        if self.settings.method == "orb":
            try:
                return self._orb(small, scale)
            except MovedTooFar:
                raise
            except AlignmentError as exc:
                reasons.append(f"features: {exc}")
                log.debug("ORB alignment failed (%s); trying template", exc)
        try:
            return self._template(small, scale)
        except AlignmentError as exc:
            reasons.append(f"template: {exc}")
        raise AlignmentError("cannot align the photo to the reference: " + "; ".join(reasons))

    def _full(self, h_work: np.ndarray, photo_scale: float) -> np.ndarray:
        """Work-scale homography -> full-resolution photo -> reference homography."""
        return _scale_matrix(1.0 / self.ref.scale) @ h_work @ _scale_matrix(photo_scale)

    def _shift(self, homography: np.ndarray, photo_scale: float) -> float:
        """Largest movement of a reference corner, comparing the photo (rescaled to reference size) with it."""
        g = homography @ np.linalg.inv(_scale_matrix(photo_scale / self.ref.scale))  # ref-size photo -> ref
        moved = cv2.perspectiveTransform(self.corners.reshape(-1, 1, 2), g).reshape(-1, 2)
        return float(np.max(np.linalg.norm(moved - self.corners, axis=1)))

    def _orb(self, small: np.ndarray, scale: float) -> AlignResult:
        if self.ref.descriptors is None or len(self.ref.keypoints) < self.settings.min_inliers:
            raise AlignmentError("the reference image has too few features")
        kps, desc = _orb().detectAndCompute(small, None)
        if desc is None or len(kps) < self.settings.min_inliers:
            raise AlignmentError(f"only {0 if desc is None else len(kps)} features in the photo")
        pairs = self._matcher.knnMatch(desc, self.ref.descriptors, k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
        if len(good) < self.settings.min_inliers:
            raise AlignmentError(f"only {len(good)} matching features (need {self.settings.min_inliers})")
        src = np.array([kps[m.queryIdx].pt for m in good], dtype=np.float32).reshape(-1, 1, 2)
        dst = self.ref.keypoints[[m.trainIdx for m in good]].reshape(-1, 1, 2)
        h_work, mask = cv2.findHomography(src, dst, cv2.RANSAC, 3.0, maxIters=2000, confidence=0.995)
        if h_work is None or mask is None:
            raise AlignmentError("no homography fits the matching features")
        inliers = int(mask.sum())
        if inliers < self.settings.min_inliers:
            raise AlignmentError(f"only {inliers} consistent features (need {self.settings.min_inliers})")
        _check_not_degenerate(h_work)
        homography = self._full(h_work, scale)
        shift = self._shift(homography, scale)
        if shift > self.settings.max_shift_px:
            raise MovedTooFar(f"the photo moved {shift:.0f} px (more than max_shift_px "
                              f"{self.settings.max_shift_px:.0f}): check the camera or update the profile")
        return AlignResult(homography, "orb", shift, inliers=inliers, score=inliers / len(good))

    def _template(self, small: np.ndarray, scale: float) -> AlignResult:
        s = self.ref.scale
        x0, y0, x1, y1 = (round(v * s) for v in self.template_box)
        template = self.ref.grey[y0:y1, x0:x1]
        # search twice as far as allowed, so a camera that moved too far is seen (and refused) rather than
        # matched to the best look-alike within the limit (a row of drums repeats itself every digit)
        margin = int(np.ceil(2 * self.settings.max_shift_px * s)) + 1
        sx0, sy0 = max(0, x0 - margin), max(0, y0 - margin)
        sx1, sy1 = min(small.shape[1], x1 + margin), min(small.shape[0], y1 + margin)
        window = small[sy0:sy1, sx0:sx1]
        if template.size == 0 or window.shape[0] < template.shape[0] or window.shape[1] < template.shape[1]:
            raise AlignmentError("the digit region does not fit in the photo")
        scores = cv2.matchTemplate(window, template, cv2.TM_CCOEFF_NORMED)
        _, best, _, (bx, by) = cv2.minMaxLoc(scores)
        if not np.isfinite(best) or best < MIN_TEMPLATE_SCORE:
            raise AlignmentError(f"the digit region was not found (best match {best:.2f} < {MIN_TEMPLATE_SCORE})")
        for code, how in ((1, "mirrored left-right"), (0, "upside down")):
            flipped = float(cv2.matchTemplate(window, cv2.flip(template, code), cv2.TM_CCOEFF_NORMED).max())
            if flipped >= best - 0.02:
                raise AlignmentError(f"the photo looks {how} against the reference ({flipped:.2f} vs {best:.2f}): "
                                     "check the profile's transform")
        dx, dy = (sx0 + bx) - x0, (sy0 + by) - y0  # photo position minus reference position, work pixels
        # a peak on the border of the searched area (window or photo) may be a look-alike of a region further out
        at_edge = (bx == 0 and dx < 0) or (bx == scores.shape[1] - 1 and dx > 0) \
            or (by == 0 and dy < 0) or (by == scores.shape[0] - 1 and dy > 0)
        if at_edge:
            raise AlignmentError("the best match is at the edge of the searched area (the camera moved too far?)")
        # the peak must stand out: the best score away from it (beyond a quarter template) must be clearly lower
        th, tw = template.shape
        masked = scores.copy()
        masked[max(0, by - th // 4):by + th // 4 + 1, max(0, bx - tw // 4):bx + tw // 4 + 1] = -1.0
        runner_up = float(masked.max()) if masked.size else -1.0
        if best - runner_up < MIN_TEMPLATE_MARGIN:
            raise AlignmentError(f"the digit region matches in several places ({best:.2f} vs {runner_up:.2f})")
        h_work = np.array([[1.0, 0.0, -dx], [0.0, 1.0, -dy], [0.0, 0.0, 1.0]])
        homography = self._full(h_work, scale)
        shift = self._shift(homography, scale)
        if shift > self.settings.max_shift_px:
            raise MovedTooFar(f"the photo moved {shift:.0f} px (more than max_shift_px "
                              f"{self.settings.max_shift_px:.0f}): check the camera or update the profile")
        return AlignResult(homography, "template", shift, score=float(best))


def _check_not_degenerate(h: np.ndarray) -> None:
    """Refuse homographies no fixed camera produces: mirrored, squashed, strongly scaled or perspective."""
    a = h[:2, :2] / h[2, 2]
    det = float(np.linalg.det(a))
    if not np.isfinite(det) or det <= 0:
        raise AlignmentError("degenerate homography (mirrored or collapsed)")
    sv = np.linalg.svd(a, compute_uv=False)
    if sv.min() < 0.7 or sv.max() > 1.4 or sv.max() / sv.min() > 1.3:
        raise AlignmentError(f"degenerate homography (scales {sv.min():.2f}..{sv.max():.2f})")
    if np.abs(h[2, :2] / h[2, 2]).max() > 1e-3:
        raise AlignmentError("degenerate homography (strong perspective)")


def crop_boxes(image: np.ndarray, boxes: list[Box], homography: np.ndarray | None = None) -> list[np.ndarray]:
    """Cut reference-frame boxes out of a photo: directly, or through ``homography`` (photo -> reference).

    Boxes that sit close together (a row of drums) are warped in one call and sliced, which is faster.
    """
    h, w = image.shape[:2]
    if homography is None or np.allclose(homography, np.eye(3), atol=1e-9):
        for x, y, bw, bh in boxes:
            if x + bw > w or y + bh > h:
                raise AlignmentError(f"box {[x, y, bw, bh]} is outside the {w}x{h} photo")
        return [image[y:y + bh, x:x + bw] for x, y, bw, bh in boxes]
    inverse = np.linalg.inv(homography)
    for x, y, bw, bh in boxes:
        corners = np.array([[x, y], [x + bw, y], [x + bw, y + bh], [x, y + bh]], dtype=np.float64)
        in_photo = cv2.perspectiveTransform(corners.reshape(-1, 1, 2), inverse).reshape(-1, 2)
        if in_photo.min() < -2 or (in_photo[:, 0] > w + 2).any() or (in_photo[:, 1] > h + 2).any():
            raise AlignmentError(f"box {[x, y, bw, bh]} falls outside the photo after alignment")
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[0] + b[2] for b in boxes), max(b[1] + b[3] for b in boxes)
    if (x1 - x0) * (y1 - y0) <= 2 * sum(b[2] * b[3] for b in boxes):
        region = _warp(image, homography, (x0, y0, x1 - x0, y1 - y0))
        return [region[y - y0:y - y0 + bh, x - x0:x - x0 + bw] for x, y, bw, bh in boxes]
    return [_warp(image, homography, box) for box in boxes]


def _warp(image: np.ndarray, homography: np.ndarray, box: Box) -> np.ndarray:
    x, y, bw, bh = box
    to_box = np.array([[1.0, 0.0, -x], [0.0, 1.0, -y], [0.0, 0.0, 1.0]]) @ homography
    return cv2.warpPerspective(image, to_box, (bw, bh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
