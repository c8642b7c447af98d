"""Digit-like blobs and rows of them: the classical candidate generator behind ``smartmeter.ocr.autolocate``.

Blobs come from adaptive thresholds in both polarities at two block sizes ("channels"). In each channel the
raw connected components are kept and, separately, components stacked on top of each other are merged (the
segments of a seven-segment digit, or the two halves of a drum digit in transition). Rows are chains of blobs of
similar height, spaced like digits, along a line that may be tilted up to about ±18°.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

log = logging.getLogger(__name__)

MAX_TILT_DEG = 18.0
BLOCK_SIZES = (31, 91)
MIN_HEIGHT = 10  # pixels in the working image
MAX_PITCH = 2.2  # neighbouring digits at most this many digit heights apart (wide-set drums: about 2)


@dataclass
class Blob:
    x: float
    y: float
    w: float
    h: float
    pieces: int = 1

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


@dataclass
class Row:
    """A chain of blobs, left to right, found in one channel."""

    blobs: list[Blob]
    channel: str
    light_on_dark: bool
    slope: float = 0.0  # dy/dx of the line through the centres
    merged: bool = False
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def angle(self) -> float:
        """Degrees to rotate the photo counter-clockwise to make the row horizontal."""
        return math.degrees(math.atan(self.slope))


def _components(binary: np.ndarray) -> list[Blob]:
    n, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    hmax = binary.shape[0] * 0.7
    out = []
    for x, y, w, h, area in stats[1:]:
        if area < 12 or h > hmax or w > binary.shape[1] * 0.3:
            continue
        fill = area / float(w * h)
        if fill < 0.08 or (fill > 0.72 and h > 2 * MIN_HEIGHT):  # strokes, not filled boxes (digit holes, bars)
            continue
        out.append(Blob(float(x), float(y), float(w), float(h)))
    return out


def _digit_like(b: Blob) -> bool:
    ratio = b.h / max(b.w, 1.0)
    return b.h >= MIN_HEIGHT and 0.9 <= ratio <= 9.0


def merge_stacked(blobs: list[Blob]) -> list[Blob]:
    """Union blobs that overlap horizontally and nearly touch vertically (seven-segment pieces, split digits)."""
    order = sorted(range(len(blobs)), key=lambda i: blobs[i].x)
    parent = list(range(len(blobs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a_pos, i in enumerate(order):
        a = blobs[i]
        for j in order[a_pos + 1:]:
            b = blobs[j]
            if b.x > a.x + a.w:
                break
            overlap = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
            if overlap < 0.4 * min(a.w, b.w):
                continue
            gap = max(a.y, b.y) - min(a.y + a.h, b.y + b.h)
            size = max(a.h, b.h, a.w, b.w)
            height = max(a.y + a.h, b.y + b.h) - min(a.y, b.y)
            if gap <= 0.15 * size and height <= 2.4 * max(a.h, b.h) and max(a.w, b.w) < 2 * min(a.w, b.w) + size:
                parent[find(i)] = find(j)
    groups: dict[int, list[Blob]] = {}
    for i in range(len(blobs)):
        groups.setdefault(find(i), []).append(blobs[i])
    out = []
    for members in groups.values():
        x0 = min(b.x for b in members)
        y0 = min(b.y for b in members)
        x1 = max(b.x + b.w for b in members)
        y1 = max(b.y + b.h for b in members)
        out.append(Blob(x0, y0, x1 - x0, y1 - y0, pieces=len(members)))
    return out


def chain_rows(blobs: list[Blob], min_len: int = 3) -> list[list[Blob]]:
    """Link each blob to its best right neighbour (similar height, digit spacing, small slope) and follow chains."""
    blobs = sorted((b for b in blobs if _digit_like(b)), key=lambda b: b.cx)
    tan_max = math.tan(math.radians(MAX_TILT_DEG))
    right: dict[int, int] = {}
    left_taken: dict[int, float] = {}
    for i, a in enumerate(blobs):
        best, best_cost = -1, 1e9
        for j in range(i + 1, len(blobs)):
            b = blobs[j]
            dx = b.cx - a.cx
            if dx > MAX_PITCH * max(a.h, b.h):
                break
            hr = b.h / a.h
            if dx < 0.3 * a.h or not 0.72 <= hr <= 1.39:
                continue
            dy = abs(b.cy - a.cy)
            if dy > tan_max * dx + 0.15 * a.h:
                continue
            cost = dx / a.h + 2 * abs(math.log(hr)) + dy / a.h
            if cost < best_cost:
                best, best_cost = j, cost
        if best >= 0 and best_cost < left_taken.get(best, 1e9):
            # one left neighbour per blob: keep the cheaper link
            for k, v in list(right.items()):
                if v == best:
                    del right[k]
            right[i] = best
            left_taken[best] = best_cost
    has_left = set(right.values())
    chains = []
    for i in range(len(blobs)):
        if i in has_left:
            continue
        chain = [i]
        while chain[-1] in right:
            chain.append(right[chain[-1]])
        if len(chain) >= min_len:
            chains.append([blobs[k] for k in chain])
    return chains


def split_chain(chain: list[Blob]) -> list[tuple[list[Blob], float]]:
    """Check a chain is straight and evenly spaced; split it where the spacing breaks. Returns (blobs, slope)."""
    xs = np.array([b.cx for b in chain])
    ys = np.array([b.cy for b in chain])
    slope = float(np.polyfit(xs, ys, 1)[0]) if len(chain) >= 2 else 0.0
    if abs(slope) > math.tan(math.radians(MAX_TILT_DEG)):
        return []
    h = float(np.median([b.h for b in chain]))
    resid = ys - np.polyval(np.polyfit(xs, ys, 1), xs)
    if np.abs(resid).max() > 0.35 * h:
        return []
    return [(chain, slope)]


def find_rows(grey: np.ndarray) -> list[Row]:
    """All candidate rows in a grey working image."""
    rows: list[Row] = []
    for block in BLOCK_SIZES:
        if block >= min(grey.shape):
            continue
        for light in (True, False):
            mode = cv2.THRESH_BINARY if light else cv2.THRESH_BINARY_INV
            c = -8 if light else 8
            binary = cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, mode, block, c)
            raw = _components(binary)
            name = f"{'light' if light else 'dark'}-{block}"
            for merged, blobs in ((False, raw), (True, merge_stacked(raw))):
                for chain in chain_rows(blobs):
                    for part, slope in split_chain(chain):
                        rows.append(Row(part, name + ("-merged" if merged else ""), light, slope, merged))
    log.debug("%d candidate rows", len(rows))
    return rows


def turned_rows(rows: list[Row], width: int, height: int, upside_down: bool) -> list[Row]:
    """``rows`` of a ``width`` x ``height`` working image as :func:`find_rows` finds them in that image mirrored
    left-right (``upside_down`` False) or turned by 180 degrees (True): the thresholds and components do not depend
    on which way the image is turned, so the rows are the same blobs, moved (and listed left to right again).
    Saves the search of a photo tried turned (``autolocate.read_auto``) its share of thresholding."""
    out = []
    for row in rows:
        blobs = [Blob(width - b.x - b.w, height - b.y - b.h if upside_down else b.y, b.w, b.h, b.pieces)
                 for b in reversed(row.blobs)]
        out.append(Row(blobs, row.channel, row.light_on_dark, row.slope if upside_down else -row.slope, row.merged,
                       dict(row.extra)))
    return out
