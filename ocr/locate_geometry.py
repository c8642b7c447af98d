"""From a row of blobs to evenly spaced digit boxes in the de-skewed photo, plus the crops and colour cues.

De-skew convention (the same as ``Profile.transform.rotate``): rotate counter-clockwise by ``angle`` degrees
about the photo centre, on a canvas grown so no corner is cut (see ``deskew_matrix``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import cv2
import numpy as np

from smartmeter.ocr.locate_blobs import MAX_PITCH, Row

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]


def deskew_matrix(width: int, height: int, angle: float) -> tuple[np.ndarray, int, int]:
    """2x3 matrix rotating a ``width x height`` photo by ``angle`` degrees CCW onto a grown canvas, and its size."""
    m = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), angle, 1.0)
    c, s = abs(m[0, 0]), abs(m[0, 1])
    out_w, out_h = int(math.ceil(height * s + width * c)), int(math.ceil(height * c + width * s))
    m[0, 2] += out_w / 2.0 - width / 2.0
    m[1, 2] += out_h / 2.0 - height / 2.0
    return m, out_w, out_h


def deskew(image: np.ndarray, angle: float) -> np.ndarray:
    """The whole photo de-skewed (what a profile with ``transform.rotate = angle`` reads from)."""
    if abs(angle) < 1e-6:
        return image
    m, w, h = deskew_matrix(image.shape[1], image.shape[0], angle)
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def crop_deskewed(image: np.ndarray, matrix: np.ndarray, box: Box) -> np.ndarray:
    """Cut ``box`` (de-skewed coordinates) straight from the original photo: no full-size rotation needed."""
    x, y, w, h = box
    m = matrix.copy()
    m[0, 2] -= x
    m[1, 2] -= y
    return cv2.warpAffine(image, m, (max(1, w), max(1, h)), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@dataclass
class Slots:
    """Evenly spaced digit positions along a de-skewed row."""

    x0: float  # centre of slot 0, de-skewed full-resolution coordinates
    pitch: float
    count: int
    cy: float
    digit_h: float
    digit_w: float
    regularity: float  # 1 = perfectly even spacing
    filled: float  # share of slots that had a blob
    pieces: float  # mean pieces per blob (seven-segment digits come in pieces)
    box_h: float = 1.22  # digit box height relative to the digit height
    box_w: float = 1.3  # digit box width relative to the digit width (at least 0.55 x the box height)
    grow: float = 0.0  # perspective: slot k is centred at x0 + pitch k + grow k^2 (the pitch grows along the row)

    def centre(self, k: int) -> float:
        return self.x0 + k * self.pitch + self.grow * k * k

    def box(self, k: int) -> Box:
        bh = self.digit_h * self.box_h
        bw = min(self.pitch * 0.98, max(self.digit_w * self.box_w, bh * 0.55))
        cx = self.centre(k)
        return int(round(cx - bw / 2)), int(round(self.cy - bh / 2)), int(round(bw)), int(round(bh))

    def boxes(self, start: int = 0, stop: int | None = None) -> list[Box]:
        return [self.box(k) for k in range(start, self.count if stop is None else stop)]


def fit_slots(row: Row, scale: float, matrix: np.ndarray) -> Slots | None:
    """Map a working-image row into de-skewed full-resolution coordinates and regularise its spacing."""
    theta = math.radians(row.angle)
    c, s = math.cos(theta), abs(math.sin(theta))
    pts, hs, ws = [], [], []
    for b in row.blobs:
        p = matrix @ np.array([b.cx / scale, b.cy / scale, 1.0])
        pts.append(p)
        det = c * c - s * s
        hs.append(max(1.0, (b.h * c - b.w * s) / det) / scale)
        ws.append(max(1.0, (b.w * c - b.h * s) / det) / scale)
    u = np.array([p[0] for p in pts])
    v = np.array([p[1] for p in pts])
    h = float(np.median(hs))
    wide = [w for w in ws if w > 0.45 * h] or ws
    w_digit = float(np.percentile(wide, 75))
    best = None
    for narrow in (0.0, 0.6, 0.8):  # a seven-segment '1' (and '7', narrower than 0.8 of a digit in some LCD
        # faces) sits at the right of its cell: narrow glyphs are moved to the cell's centre, the most even fit wins
        uu = np.array([x - (w_digit - w) / 2 if w < narrow * w_digit else x for x, w in zip(u, ws, strict=True)])
        fit = _even_spacing(uu, h)
        if fit is not None and (best is None or fit[3] > best[3]):
            best = fit
    if best is None:
        return None
    x0, pitch, k, regularity = best
    count = int(k[-1]) + 1
    return Slots(float(x0), float(pitch), count, float(np.median(v)), h, w_digit, regularity,
                 len(k) / count, float(np.mean([b.pieces for b in row.blobs])))


def _even_spacing(u: np.ndarray, h: float) -> tuple[float, float, np.ndarray, float] | None:
    """Fit centres to ``x0 + pitch * k`` with integer k (gaps allowed): (x0, pitch, k, regularity)."""
    d = np.diff(u)
    if len(d) == 0 or d.min() <= 0.25 * h:
        return None
    p0 = float(np.percentile(d, 30))
    k = np.round((u - u[0]) / p0).astype(int)
    if len(set(k.tolist())) != len(k) or k[-1] + 1 > 12:
        return None
    pitch, x0 = np.polyfit(k, u, 1)
    resid = np.abs(u - (x0 + pitch * k))
    regularity = max(0.0, 1.0 - float(resid.max()) / (0.25 * pitch))
    if regularity <= 0.0 or not 0.35 * h <= pitch <= MAX_PITCH * h:  # as far apart as a chain may link
        return None
    return float(x0), float(pitch), k, regularity


def border_level(crop: np.ndarray) -> float:
    """Median grey of the crop's outer ring: the background the digit sits on."""
    g = crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    ring = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
    return float(np.median(ring))


def red_share(crop: np.ndarray) -> float:
    """Share of saturated red pixels (decimal drums are red, or framed in red)."""
    if crop.ndim != 3:
        return 0.0
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    red = ((hue <= 10) | (hue >= 165)) & (sat >= 90) & (val >= 60)
    return float(red.mean())


def decimals_from_red(shares: list[float]) -> int:
    """How many trailing slots are red while the leading ones are not (0 when there is no such evidence)."""
    n = len(shares)
    if n < 3:
        return 0
    lead = float(np.median(shares[: max(1, n - 3)]))
    count = 0
    for share in reversed(shares):
        if share >= 0.12 and share >= lead + 0.1:
            count += 1
        else:
            break
    return count if count <= 3 and count < n - 1 else 0


def decimal_point(image: np.ndarray, matrix: np.ndarray, slots: Slots, dark_ink: bool, top: bool = False) -> int:
    """LCD: the slot index after which a decimal point sits (-1 if none is seen). ``top``: look for it where it
    sits in a photo turned upside down, at the top of the digits."""
    best, best_area = -1, 0.0
    h = slots.digit_h
    for j in range(slots.count - 1):
        right = slots.box(j)
        left = slots.box(j + 1)
        reach = 0.2 if top else 0.1  # turned, the point sits where the boxes fitted to the turned digits end
        x0 = right[0] + right[2] - int(reach * h)
        x1 = left[0] + int(reach * h)
        y0 = int(slots.cy - 0.65 * h) if top else int(slots.cy + 0.25 * h)
        box = (x0, y0, max(2, x1 - x0), max(2, int(0.4 * h)))
        g = cv2.cvtColor(crop_deskewed(image, matrix, box), cv2.COLOR_BGR2GRAY)
        mode = cv2.THRESH_BINARY_INV if dark_ink else cv2.THRESH_BINARY
        if float(g.std()) < 12:
            continue
        _, binary = cv2.threshold(g, 0, 255, mode | cv2.THRESH_OTSU)
        n, _, stats, _ = cv2.connectedComponentsWithStats(binary)
        for x, y, w, hh, area in stats[1:n]:
            compact = 0.5 <= w / max(hh, 1) <= 2.0 and area >= 0.4 * w * hh
            touches = x == 0 or y == 0 or x + w >= g.shape[1] or y + hh >= g.shape[0]
            if compact and not touches and (0.05 * h) ** 2 <= area <= (0.22 * h) ** 2 and area > best_area:
                best, best_area = j, float(area)
    return best


LOOSE_OFFSET = 0.3  # a cell that might hold a digit of the row has it near its centre (x the pitch)
LOOSE_HEIGHT = 0.6  # ... at least this tall (x the digit height): smaller print ("1.8.0", "kWh") is a label
LOOSE_WIDTH = 1.3  # ... and at most this wide (x the digit width)


def digit_offset(image: np.ndarray, matrix: np.ndarray, slots: Slots, k: int,
                 light_on_dark: bool | None, loose: bool = False) -> float | None:
    """Where slot ``k`` holds one digit-like blob of the row's size: its centre's offset from the slot centre
    (de-skewed pixels), None when there is none.

    The crop is taller than a digit box (1.8 x the digit height), so the side of a window frame or a panel
    edge, which runs past the digits, touches its top or bottom and does not count. ``light_on_dark`` None tries
    both polarities (a red decimal drum may invert the contrast). ``loose``: anything that might be a digit
    (``LOOSE_HEIGHT`` to 1.6 x the digit height, no wider than ``LOOSE_WIDTH`` digits, near the row's centre line
    and the cell's centre, not cut by the crop's sides), for deciding that a row may continue. A bar taller
    than the digits (the side of the window, a drum's cell edge) is never a digit.
    """

    found = digit_centre(image, matrix, slots, k, light_on_dark, loose)
    return None if found is None else found[0]


def digit_centre(image: np.ndarray, matrix: np.ndarray, slots: Slots, k: int, light_on_dark: bool | None,
                 loose: bool = False) -> tuple[float, float] | None:
    """``digit_offset``, with the blob centre's vertical offset from the row's centre line: (dx, dy)."""
    best: tuple[float, float] | None = None
    for width in (1.4, 0.8):  # narrow: cut off a drum's cell edges that may touch the digit
        off = _blob_offset(image, matrix, slots, k, light_on_dark, loose, width)
        if off is not None and (best is None or abs(off[0]) < abs(best[0])):
            best = off
    return best


def _blob_offset(image: np.ndarray, matrix: np.ndarray, slots: Slots, k: int, light_on_dark: bool | None,
                 loose: bool, width: float) -> tuple[float, float] | None:
    from smartmeter.ocr.locate_blobs import Blob, merge_stacked

    h = slots.digit_h
    cw, ch = max(4, int(round(width * slots.pitch))), max(8, int(round(1.8 * h)))
    cx = slots.centre(k)
    box = (int(round(cx - cw / 2)), int(round(slots.cy - ch / 2)), cw, ch)
    g = cv2.cvtColor(crop_deskewed(image, matrix, box), cv2.COLOR_BGR2GRAY)
    # the threshold comes from the middle of the slot (digit on its own background), not the window around it
    mx, my = int(0.5 * cw - 0.3 * slots.pitch), int(0.5 * ch - 0.5 * h)
    centre = g[max(0, my):my + max(2, int(h)), max(0, mx):mx + max(2, int(0.6 * slots.pitch))]
    if float(centre.std()) < 8:
        return None
    best: tuple[float, float] | None = None
    for light in ((True, False) if light_on_dark is None else (light_on_dark,)):
        mode = cv2.THRESH_BINARY if light else cv2.THRESH_BINARY_INV
        level, _ = cv2.threshold(centre, 0, 255, mode | cv2.THRESH_OTSU)
        levels = [level]
        # three tones (dark window, light drum, dark digit; or a red frame between the dark drum and its light
        # digit, which joins the digit at one threshold): split the background class, and the ink class, once more
        for rest in (centre[centre < level], centre[centre > level]):
            if rest.size > 20 and float(rest.std()) >= 8:
                levels.append(cv2.threshold(rest.reshape(1, -1), 0, 255, mode | cv2.THRESH_OTSU)[0])
        blobs = []
        for lv in levels:
            _, binary = cv2.threshold(g, lv, 255, mode)
            n, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=4)
            # not cut by the crop's top or bottom (a frame's side, a panel edge), nor running across its whole
            # width (a unit or text printed beside the digits: stacked on a symbol it made a digit-sized blob)
            found = [Blob(float(x), float(y), float(w), float(hh)) for x, y, w, hh, area in stats[1:n]
                     if area >= 0.02 * h * h and y > 0 and y + hh < ch and not (x == 0 and x + w >= cw)]
            blobs += found + merge_stacked(found)
        for b in blobs:
            off = b.cx - (cx - box[0])
            if b.h > 1.25 * h and b.w < 0.35 * h:
                continue  # a bar taller than the digits: the side of the window or a drum's cell edge
            if loose:  # not wider than the row's digits: a unit ("m³", "kWh") after the counter is no digit
                fits = (LOOSE_HEIGHT * h <= b.h <= 1.6 * h and abs(b.cy - ch / 2) <= 0.45 * h and b.h >= 0.5 * b.w
                        and b.w <= LOOSE_WIDTH * max(slots.digit_w, 0.45 * h) and b.x > 0 and b.x + b.w < cw
                        and abs(off) <= LOOSE_OFFSET * slots.pitch)
            else:
                fits = (0.65 * h <= b.h <= 1.4 * h and abs(b.cy - ch / 2) <= 0.3 * h and b.h >= 0.9 * b.w
                        and abs(off) <= 0.4 * slots.pitch)
            if fits and (best is None or abs(off) < abs(best[0])):
                best = off, b.cy - (slots.cy - box[1])
    return best


def refit_slots(slots: Slots, first: int, last: int, offsets: dict[int, float]) -> Slots:
    """Slots ``first..last`` renumbered from 0, spacing refitted with the centres found beyond the old ends
    (a perspective term ``grow`` is kept)."""
    ks = np.arange(first, last)
    xs = np.array([slots.centre(int(k)) + offsets.get(int(k), 0.0) for k in ks]) - slots.grow * (ks - first) ** 2
    pitch, x0 = np.polyfit(ks - first, xs, 1) if len(ks) >= 2 else (slots.pitch, float(xs[0]))
    return replace(slots, x0=float(x0), pitch=float(pitch), count=last - first)


MAX_GROW = 0.03  # perspective: the pitch changes by at most 2 x this share of it from one slot to the next
STRAIGHTEN_MOVE = 0.1  # a refitted line matters when it moves an end slot by this share of the digit height


def straighten(image: np.ndarray, matrix: np.ndarray, angle: float, slots: Slots, light_on_dark: bool,
               frame: Callable[[float], np.ndarray]) -> tuple[float, np.ndarray, Slots] | None:
    """The row's line and spacing refitted from the digit centres found in its own slots: (angle, matrix, slots),
    or None when too few centres are found or the refit moves no end slot by ``STRAIGHTEN_MOVE`` of a digit.

    A row grown over its neighbour slots was fitted on a part of it only: a small error in its angle, or a pitch
    that grows along the row (perspective), moves the far slots off their digits (a drum digit cut off-centre
    reads as one in transit). ``frame(angle)`` is the de-skew matrix of the photo for another angle."""
    pts = []
    for k in range(slots.count):
        d = digit_centre(image, matrix, slots, k, light_on_dark)
        if d is not None:
            pts.append((float(k), slots.centre(k) + d[0], slots.cy + d[1]))
    if len(pts) < max(4, math.ceil(0.7 * slots.count)):
        return None
    ks, xs, ys = (np.array(col) for col in zip(*pts, strict=True))
    new_angle = angle + math.degrees(math.atan(float(np.polyfit(xs, ys, 1)[0])))
    new_matrix = frame(new_angle)
    to_new = new_matrix @ np.vstack([cv2.invertAffineTransform(matrix), [0.0, 0.0, 1.0]])
    u, v = to_new @ np.vstack([xs, ys, np.ones_like(xs)])
    grow = 0.0
    if len(pts) >= 5:
        grow = float(np.clip(np.polyfit(ks, u, 2)[0], -MAX_GROW * slots.pitch, MAX_GROW * slots.pitch))
    pitch, x0 = (float(x) for x in np.polyfit(ks, u - grow * ks ** 2, 1))
    if float(np.abs(u - (x0 + pitch * ks + grow * ks ** 2)).max()) > 0.25 * pitch:
        return None
    new = replace(slots, x0=x0, pitch=pitch, grow=grow, cy=float(np.median(v)))
    old_ends = [cv2.invertAffineTransform(matrix) @ np.array([slots.centre(k), slots.cy, 1.0])
                for k in (-1, slots.count)]
    new_ends = [cv2.invertAffineTransform(new_matrix) @ np.array([new.centre(k), new.cy, 1.0])
                for k in (-1, slots.count)]
    if max(float(np.linalg.norm(a - b)) for a, b in zip(old_ends, new_ends, strict=True)) < (
            STRAIGHTEN_MOVE * slots.digit_h):
        return None
    return new_angle, new_matrix, new


def slot_ends(matrix: np.ndarray, slots: Slots) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the first and last slot in the original photo."""
    inv = cv2.invertAffineTransform(matrix)
    first, last = (inv @ np.array([slots.centre(k), slots.cy, 1.0]) for k in (0, slots.count - 1))
    return first, last


def runs_past(matrix: np.ndarray, slots: Slots, best_matrix: np.ndarray, best: Slots) -> bool:
    """A row lies on ``best``'s line, with digits of the same size or at the same pitch (the blobs of one of them
    may be the drums' cells, taller than the digits), and reaches half a pitch beyond one end. On the line: its ends
    within half the taller row's height of it (a row of cells holds the digits anywhere in its height)."""
    h, pitch = best.digit_h, best.pitch
    across = 0.5 * max(h, slots.digit_h)
    if not (0.75 <= slots.digit_h / h <= 1.33 or 0.85 <= slots.pitch / pitch <= 1.18):
        return False
    a, b = slot_ends(best_matrix, best)
    u = (b - a) / max(1e-6, float(np.linalg.norm(b - a)))
    normal = np.array([-u[1], u[0]])
    ends = slot_ends(matrix, slots)
    if any(abs(float((p - a) @ normal)) > across for p in ends):
        return False
    span = [float((p - a) @ u) for p in ends]
    length = float((b - a) @ u)
    overlap = min(max(span), length) - max(min(span), 0.0)
    return overlap > 0 and (min(span) < -0.5 * pitch or max(span) > length + 0.5 * pitch)
