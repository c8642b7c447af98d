"""Normalised cross-correlation searches of alignment (``align.py``).

* ``match_region``: the digit region in the photo, a pure translation — the last alignment method.
* ``find_inside``: the whole reference in a photo that shows much more than it (a full camera frame against a
  reference cropped to the meter): over the photo at ``SEARCH_PX``, at scales from the largest that fits down to
  ``INSIDE_SMALLEST`` of it in steps of ``INSIDE_STEP`` (then finer), and turns up to ``INSIDE_ANGLES``.
"""

from __future__ import annotations

import cv2
import numpy as np

from smartmeter.errors import AlignmentError
from smartmeter.ocr.profile import Transform
from smartmeter.ocr.reference import ReferenceFeatures
from smartmeter.ocr.transforms import transform_matrix, transformed_size
from smartmeter.ocr.warp import scale_matrix

MIN_TEMPLATE_SCORE = 0.5
MIN_TEMPLATE_MARGIN = 0.08  # best score minus the best score away from the peak
TEMPLATE_FLIP_MARGIN = -0.02  # the region mirrored or turned over matching at least best + this: refused


def match_region(small: np.ndarray, ref_grey: np.ndarray, box: tuple[int, int, int, int],
                 max_shift: float, flip_margin: float = TEMPLATE_FLIP_MARGIN) -> tuple[np.ndarray, float]:
    """The translation (3x3, photo work pixels -> reference work pixels) that puts the reference's region ``box``
    (``x0, y0, x1, y1``, work pixels) where it matches in the work-size photo ``small``, and its score; searched
    up to twice ``max_shift`` (work pixels). AlignmentError when the match is weak, looks mirrored, is on the
    border of the searched area or is not clearly better than anywhere else. ``flip_margin``: the region mirrored
    or turned over matching at least ``best + flip_margin`` is refused as a flipped photo."""
    x0, y0, x1, y1 = box
    template = ref_grey[y0:y1, x0:x1]
    # search twice as far as allowed, so a camera that moved too far is seen (and refused) rather than
    # matched to the best look-alike within the limit (a row of drums repeats itself every digit)
    margin = int(np.ceil(2 * max_shift)) + 1
    sx0, sy0 = max(0, x0 - margin), max(0, y0 - margin)
    sx1, sy1 = min(small.shape[1], x1 + margin), min(small.shape[0], y1 + margin)
    window = small[sy0:sy1, sx0:sx1]
    if template.size == 0 or window.shape[0] < template.shape[0] or window.shape[1] < template.shape[1]:
        raise AlignmentError("the digit region does not fit in the photo")
    scores = cv2.matchTemplate(window, template, cv2.TM_CCOEFF_NORMED)
    _, best, _, (bx, by) = cv2.minMaxLoc(scores)
    if not np.isfinite(best) or best < MIN_TEMPLATE_SCORE:
        raise AlignmentError(f"the digit region was not found (best match {best:.2f} < {MIN_TEMPLATE_SCORE})")
    for code, how in ((1, "mirrored left-right"), (0, "upside down"), (-1, "turned by 180 degrees")):
        flipped = float(cv2.matchTemplate(window, cv2.flip(template, code), cv2.TM_CCOEFF_NORMED).max())
        if flipped >= best + flip_margin:
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
    return h_work, float(best)


SEARCH_PX = 480  # long side of the photo when the reference is looked for inside a larger one
INSIDE_STEP = 1.06  # scale steps of that search (the alignment that follows corrects the rest)
INSIDE_FINE = 6  # ... then that step in this many parts around the best
INSIDE_ANGLES = (-6.0, -4.0, -2.0, 2.0, 4.0, 6.0)  # degrees the camera may be turned, tried at the best scale
INSIDE_SMALLEST = 0.2  # smallest reference looked for, as a share of the largest that fits in the photo
INSIDE_MIN_SCORE = 0.4  # normalised correlation of the best place and scale, at least


def find_inside_photo(grey: np.ndarray, transform: Transform, ref: ReferenceFeatures) -> tuple[np.ndarray, float]:
    """:func:`find_inside` on the photo as decoded, turned by the profile's ``transform``, at ``SEARCH_PX``."""
    h, w = grey.shape[:2]
    tw, th = transformed_size(w, h, transform)
    s = min(1.0, SEARCH_PX / max(tw, th))
    size = (max(1, round(tw * s)), max(1, round(th * s)))
    return find_inside(grey, scale_matrix(size[0] / tw, size[1] / th) @ transform_matrix(w, h, transform), size, ref)


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
