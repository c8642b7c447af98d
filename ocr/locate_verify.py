"""Verification of candidate counter rows with the digit reader (step 3 of ``smartmeter.ocr.autolocate``).

Each candidate row is read with its neighbour slots (``EXTEND`` beyond each end), which decide whether the row
continues (red decimal drums and leading zeros break blob chains) or may continue past a digit that does not read
(incomplete). The chosen row is then read at several digit-box shapes (``read_shapes``): the reader reads best
from a box framed like its training crops, which differ between meters (a drum digit filling its cell, a thin
seven-segment glyph), and a digit whose value depends on the exact box is not trusted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from smartmeter.ocr.locate_blobs import Row
from smartmeter.ocr.locate_geometry import (
    Box,
    Slots,
    border_level,
    crop_deskewed,
    digit_offset,
    red_share,
    refit_slots,
    straighten,
)
from smartmeter.ocr.readers.base import DigitReader
from smartmeter.types import DigitValue

log = logging.getLogger(__name__)

EXTEND = 3  # slots read beyond each end of a row (the row may continue: red decimal drums, leading zeros)
INSIDE = 0.6  # a neighbour slot with less of its box inside the photo ends the row
RED_INK = 0.3  # a red slot right of the row (decimal drum) needs this share of the row's ink contrast to be read


def count_factor(n: int) -> float:
    """How plausible ``n`` digits are for a counter."""
    return 0.5 if n == 3 else 0.8 if n in (4, 9) else 1.0 if 5 <= n <= 8 else 0.4


@dataclass
class Candidate:
    row: Row
    angle: float
    matrix: np.ndarray
    slots: Slots
    first: int  # first slot index used (may be -1 after extending left)
    last: int  # one past the last slot index used
    geometry: float
    confidence: float = 0.0
    digits: list[DigitValue] = field(default_factory=list)
    complete: bool = True  # no unread digit-like cell continues the row
    relative: float = 1.0  # the size factor in ``geometry`` (digit height relative to the tallest row), 0..1
    frame: Callable[[float], np.ndarray] | None = None  # the photo's de-skew matrix for another angle

    @property
    def boxes(self) -> list[Box]:
        return self.slots.boxes(self.first, self.last)

    @property
    def score(self) -> float:
        return self.geometry if not self.digits else self.geometry * (0.4 + 0.6 * self.confidence)


@dataclass
class _Cell:
    """What one slot shows: the reader's value, the background ring, the ink contrast and the red share."""

    value: DigitValue
    level: float
    ink: float
    red: float


def _cell(crop: np.ndarray, value: DigitValue) -> _Cell:
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    return _Cell(value, border_level(grey), float(np.std(grey)), red_share(crop))


def _read_slots(image: np.ndarray, jobs: list[tuple[Candidate, Slots, range]],
                reader: DigitReader) -> list[dict[int, _Cell]]:
    """Read the given slots of each (candidate, slot shape) in one batch."""
    crops: list[np.ndarray] = []
    for c, slots, ks in jobs:
        crops += [crop_deskewed(image, c.matrix, slots.box(k)) for k in ks]
    values = iter(zip(crops, reader.read_batch(crops), strict=True))
    return [{k: _cell(*next(values)) for k in ks} for _, _, ks in jobs]


def _row_confidence(cells: list[_Cell]) -> float:
    """A row of real digits reads confidently everywhere: 0.7 x mean + 0.3 x the weakest digit."""
    return _values_confidence([x.value for x in cells])


def _values_confidence(values: list[DigitValue]) -> float:
    """``_row_confidence`` of the digits read (an unread one counts 0)."""
    confs = [v.confidence if v.value is not None else 0.0 for v in values]
    return 0.7 * float(np.mean(confs)) + 0.3 * float(min(confs))


def _reads(cell: _Cell, floor: float) -> bool:
    return cell.value.value is not None and cell.value.confidence >= floor


def _inside(inverse: np.ndarray, box: Box, width: int, height: int) -> float:
    """Share of a de-skewed box's width whose centre line lies inside the photo."""
    x, y, w, h = box
    xs = np.linspace(x, x + w, 9)
    pts = inverse @ np.stack([xs, np.full_like(xs, y + h / 2), np.ones_like(xs)])
    return float(np.mean((pts[0] >= 0) & (pts[0] < width) & (pts[1] >= 0) & (pts[1] < height)))


def _extend(image: np.ndarray, c: Candidate, cells: dict[int, _Cell]) -> tuple[int, int, bool, dict[int, float]]:
    """Grow the row over neighbour slots that continue it; (first, last, complete, centre offsets found).

    A neighbour continues the row when it holds ink like the row's digits on the same background (or on red, to
    the right: decimal drums), a digit-sized blob at the row's pitch, and reads as a digit. A neighbour that
    looks like that but does not read makes the row incomplete: its reading would be a digit short, so no
    reading at all.
    """
    n = c.slots.count
    inner = [cells[k] for k in range(n)]
    level = float(np.median([x.level for x in inner]))
    spread = float(np.median([x.ink for x in inner]))
    lead_red = float(np.median([x.red for x in inner[: max(1, n - 3)]]))
    offsets: dict[int, float] = {}

    inverse = cv2.invertAffineTransform(c.matrix)
    height, width = image.shape[:2]

    def step(k: int, right: bool) -> str:
        """"digit" (the row continues here), "maybe" (it might: refuse) or "end"."""
        cell = cells[k]
        if _inside(inverse, c.slots.box(k), width, height) < INSIDE:
            return "end"  # the slot is mostly outside the photo: its crop is the photo's edge, stretched
        if right and cell.red >= 0.12 and cell.red >= lead_red + 0.1:
            # a red slot right of the row is a decimal drum, read or not: its digit may be faint in grey, or gone
            off = digit_offset(image, c.matrix, c.slots, k, None) if cell.ink >= RED_INK * spread else None
            if off is not None and _reads(cell, 0.5):
                offsets[k] = off
                return "digit"
            return "maybe"
        if cell.ink < 0.5 * spread:
            return "end"  # nothing like the row's ink
        if abs(cell.level - level) >= 60:
            # another background (a label on the face beside the window): the end, unless something digit-sized
            # sits there at the row's pitch (a framed decimal drum, its frame in the crop's ring): then not sure
            loose = digit_offset(image, c.matrix, c.slots, k, None, loose=True)
            return "maybe" if loose is not None else "end"
        off = digit_offset(image, c.matrix, c.slots, k, c.row.light_on_dark)
        if off is not None and _reads(cell, 0.5):
            offsets[k] = off
            return "digit"
        if off is not None or digit_offset(image, c.matrix, c.slots, k, None, loose=True) is not None:
            return "maybe"
        return "end"

    first, last, complete = 0, n, True
    while first > -EXTEND:
        verdict = step(first - 1, False)
        log.debug("slot %d: %s (%s; row level %.0f, ink %.0f)", first - 1, verdict, cells[first - 1], level, spread)
        complete = complete and verdict != "maybe"
        if verdict != "digit":
            break
        first -= 1
    while last < n + EXTEND:
        verdict = step(last, True)
        log.debug("slot %d: %s (%s; row level %.0f, ink %.0f)", last, verdict, cells[last], level, spread)
        complete = complete and verdict != "maybe"
        if verdict != "digit":
            break
        last += 1
    if complete and (first == -EXTEND or last == n + EXTEND):
        complete = False  # still going after EXTEND slots: not a counter row we understand
    return first, last, complete, {k: v for k, v in offsets.items() if first <= k < last}


def verify(image: np.ndarray, cands: list[Candidate], reader: DigitReader) -> None:
    """Read each candidate's digits and its neighbours (default box shape); extend rows that continue; set
    confidence. A row that grew is straightened (``locate_geometry.straighten``: its line and spacing refitted
    from all its digits) and, if that moved it, extended once more from the new geometry."""
    final: dict[int, dict[int, _Cell]] = {}
    reread: list[Candidate] = []
    pending = list(cands)
    for attempt in range(2):
        read = _read_slots(image, [(c, c.slots, range(-EXTEND, c.slots.count + EXTEND)) for c in pending], reader)
        again = []
        for c, cells in zip(pending, read, strict=True):
            first, last, c.complete, offsets = _extend(image, c, cells)
            if first == 0 and last == c.slots.count:
                final[id(c)] = cells
                continue
            old = count_factor(c.slots.count)
            c.slots = refit_slots(c.slots, first, last, offsets)
            c.geometry *= count_factor(c.slots.count) / old
            straight = None if attempt or c.frame is None else straighten(
                image, c.matrix, c.angle, c.slots, c.row.light_on_dark, c.frame)
            if straight is None:
                reread.append(c)
            else:
                c.angle, c.matrix, c.slots = straight
                again.append(c)
        pending = again
        if not pending:
            break
    for c, cells in zip(reread, _read_slots(image, [(c, c.slots, range(c.slots.count)) for c in reread], reader),
                        strict=True):
        final[id(c)] = cells
    for c in cands:
        _score(c, final[id(c)])


def _score(c: Candidate, cells: dict[int, _Cell]) -> None:
    """The candidate's digits and row confidence from its cells."""
    n = c.slots.count
    c.first, c.last = 0, n
    used = [cells[k] for k in range(n)]
    c.digits = [x.value for x in used]
    c.confidence = _row_confidence(used)
    if not c.complete:
        c.confidence *= 0.5
    if n >= 4 and all(x.value.value is not None and round(x.value.value) % 10 == 1 for x in used):
        c.confidence *= 0.3  # a row of bars (drum gaps, frame edges) reads as all ones
    levels = [x.level for x in used]
    inner = float(np.median(levels))
    lead_red = float(np.median([x.red for x in used[: max(1, n - 3)]]))
    # a digit on another background (a label next to the window); red decimal drums excepted
    if any(abs(x.level - inner) >= 60 and not (x.red >= 0.12 and x.red >= lead_red + 0.1) for x in used):
        c.confidence *= 0.5


# digit box (height, width) relative to the digit's height and width (``Slots.box``) at which the chosen row is
# read; the first is the shape candidates are ranked with; the row uses the shape it reads surest in
READ_SHAPES = ((1.22, 1.3), (1.1, 1.2), (1.0, 1.1), (1.35, 1.4), (0.9, 1.0))
AGREE = 3  # a digit must read the same (within ``AGREE_TOLERANCE``) in at least this many of the shapes (a shape
# where the reader refuses the crop counts as neither; at least two must agree)
AGREE_TOLERANCE = 0.6  # drum steps


def read_shapes(image: np.ndarray, c: Candidate, reader: DigitReader) -> tuple[list[Box], list[int]]:
    """Read the chosen row at every ``READ_SHAPES`` box shape and keep the surest in ``c.digits``: (its boxes, the
    positions (0-based) of digits that read differently in too many of the other shapes). A reading that depends
    on the exact box is not trusted."""
    shaped = [replace(c.slots, box_h=h, box_w=w) for h, w in READ_SHAPES]
    read = _read_slots(image, [(c, s, range(c.first, c.last)) for s in shaped], reader)
    rows = [[cells[k] for k in range(c.first, c.last)] for cells in read]
    best = max(range(len(rows)), key=lambda i: _row_confidence(rows[i]))
    c.digits = [x.value for x in rows[best]]
    unstable = []
    for d, chosen in enumerate(c.digits):
        v = chosen.value
        values = [row[d].value.value for row in rows]
        agree = 0 if v is None else sum(1 for x in values if x is not None and _circular(x, v) < AGREE_TOLERANCE)
        # a shape the reader refuses ("cannot tell" in that box: a frame edge in a loose box, half a digit in a
        # tight one) neither confirms nor contradicts: unstable when too few shapes agree counting it as agreeing,
        # when fewer than two agree, or when as many read another value
        refused = sum(1 for x in values if x is None)
        contradict = len(values) - agree - refused
        if agree + refused < AGREE or agree < 2 or contradict >= agree:
            unstable.append(d)
    return shaped[best].boxes(c.first, c.last), unstable


RESCUED = 3  # candidates re-read at every box shape when none scores enough in the default box


def rescue(image: np.ndarray, cands: list[Candidate], reader: DigitReader, floor: float) -> None:
    """No candidate scores ``floor``: re-score the best few complete ones by the box shape their row reads surest
    in (``READ_SHAPES``). One digit the reader refuses in the default box (a frame edge, a mark beside the drum)
    takes a real counter below the floor although a tighter box reads it; ``read_shapes`` then still decides
    whether each digit reads surely enough, and the same in most shapes."""
    for c in [c for c in cands[:RESCUED] if c.complete and c.digits]:
        if c.geometry < floor:
            continue  # even a perfect reading would not lift it
        shaped = [replace(c.slots, box_h=h, box_w=w) for h, w in READ_SHAPES[1:]]
        read = _read_slots(image, [(c, s, range(c.first, c.last)) for s in shaped], reader)
        default = _values_confidence(c.digits)
        best = max(_row_confidence([cells[k] for k in range(c.first, c.last)]) for cells in read)
        if best > default > 0:  # a row that read nothing in the default box is not rescued
            c.confidence *= best / default  # the penalties (a label, a row of bars) kept


def _circular(a: float, b: float) -> float:
    d = (a - b) % 10.0
    return min(d, 10.0 - d)
