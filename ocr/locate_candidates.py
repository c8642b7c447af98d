"""Candidate rows for auto-locate: the rows of digit-like blobs in the reduced photo (upright, turned by a quarter
or half, or mirrored), each fitted with digit slots and a geometry score, best first (``ocr.autolocate`` reads them).
"""

from __future__ import annotations

import cv2
import numpy as np

from smartmeter.ocr.locate_blobs import Row, find_rows, turned_rows
from smartmeter.ocr.locate_geometry import Box, Slots, deskew_matrix, fit_slots
from smartmeter.ocr.locate_verify import Candidate, count_factor

MIN_DIGITS = 3


def geometry_score(slots: Slots, work_h: float, n: int) -> float:
    """Prefer 4-8 evenly spaced, well filled, large digits."""
    count = count_factor(n)
    size = min(1.0, 0.4 + work_h / 60.0)
    return count * slots.regularity ** 0.5 * slots.filled * size


MIRROR_H = -1  # the "turn" that mirrors the photo left-right (a camera looking at the meter in a mirror)
MIRRORS = {MIRROR_H: ("horizontal", 1)}  # the profile's flip, cv2.flip's code


def quarter_matrix(code: int, width: int, height: int) -> np.ndarray:
    """3x3: pixel of a ``width x height`` photo -> the same pixel in the photo ``cv2.rotate``d by ``code`` (a
    quarter turn either way, or ``cv2.ROTATE_180``), or mirrored left-right (``MIRROR_H``)."""
    if code == MIRROR_H:
        return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    if code == cv2.ROTATE_90_COUNTERCLOCKWISE:
        return np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, width - 1.0], [0.0, 0.0, 1.0]])
    if code == cv2.ROTATE_180:
        return np.array([[-1.0, 0.0, width - 1.0], [0.0, -1.0, height - 1.0], [0.0, 0.0, 1.0]])
    return np.array([[0.0, -1.0, height - 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def candidate_rows(image: np.ndarray, work: np.ndarray, scale: float, quarter: int | None = None,
                rows: dict[str, list[Row]] | None = None) -> list[Candidate]:
    """Candidate rows of the photo, or of the photo turned by ``quarter`` (a ``cv2.ROTATE_90_*`` code): then only
    the reduced copy is turned, and each candidate's matrix maps the *original* photo into the turned, de-skewed
    frame, so every crop is still cut straight from the original (no full-size rotation). ``rows``: the upright
    rows of this ``work`` image, kept across the searches of one photo (turned by 180 degrees or mirrored, they
    are those rows moved: ``locate_blobs.turned_rows``)."""
    h, w = image.shape[:2]
    turn = None
    found: list[Row] | None = None
    if rows is not None and quarter in (None, cv2.ROTATE_180, MIRROR_H):
        upright = rows.get("upright")
        if upright is None:
            upright = rows["upright"] = find_rows(work)
        found = upright if quarter is None else turned_rows(upright, work.shape[1], work.shape[0],
                                                               quarter == cv2.ROTATE_180)
    if quarter is not None:
        if found is None:
            work = cv2.flip(work, MIRRORS[quarter][1]) if quarter in MIRRORS else cv2.rotate(work, quarter)
        turn = quarter_matrix(quarter, w, h)
        if quarter not in (cv2.ROTATE_180, *MIRRORS):
            w, h = h, w
    def frame(angle: float) -> np.ndarray:
        """Original photo -> the (turned and) de-skewed frame of ``angle``."""
        matrix = deskew_matrix(w, h, angle)[0]
        return matrix if turn is None else matrix @ turn

    out = []
    for row in find_rows(work) if found is None else found:
        matrix, _, _ = deskew_matrix(w, h, row.angle)
        slots = fit_slots(row, scale, matrix)
        if slots is None or slots.count < MIN_DIGITS:
            continue
        geo = geometry_score(slots, slots.digit_h * scale, slots.count)
        out.append(Candidate(row, row.angle, frame(row.angle), slots, 0, slots.count, geo, frame=frame))
    weigh_size(out, out)
    out.sort(key=lambda c: -c.geometry)
    return distinct(out)


def weigh_size(cands: list[Candidate], rows: list[Candidate]) -> None:
    """The counter is the largest row of digits on the face: weigh each candidate's size relative to the tallest
    of ``rows`` (all candidates before reading; after reading, the rows that read as digits)."""
    if not rows:
        return
    tallest = max(c.slots.digit_h for c in rows)
    for c in cands:
        factor = min(1.0, c.slots.digit_h / tallest) ** 0.7
        c.geometry *= factor / c.relative
        c.relative = factor


def iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter) if inter else 0.0


def window_of(c: Candidate) -> Box:
    boxes = c.boxes
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[0] + b[2] for b in boxes), max(b[1] + b[3] for b in boxes)
    return x0, y0, x1 - x0, y1 - y0


def distinct(cands: list[Candidate]) -> list[Candidate]:
    """Drop candidates that repeat a better one (same window, same digit count, similar angle)."""
    kept: list[Candidate] = []
    for c in cands:
        if not any(k.slots.count == c.slots.count and abs(k.angle - c.angle) < 2
                   and iou(window_of(k), window_of(c)) > 0.7 for k in kept):
            kept.append(c)
    return kept
