"""Align a photo to its profile's reference image, so a camera that moved a little still reads the right boxes.

The photo is aligned as decoded (any resolution with the reference's aspect, grey or colour); the profile's
rotate/flip is folded into the result, so the full photo is never rotated or warped — only the boxes are cut out
through the homography (``crop_boxes``). Everything is computed on a grey copy of ``WORK_PX`` long side.

Method ``orb`` (default) tries, in order, until one is trusted:

1. ``phase``: translation by phase correlation of the whole photo (at a quarter of the work size, 80 x 60 px:
   coarse, but it tells the meter from other pictures and from its mirror image better), then two windows (the
   halves of the digit region) looked at through that estimate, each phase-correlated again; the two window
   shifts give a rotation + zoom (a similarity), looked at again (up to ``PHASE_PASSES``) until the halves agree.
   Refused when the peak is weak, when the reference mirrored or turned over matches about as well (a symmetric
   meter face correlates with its mirror image), when a window does not match, when the halves do not settle,
   or when the fit turns or zooms more than a fixed camera does.
2. ``orb``: ORB features, ratio-tested matches, a RANSAC homography, sanity checks (enough inliers, not
   degenerate: no mirroring, scale within 0.7-1.4, one axis at most 1.1 x the other, nearly no perspective), and
   the two end windows below must match it (at the work scale too when the photo is no larger): ORB on a blurred
   photo was seen 4-7 px off.

On photos larger than the work size, the result of 1 or 2 is looked at once more at up to ``FINE_PX``: two
windows at the ends of the row of boxes. Windows that match and disagree with the estimate are followed until
they agree within ``FINE_ACCEPT_PX``, else the method is not trusted (the halves can settle on a wrong rotation
when one of them matches weakly: 5-8 px off before this check). Typical error 0.3 px, at most about 1 px on
seeded random moves (``tests/test_align.py``).
3. ``template``: the region around the digit boxes is searched in the photo (a pure translation, searched up
   to twice ``max_shift_px``); the match must be strong (normalised correlation >= 0.5), not on the border of the
   searched area, clearly better than anywhere else and better than the region mirrored.

Method ``template`` uses only the last. With ``track`` (the default), a photo of the same size and transform as the
last aligned one is first looked at through the last result: the two fine windows must match clearly and need less
than ``TRACK_MAX_RESIDUAL_PX`` of correction, else the full search above runs (a moved camera, a mirrored photo).
Every result must also keep each reference corner within
``max_shift_px``; a method whose result moved too far does not stop the next one (ORB on a row of look-alike
drums can match the wrong drum), but when none is trusted and one said "moved too far", that is the error
(``MovedTooFar``). If nothing is trusted, ``AlignmentError`` says why for every method: a doubtful alignment
would read the wrong pixels, and a wrong reading is worse than none.

A photo much larger than the reference (``INSIDE_LARGER`` x on both sides: a full frame vs a cropped reference)
is searched where the reference is found inside it (``align_template.find_inside``; at once when its shape
differs, else when the whole does not align; again at every full search, ~150 ms at 1920 x 1080).

The result is a homography from photo pixels (as decoded) to reference pixels (full resolution). Reference
features are computed once per reference image and cached.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from smartmeter.errors import AlignmentError, MovedTooFar
from smartmeter.ocr.align_template import TEMPLATE_FLIP_MARGIN, find_inside_photo, match_region
from smartmeter.ocr.image_io import to_grey
from smartmeter.ocr.phase import PhaseReference, correct, dft_window, phase_windows, spectrum
from smartmeter.ocr.profile import Alignment, Box, Transform
from smartmeter.ocr.reference import ReferenceFeatures, orb_detector
from smartmeter.ocr.transforms import apply_transform, is_exact, transform_matrix, transformed_size
from smartmeter.ocr.warp import check_not_degenerate, scale_matrix, warp_shrunk

log = logging.getLogger(__name__)

RATIO = 0.8
COARSE = 4  # the whole-photo translation is found at a quarter of the work size (80 x 60 px)
PHASE_MIN_RESPONSE = 0.35  # phase correlation peak of the whole photo (measured at 80 x 60: photos of the meter
# >= 0.48 with turns up to 3 degrees, other meters and a wall <= 0.22; at 160 x 120 a turned photo fell to 0.13)
MIN_FLIP_MARGIN = 0.05  # ... and beat the reference mirrored or turned over (measured: photos >= 0.06 better,
# mirrored photos >= 0.26 worse)
# Which way up the meter is is a property of the installation, not of one photo: once SETTLED_PHOTOS photos of a
# size and transform have aligned, a photo whose digits happen to look about as good turned over (a row like
# 0125348 is nearly its own 180-degree turn) is no longer refused for it; only one that matches clearly better
# turned over (by SETTLED_FLIP_MARGIN: a camera knocked over) is. bench/unseen_streams.py: 0.2-0.8 % of a month's
# photos of two held-out meters were refused "upside down" at 0.91 vs 0.89.
SETTLED_PHOTOS = 3
SETTLED_FLIP_MARGIN = 0.05
PATCH_MIN_RESPONSE = 0.15  # ... and of each half of the digit region, once moved by the whole photo's translation
PHASE_MAX_SCALE = 0.1  # beyond this zoom or turn, a translation + two patches is no model: ORB decides
PHASE_MAX_DEGREES = 6.0
PHASE_PASSES = 3  # further passes look through the last pass' rotation and zoom ...
CONVERGED_PX = 0.5  # ... unless the first pass found the translation right already
REFINE_PASSES = 3  # looks at the fine scale until the end windows agree with the estimate (else: not trusted) ...
FINE_ACCEPT_PX = 2.0  # ... to within this many fine-scale pixels (the correction is then applied)
PHASE_MAX_RESIDUAL_PX = 2.0  # the halves' last correction at the work scale must be this small, else not trusted
TRACK_MIN_RESPONSE = 0.3  # tracking: both end windows must match at least this well at the last position ...
TRACK_MAX_RESIDUAL_PX = 1.0  # ... and need less than this correction (fine-scale pixels), else the full search
INSIDE_LARGER = 1.25  # a photo at least this much larger than the reference (both sides, after the transform) may
# show it as a part: it is looked for inside (different aspect: at once; same aspect: when the whole does not align)
SHIFT_SHARE = 0.125  # the default max shift: this share of the reference's long side (80 px at 640 px)
SHAPE_TOLERANCE = 0.02  # aspects (width / height) this close, relative, are the same shape


def max_shift(settings: Alignment, reference_size: tuple[int, int]) -> float:
    """How far (reference pixels) a photo may have moved: ``max_shift_px`` when the profile sets it, else
    ``SHIFT_SHARE`` of the reference's long side, at least the default (80 px): the same few per cent of the
    frame at any resolution (a 4 % move of a 2448 px photo is 100 px)."""
    if "max_shift_px" in settings.model_fields_set:
        return settings.max_shift_px
    return max(settings.max_shift_px, SHIFT_SHARE * max(reference_size))


@dataclass(frozen=True)
class AlignResult:
    homography: np.ndarray  # 3x3, photo pixels -> reference pixels
    method: str  # "identity" | "phase" | "orb" | "template" | "tracked" (the last photo's, corrected)
    shift_px: float  # largest movement of a reference-frame corner, reference pixels
    inliers: int = 0
    score: float = 0.0



class Aligner:
    """Aligns photos of one installation to its reference image."""

    def __init__(self, reference: ReferenceFeatures, settings: Alignment, boxes: list[Box]) -> None:
        self.ref = reference
        self.settings = settings
        self.work_size = (reference.grey.shape[1], reference.grey.shape[0])
        self.max_shift = max_shift(settings, reference.size)
        self.work_px = max(self.work_size)
        w, h = reference.size
        self.corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
        x0 = min(b[0] for b in boxes)
        y0 = min(b[1] for b in boxes)
        x1 = max(b[0] + b[2] for b in boxes)
        y1 = max(b[1] + b[3] for b in boxes)
        pad = max(x1 - x0, y1 - y0) * 0.15
        self.template_box = (max(0, int(x0 - pad)), max(0, int(y0 - pad)), min(w, int(x1 + pad)), min(h, int(y1 + pad)))
        self.ref_to_work = scale_matrix(reference.scale, reference.scale)
        self.ref_float = reference.grey.astype(np.float32)
        self.boxes = list(boxes)
        # reference spectra are computed once: each photo then costs one transform per window, not two
        self.patches = phase_windows(self.ref_float, self._halves(reference.scale))
        self.fine_patches = phase_windows(reference.fine, self._windows(reference.fine_scale))
        self.coarse_size = (max(1, self.work_size[0] // COARSE), max(1, self.work_size[1] // COARSE))
        ref_coarse = cv2.resize(self.ref_float, self.coarse_size, interpolation=cv2.INTER_AREA)
        self.ref_coarse = PhaseReference(ref_coarse)
        self.ref_coarse_flipped = [(PhaseReference(cv2.flip(ref_coarse, code)), how) for code, how in
                                   ((1, "mirrored left-right"), (0, "upside down"), (-1, "turned by 180 degrees"))]
        self._matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
        self._last: tuple[tuple[int, ...], Transform, AlignResult] | None = None  # for tracking (one assignment)
        # photo size + transform -> where the reference sits in such photos (photo -> reference px), for photos
        # that show much more than the reference (a full camera frame against a cropped reference)
        self._inside: dict[tuple[tuple[int, ...], float, str], np.ndarray] = {}
        self._aligned: dict[tuple[tuple[int, ...], float, str], int] = {}  # photos aligned, per size + transform
        self._settled = False  # the photo being searched: its size + transform has aligned SETTLED_PHOTOS times

    def align(self, image: np.ndarray, transform: Transform | None = None, reduced: int = 1) -> AlignResult:
        """Homography photo -> reference, or AlignmentError. ``image`` is the photo as decoded (BGR or grey, any
        resolution with the reference's aspect); ``transform`` (the profile's rotate/flip) is folded into the
        homography, so the photo itself is never rotated at full size. ``reduced``: how much smaller than its file
        the photo was decoded (a full frame decoded at 1/2 is still a photo larger than the reference)."""
        if self.settings.method == "none":
            return AlignResult(np.eye(3), "identity", 0.0)
        grey = to_grey(image)
        transform = transform or Transform()
        key = _key(grey, transform)
        result = self._track(grey, transform) if self.settings.track else None
        if result is None:
            self._settled = self._aligned.get(key, 0) >= SETTLED_PHOTOS
            result = self._search(grey, transform, reduced)
            if self.settings.track:
                self._last = (grey.shape, transform, result)
        self._aligned[key] = self._aligned.get(key, 0) + 1
        return result

    def forget(self) -> None:
        """Drop the tracked position: the next photo gets the full search."""
        self._last = None

    def _track(self, grey: np.ndarray, transform: Transform) -> AlignResult | None:
        """The last photo's alignment, corrected by the two end windows at the fine scale, when the camera has
        not moved: both windows match clearly and need less than TRACK_MAX_RESIDUAL_PX of correction. None
        (then the full search runs) otherwise; a photo of another size or transform is never tracked."""
        last = self._last
        if last is None or last[0] != grey.shape or last[1] != transform:
            return None
        prev = last[2]
        f = self.ref.fine_scale
        try:
            delta, responses, residual = correct(grey, scale_matrix(f, f) @ prev.homography, self.fine_patches,
                                                 PATCH_MIN_RESPONSE)
        except AlignmentError:
            return None
        if residual >= TRACK_MAX_RESIDUAL_PX or min(responses) < TRACK_MIN_RESPONSE:
            return None
        homography = np.asarray(np.linalg.inv(scale_matrix(f, f)) @ delta @ scale_matrix(f, f) @ prev.homography)
        h_work = self.ref_to_work @ homography @ np.linalg.inv(self.work_matrix(grey, transform))
        try:
            check_not_degenerate(h_work)
        except AlignmentError:
            return None
        shift = self._shift(h_work)
        if shift > self.max_shift:
            return None
        return AlignResult(homography, "tracked", shift, score=min(responses))

    def _search(self, grey: np.ndarray, transform: Transform, reduced: int = 1) -> AlignResult:
        """Full alignment (see the module docstring), inside a much larger photo where the reference is found."""
        key = _key(grey, transform)
        first: AlignmentError | None = None
        other_shape, larger = self._compare(grey, transform, reduced)
        if key not in self._inside and not (larger and other_shape):
            try:
                return self._search_once(grey, transform, reduced)
            except MovedTooFar:
                raise  # a camera that moved too far stays refused
            except AlignmentError as exc:
                if not larger:
                    raise
                first = exc
        try:
            self._inside[key] = find_inside_photo(grey, transform, self.ref)[0]
            return self._search_once(grey, transform, reduced)
        except AlignmentError as exc:
            self._inside.pop(key, None)
            if first is None:
                tw, th = transformed_size(grey.shape[1], grey.shape[0], transform)
                raise AlignmentError(f"photo is {tw}x{th}, the reference {self.ref.size[0]}x{self.ref.size[1]}: "
                                     f"{exc}") from exc
            raise AlignmentError(f"{first}; looked for inside the larger photo: {exc}") from exc

    def _compare(self, grey: np.ndarray, transform: Transform, reduced: int = 1) -> tuple[bool, bool]:
        """Whether the turned photo has another shape than the reference (relative to the aspect, allowing the
        pixel a reduced decode rounds away: a 785x101 strip decodes at 1/2 as 392x50), and whether it is much
        larger (its file's size, not the reduced decode's: a full frame decoded at 1/2 may match the reference's
        size while showing the meter at half the scale)."""
        (tw, th), (rw, rh) = transformed_size(grey.shape[1], grey.shape[0], transform), self.ref.size
        rounding = reduced / min(tw * reduced, th * reduced) if reduced > 1 else 0.0
        other = abs((tw / th) / (rw / rh) - 1.0) > SHAPE_TOLERANCE + 2 * rounding
        return other, min(tw * reduced / rw, th * reduced / rh) >= INSIDE_LARGER

    def _search_once(self, grey: np.ndarray, transform: Transform, reduced: int = 1) -> AlignResult:
        small, photo_to_work = self.work_image(grey, transform, reduced)
        reasons: list[str] = []
        too_far: MovedTooFar | None = None
        methods = [("translation", self._phase), ("features", self._orb), ("template", self._template)]
        if self.settings.method == "template":
            methods = methods[2:]
        for label, method in methods:
            try:
                h_work, result = method(small)
                homography = np.linalg.inv(self.ref_to_work) @ h_work @ photo_to_work
                if label == "features" or (label == "translation" and self.ref.fine_scale > self.ref.scale):
                    homography = self._refine(grey, homography, confirm=label == "features")
                    h_work = self.ref_to_work @ homography @ np.linalg.inv(photo_to_work)
                check_not_degenerate(h_work)
                shift = self._shift(h_work)
                if shift > self.max_shift:
                    raise MovedTooFar(f"the photo moved {shift:.0f} px (more than max_shift_px "
                                      f"{self.max_shift:.0f}): check the camera or update the profile")
            except MovedTooFar as exc:
                too_far = too_far or exc
                reasons.append(f"{label}: {exc}")
                continue
            except AlignmentError as exc:
                reasons.append(f"{label}: {exc}")
                log.debug("%s alignment failed (%s)", label, exc)
                continue
            return AlignResult(homography, result.method, shift, result.inliers, result.score)
        if too_far is not None:  # a method that trusted its estimate says the camera moved: say so first
            raise MovedTooFar(f"{too_far}; " + "; ".join(r for r in reasons if str(too_far) not in r))
        raise AlignmentError("cannot align the photo to the reference: " + "; ".join(reasons))

    def work_matrix(self, grey: np.ndarray, transform: Transform) -> np.ndarray:
        """The 3x3 matrix photo pixels -> work pixels of :meth:`work_image`, without making the image."""
        return self._work_geometry(grey, transform)[1]

    def _work_geometry(self, grey: np.ndarray, transform: Transform) -> tuple[tuple[int, int], np.ndarray]:
        """Size the photo is first shrunk to, and the matrix photo pixels -> work pixels. Quarter turns and
        flips shrink first, then permute pixels exactly; other angles shrink, then turn onto the work canvas.
        A photo the reference was found inside: the work image is that part of it."""
        inside = self._inside.get(_key(grey, transform))
        if inside is not None:
            return self.work_size, np.asarray(self.ref_to_work @ inside)
        h, w = grey.shape[:2]
        tw, th = transformed_size(w, h, transform)
        ww, wh = self.work_size
        if is_exact(transform):
            size = (wh, ww) if (tw, th) != (w, h) else (ww, wh)
        else:
            s = ww / tw
            size = (max(1, round(w * s)), max(1, round(h * s)))
        return size, np.asarray(transform_matrix(size[0], size[1], transform) @ scale_matrix(size[0] / w, size[1] / h))

    def work_image(self, grey: np.ndarray, transform: Transform, reduced: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """The photo in the reference frame at work size (grey), and the 3x3 matrix photo pixels -> work pixels."""
        h, w = grey.shape[:2]
        tw, th = transformed_size(w, h, transform)
        rw, rh = self.ref.size
        key = _key(grey, transform)
        other_shape, larger = self._compare(grey, transform, reduced)
        if key not in self._inside and other_shape:
            if not larger:
                raise AlignmentError(f"photo is {tw * reduced}x{th * reduced} but the reference is {rw}x{rh} "
                                     "(another camera or transform?)")
            self._inside[key] = find_inside_photo(grey, transform, self.ref)[0]
        if key in self._inside:
            to_work = np.asarray(self.ref_to_work @ self._inside[key])
            return warp_shrunk(grey, to_work, self.work_size), to_work
        size, to_work = self._work_geometry(grey, transform)
        small = grey if (w, h) == size else cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        if is_exact(transform):
            return apply_transform(small, transform), to_work
        m = transform_matrix(size[0], size[1], transform)
        warped = cv2.warpAffine(small, m[:2], self.work_size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return warped, to_work

    def _shift(self, h_work: np.ndarray) -> float:
        """Largest movement of a reference corner (reference pixels) by a work-scale photo -> reference map."""
        g = np.linalg.inv(self.ref_to_work) @ h_work @ self.ref_to_work
        moved = cv2.perspectiveTransform(self.corners.reshape(-1, 1, 2), g).reshape(-1, 2)
        return float(np.max(np.linalg.norm(moved - self.corners, axis=1)))

    # -- translation by phase correlation, refined to a rotation + scale by two patches ---------------------
    def _halves(self, scale: float) -> list[tuple[int, int, int, int]]:
        """Left and right halves of the region around the boxes (reference pixels at ``scale``), grown to sizes
        the DFT likes (trimming them instead cuts through the counter's frame and biases the estimate)."""
        w, h = round(self.ref.size[0] * scale), round(self.ref.size[1] * scale)
        x0, y0, x1, y1 = (round(v * scale) for v in self.template_box)
        mid = (x0 + x1) / 2.0
        return [dft_window((a + b) / 2.0, (y0 + y1) / 2.0, b - a, y1 - y0, w, h) for a, b in ((x0, mid), (mid, x1))]

    def _windows(self, scale: float) -> list[tuple[int, int, int, int]]:
        """Two windows (reference pixels at ``scale``) around the two boxes farthest apart — the ends of the
        row of drums, where a small rotation or zoom shows most — about 4 boxes wide and 2 high. One box only:
        the halves of the region around it."""
        w, h = round(self.ref.size[0] * scale), round(self.ref.size[1] * scale)
        centres = [((x + bw / 2) * scale, (y + bh / 2) * scale) for x, y, bw, bh in self.boxes]
        pairs = [(i, j) for i in range(len(centres)) for j in range(i + 1, len(centres))]
        if not pairs:
            return self._halves(scale)
        i, j = max(pairs, key=lambda p: abs(complex(*centres[p[0]]) - complex(*centres[p[1]])))
        return [dft_window(*centres[k], 4 * self.boxes[k][2] * scale, 2 * self.boxes[k][3] * scale, w, h)
                for k in (i, j)]

    def _phase(self, small: np.ndarray) -> tuple[np.ndarray, AlignResult]:
        if small.shape != self.ref.grey.shape:
            raise AlignmentError("work image size differs from the reference")
        # coarse translation at a quarter of the work size (a sixteenth of the cost); the windows make it precise.
        # (no window function, as before: the photo's spectrum is shared by the reference and its mirror images)
        coarse = spectrum(cv2.resize(small, self.coarse_size, interpolation=cv2.INTER_AREA))
        (dx, dy), response = self.ref_coarse.correlate(spec=coarse)
        if not np.isfinite(response) or response < PHASE_MIN_RESPONSE:
            raise AlignmentError(f"no clear translation (response {response:.2f} < {PHASE_MIN_RESPONSE})")
        for flipped, how in self.ref_coarse_flipped:  # a symmetric meter face also matches a mirrored photo
            other = flipped.correlate(spec=coarse)[1]
            if other >= response + (SETTLED_FLIP_MARGIN if self._settled else -MIN_FLIP_MARGIN):
                raise AlignmentError(f"the photo looks {how} against the reference ({other:.2f} vs "
                                     f"{response:.2f}): check the profile's transform")
        sx, sy = self.work_size[0] / self.coarse_size[0], self.work_size[1] / self.coarse_size[1]
        h_work = np.array([[1.0, 0.0, -dx * sx], [0.0, 1.0, -dy * sy], [0.0, 0.0, 1.0]])
        responses: list[float] = []
        residual = 0.0
        for _ in range(PHASE_PASSES):  # look at the halves through the current estimate, correct it
            delta, responses, residual = correct(small, h_work, self.patches, PATCH_MIN_RESPONSE)
            h_work = delta @ h_work
            if residual < CONVERGED_PX:
                break
        if residual > PHASE_MAX_RESIDUAL_PX:
            raise AlignmentError(f"the halves of the digit region do not settle ({residual:.1f} px after "
                                 f"{PHASE_PASSES} looks)")
        a = complex(h_work[0, 0], h_work[1, 0])
        if abs(abs(a) - 1.0) > PHASE_MAX_SCALE or abs(np.angle(a, deg=True)) > PHASE_MAX_DEGREES:
            raise AlignmentError(f"the halves of the digit region disagree (scale {abs(a):.2f}, "
                                 f"{np.angle(a, deg=True):.1f} degrees)")
        return h_work, AlignResult(np.eye(3), "phase", 0.0, score=min(float(response), *responses))

    def _refine(self, grey: np.ndarray, homography: np.ndarray, confirm: bool = False) -> np.ndarray:
        """Look again at the ends of the row of boxes at the fine scale (the work scale leaves up to a pixel of
        error on larger photos). Windows that do not match clearly leave the estimate as it was (``confirm``: they
        must match, else AlignmentError); windows that match but disagree with it are followed until they agree
        (the work-scale halves can settle on a wrong rotation when one of them matches weakly), and AlignmentError
        if they do not: the next method decides."""
        f = self.ref.fine_scale
        to_fine = scale_matrix(f, f) @ homography
        for look in range(REFINE_PASSES):
            try:
                delta, responses, residual = correct(grey, to_fine, self.fine_patches, PATCH_MIN_RESPONSE)
            except AlignmentError as exc:
                if look == 0 and not confirm:
                    log.debug("fine alignment pass skipped: %s", exc)
                    return homography
                raise AlignmentError(f"the ends of the digit row do not match after a correction ({exc})") from exc
            to_fine = delta @ to_fine
            if residual < FINE_ACCEPT_PX:  # a small correction: phase correlation measures it precisely
                return np.asarray(np.linalg.inv(scale_matrix(f, f)) @ to_fine)
        raise AlignmentError(f"the ends of the digit row disagree with the translation (still {residual:.1f} px "
                             f"off after {REFINE_PASSES} looks)")

    # -- ORB features + RANSAC homography --------------------------------------------------------------------
    def _orb(self, small: np.ndarray) -> tuple[np.ndarray, AlignResult]:
        if self.ref.descriptors is None or len(self.ref.keypoints) < self.settings.min_inliers:
            raise AlignmentError("the reference image has too few features")
        kps, desc = orb_detector().detectAndCompute(small, None)
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
        return h_work, AlignResult(np.eye(3), "orb", 0.0, inliers=inliers, score=inliers / len(good))

    # -- template match of the digit region (translation) ------------------------------------------------------
    def _template(self, small: np.ndarray) -> tuple[np.ndarray, AlignResult]:
        s = self.ref.scale
        x0, y0, x1, y1 = (round(v * s) for v in self.template_box)
        h_work, best = match_region(small, self.ref.grey, (x0, y0, x1, y1), self.max_shift * s,
                                    SETTLED_FLIP_MARGIN if self._settled else TEMPLATE_FLIP_MARGIN)
        return h_work, AlignResult(np.eye(3), "template", 0.0, score=best)


def _key(grey: np.ndarray, transform: Transform) -> tuple[tuple[int, ...], float, str]:
    return grey.shape[:2], float(transform.rotate), transform.flip

