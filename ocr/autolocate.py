"""Find the counter of a meter never seen before, read it, and propose a profile for the installation.

Method (details and measured results in ``docs/autolocate.md``):

1. Candidates, classically (``ocr.locate_blobs``): adaptive thresholds in both polarities, connected components
   (and the same with stacked pieces merged, for seven-segment digits), chained into rows of similar-size,
   digit-spaced blobs along a line tilted up to ±18°.
2. Geometry (``smartmeter.ocr.locate_geometry``): each row gives the de-skew angle (slope of the line through the digit
   centres) and evenly spaced digit boxes in the de-skewed photo, so a blank or missing digit still gets a box.
3. Verification (``smartmeter.ocr.locate_verify``): rows are ranked by geometry (spacing, count, size relative to the
   largest row); the best few are read with the digit reader, together with ``EXTEND`` slots beyond each end. A
   neighbour slot on the same background (or red, to the right: decimal drums) holding a digit-sized blob at the
   row's pitch that reads is added to the row (red drums and leading zeros break blob chains); one that might be a
   digit but does not read makes the row incomplete. A window frame edge (a bar taller than the digits) is not a
   digit. Score = geometry x (0.4 + 0.6 x confidence).
4. Reading: the chosen row is read at five digit-box shapes (``locate_verify.READ_SHAPES``) and the shape it reads
   surest in is kept (and proposed in the profile); a digit reading the same in fewer than three shapes is unstable.
   Honest "cannot read": below ``MIN_SCORE``; a different window scoring within ``AMBIGUOUS``; an incomplete row;
   another plausible row through the best one that runs past its ends; a digit below ``AUTO_MIN_CONFIDENCE`` or
   unstable; the last drum between two digits (``LAST_DRUM_AMBIGUOUS``); the row read turned by 180 degrees
   or mirrored being as sure (an upside-down or mirrored photo reads confidently wrong); ``ocr.assemble`` finding
   the drums inconsistent.
   An incomplete row's reading is a digit short, which is worse than no reading.
5. Profile cues: red drums (or red frames) at the end mean decimals; a seven-segment point gives LCD decimals.
6. Nothing reads upright: the photo turned by 180 degrees and mirrored left-right (a camera mounted upside
   down, or looking at the meter in a mirror; drum rows only), and when nothing even looks like a counter, turned
   by a quarter either way (mounted sideways); a reading only when exactly one of them reads. Only the reduced
   copy is turned or mirrored; crops are cut from the original through the composed matrix
   (``locate_candidates.candidate_rows``), so a large photo costs no full-size rotation; a photo searched again
   turned by 180 degrees or mirrored reuses the upright search's rows, moved (``locate_blobs.turned_rows``), and
   reads only its ``TURNED_VERIFY`` best candidates.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from smartmeter.errors import ImageError, NoCounterFound, UnreadableError
from smartmeter.ocr.locate_blobs import Row
from smartmeter.ocr.locate_candidates import MIRROR_H, MIRRORS, candidate_rows, iou, weigh_size, window_of
from smartmeter.ocr.locate_geometry import (
    Box,
    crop_deskewed,
    decimal_point,
    decimals_from_red,
    deskew_matrix,
    red_share,
    runs_past,
)
from smartmeter.ocr.locate_verify import Candidate, read_shapes, rescue, verify
from smartmeter.ocr.profile import Profile, Transform
from smartmeter.ocr.readers.base import DigitReader
from smartmeter.ocr.reading import reading_confidence
from smartmeter.types import DigitValue, OcrResult

log = logging.getLogger(__name__)

WORK_SIZE = 1000  # longer side of the working image, pixels
MAX_VERIFY = 10  # candidates read with the digit reader
TURNED_VERIFY = 4  # ... in a photo searched again turned or mirrored (nothing read upright)
MIN_SCORE = 0.55  # below: "no counter found" (score = geometry x reader confidence)
MIN_GEOMETRY = 0.2  # without a reader
AUTO_MIN_CONFIDENCE = 0.9  # an unknown installation reads only when every digit is this sure (in the surest box)
TURNED_CONFIDENCE = 0.5  # ... and not when every digit turned by 180 degrees reads this surely too (upside down?)
TURNED_MARGIN = 0.0  # ... and the turned row is at least as sure as the upright one, less this margin
QUARTER_TURNED_MARGIN = 0.05  # the same for a photo turned by a quarter (nothing found upright): which way up is
# then unknown, so the check is stricter
LAST_DRUM_AMBIGUOUS = (0.75, 0.95)  # fraction of the last drum where floor and next digit are both plausible
AMBIGUOUS = 0.8  # a different window scoring this close to the best one: not sure, no answer
READS_AS_DIGITS = 0.7  # a verified row this sure is a row of digits (the size reference for the others)
LONGER_GEOMETRY = 0.5  # a longer row through the best one at least this plausible: its extent is uncertain
TALLER = 1.5  # a row of marks this many times as tall as the best row's digits ...
TALLER_GEOMETRY = 0.6  # ... this plausible as a row of digits, that does not read: no answer (a serial number?)


@dataclass
class LocateResult:
    """Where the counter is: a proposed profile, a score 0..1 and the counter window (de-skewed coordinates)."""

    profile: Profile
    score: float
    window: tuple[int, int, int, int]
    digits: list[DigitValue] = field(default_factory=list)  # what the reader saw while verifying
    candidates: int = 0
    unstable: list[int] = field(default_factory=list)  # digits (0-based) reading differently in other box shapes
    rival: float | None = None  # propose=True only: the score of another row about as likely as this one


def _work_image(image: np.ndarray) -> tuple[np.ndarray, float]:
    """The reduced grey copy candidates are searched in (``WORK_SIZE`` on the long side) and its scale."""
    h, w = image.shape[:2]
    scale = WORK_SIZE / max(h, w)
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    work = cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))),
                      interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return work, scale


def locate(image_bgr: np.ndarray, reader: DigitReader | None = None, *, turned_margin: float = TURNED_MARGIN,
           quarter: int | None = None, work: tuple[np.ndarray, float] | None = None,
           propose: bool = False, rows: dict[str, list[Row]] | None = None) -> LocateResult:
    """Find the counter. UnreadableError when nothing looks like one (or the reader confirms no candidate);
    ``turned_margin``: see ``TURNED_MARGIN``; ``quarter``: search the photo turned by this ``cv2.ROTATE_90_*``
    (the profile's boxes and angle are then those of the turned photo); ``work``: its ``_work_image`` if known;
    ``propose``: a proposal for a person to check (``smartmeter profile new``), so a rival row of about the same
    score does not refuse: the best row is returned and ``rival`` names the other's score. ``rows``: a cache of
    the upright rows of ``work``, shared by the searches of one photo (``locate_candidates.candidate_rows``)."""
    image = _check_image(image_bgr)
    reader = reader.searching() if reader is not None else None
    t0 = time.perf_counter()
    cands = candidate_rows(image, *(work or _work_image(image)), quarter, rows)
    total = len(cands)
    if reader is not None and cands:
        cands = cands[:MAX_VERIFY if quarter is None else TURNED_VERIFY]
        verify(image, cands, reader)
        # a tall row of marks that does not read (a frame, a logo, drum gaps) does not make the counter small
        weigh_size(cands, [c for c in cands if c.complete and c.confidence >= READS_AS_DIGITS])
        cands.sort(key=lambda c: -c.score)
        floor = MIN_SCORE
        if cands and cands[0].score < floor:
            rescue(image, cands, reader, floor)
            cands.sort(key=lambda c: -c.score)
    else:
        floor = MIN_GEOMETRY
    log.debug("locate: %d candidates in %.0f ms", total, 1000 * (time.perf_counter() - t0))
    if not cands:
        raise NoCounterFound("no counter found in the photo (no row of digit-like marks)")
    if cands[0].score < floor:
        raise NoCounterFound(f"no counter found in the photo (best candidate score {cands[0].score:.2f} < {floor})")
    best = cands[0]
    if not best.complete:
        raise UnreadableError("the counter row seems to continue past a digit that does not read: not guessing "
                              "a reading that may be a digit short")
    # with a reader every row has been extended as far as it goes; a longer one through the best is a conflict
    longer = None if reader is None else next(
        (c for c in cands[1:] if c.geometry >= LONGER_GEOMETRY * best.geometry
         and runs_past(c.matrix, c.slots, best.matrix, best.slots)), None)
    if longer is not None:
        raise UnreadableError(f"another reading of the same row runs past this one ({longer.slots.count} against "
                              f"{best.slots.count} digits): not guessing where the counter ends")
    # the counter is the largest row of digits on the face: a clearly taller row of digit-like marks elsewhere that
    # does not read makes the row that does read (a serial number, a type label) no answer
    taller = None if reader is None else next(
        (c for c in cands[1:] if c.complete and c.geometry >= TALLER_GEOMETRY and c.confidence < READS_AS_DIGITS
         and c.slots.digit_h >= TALLER * best.slots.digit_h and iou(window_of(c), window_of(best)) < 0.2), None)
    if taller is not None and not propose:
        raise UnreadableError(f"a row of larger digit-like marks ({taller.slots.count} of them, "
                              f"{taller.slots.digit_h / best.slots.digit_h:.1f} x as tall) does not read: the counter "
                              "may be that one, and the row that reads a serial number; not guessing")
    rival = next((c for c in cands[1:] if iou(window_of(c), window_of(best)) < 0.2), None)
    ambiguous = rival is not None and rival.score >= AMBIGUOUS * best.score
    if ambiguous and not propose:
        assert rival is not None
        raise UnreadableError(f"two rows of digits look like the counter (scores {best.score:.2f} and "
                              f"{rival.score:.2f}): not guessing")
    read_boxes, unstable = read_shapes(image, best, reader) if reader is not None else (best.boxes, [])
    other = _reads_other_way(image, best, read_boxes, reader, turned_margin) if reader is not None else None
    if other == "upside down":
        raise UnreadableError("the counter reads as surely upside down (a camera mounted the other way round?): "
                              "not guessing; give a profile with the right rotate")
    if other is not None:
        raise UnreadableError(f"the counter reads as surely {other} (a camera looking through a mirror?): not "
                              "guessing; give a profile with the right flip")
    lcd = _looks_lcd(image, best)
    point = decimal_point(image, best.matrix, best.slots, not best.row.light_on_dark) if lcd else -1
    if reader is not None and lcd and _point_on_top(image, best, point):
        raise UnreadableError("the counter's decimal point sits at the top of its digits: the photo is upside down "
                              "(a camera mounted the other way round?); not reading it this way")
    rival_score = round(rival.score, 4) if ambiguous and rival is not None else None
    return LocateResult(_profile(image, best, read_boxes, lcd, point), round(best.score, 4), window_of(best),
                        best.digits, total, unstable, rival_score)


OTHER_WAYS = (("upside down", cv2.ROTATE_180, True), ("mirrored", 1, True), ("mirrored upside down", 0, False))


def _reads_other_way(image: np.ndarray, c: Candidate, boxes: list[Box], reader: DigitReader,
                     margin: float) -> str | None:
    """How else the row reads as surely as it does, sure of every digit: turned by 180 degrees (right to left),
    mirrored left-right (right to left) or mirrored top-bottom; None when no other way does. A photo upside down
    reads confidently wrong (0, 1, 2, 5 and 8 look the same turned, 6 and 9 swap), and so does one taken through
    a mirror: when two ways read, the orientation is not known."""
    if not _reads_upright(c.digits):
        return None  # refused anyway
    crops = [crop_deskewed(image, c.matrix, b) for b in boxes]
    batch: list[np.ndarray] = []
    for _, code, reverse in OTHER_WAYS:
        ordered = crops[::-1] if reverse else crops
        batch += [cv2.rotate(x, code) if code == cv2.ROTATE_180 else cv2.flip(x, code) for x in ordered]
    values = reader.read_batch(batch)
    upright = float(np.mean([d.confidence for d in c.digits]))
    n = len(crops)
    for i, (name, _, _) in enumerate(OTHER_WAYS):
        way = values[i * n:(i + 1) * n]
        if (all(v.value is not None and v.confidence >= TURNED_CONFIDENCE for v in way)
                and float(np.mean([v.confidence for v in way])) >= upright - margin):
            return name
    return None


def _profile(image: np.ndarray, c: Candidate, read_boxes: list[Box], lcd: bool, point: int) -> Profile:
    """The proposed profile: ``read_boxes`` as digits (the box shape the row read best in); kind and decimals
    from the row's default boxes (``lcd``: ``_looks_lcd``; ``point``: its ``decimal_point``, -1 for drums)."""
    boxes = [(max(0, x), max(0, y), w, h) for x, y, w, h in read_boxes]
    kind = "lcd" if lcd else "drum"
    if lcd:
        decimals = c.last - 1 - point if point >= c.first else 0
    else:
        shares = [red_share(crop_deskewed(image, c.matrix, _grow(b, 0.08))) for b in c.boxes]
        decimals = decimals_from_red(shares)
    return Profile(kind=kind, transform=Transform(rotate=round(c.angle, 2)), digits=boxes,
                   decimals=max(0, min(decimals, len(boxes) - 1)), reference=None)


def _point_on_top(image: np.ndarray, c: Candidate, point: int) -> bool:
    """An LCD row with no decimal point at the bottom of its digits (``point``, its ``decimal_point``, is -1) but
    one at the top: seen upside down. Its digits may read surely that way (0, 1, 2, 5 and 8 look the same turned,
    6 and 9 swap: 0060868 read as 8980900), but the point gives it away."""
    return point < 0 and decimal_point(image, c.matrix, c.slots, not c.row.light_on_dark, top=True) >= 0


def _grow(box: Box, f: float) -> Box:
    x, y, w, h = box
    dx, dy = int(w * f), int(h * f)
    return x - dx, y - dy, w + 2 * dx, h + 2 * dy


def _looks_lcd(image: np.ndarray, c: Candidate) -> bool:
    """Seven-segment digits come in pieces, dark on a light panel that runs on between the digits."""
    if c.row.light_on_dark or c.last - c.first < 2:
        return False
    if c.slots.pieces >= 2.0:
        return True
    b0, b1 = c.slots.box(c.first), c.slots.box(c.first + 1)
    gap_x = b0[0] + b0[2]
    gap_w = max(1, b1[0] - gap_x)
    gap = crop_deskewed(image, c.matrix, (gap_x, b0[1] + b0[3] // 4, gap_w, b0[3] // 2))
    cell = crop_deskewed(image, c.matrix, b0)
    bright = float(np.percentile(cv2.cvtColor(cell, cv2.COLOR_BGR2GRAY), 80))
    return float(np.median(cv2.cvtColor(gap, cv2.COLOR_BGR2GRAY))) > 0.8 * bright


def _check_image(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 2:
        a = cv2.cvtColor(a, cv2.COLOR_GRAY2BGR)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or a.dtype != np.uint8:
        raise ImageError(f"expected an HxWx3 uint8 BGR photo, got shape {a.shape} dtype {a.dtype}")
    if a.shape[2] == 4:
        a = cv2.cvtColor(a, cv2.COLOR_BGRA2BGR)
    if min(a.shape[:2]) < 32:
        raise ImageError(f"photo too small to hold a counter: {a.shape[1]}x{a.shape[0]}")
    return a


def crops_for(image_bgr: np.ndarray, profile: Profile) -> list[np.ndarray]:
    """The digit crops a located profile describes, cut from the original photo."""
    image = _check_image(image_bgr)
    matrix, _, _ = deskew_matrix(image.shape[1], image.shape[0], profile.transform.rotate)
    return [crop_deskewed(image, matrix, b) for b in profile.digits]


def read_auto(image_bgr: np.ndarray, reader: DigitReader) -> tuple[OcrResult, Profile | None]:
    """Locate, read and assemble. Not found -> ``OcrResult(reading=None, error=...)`` and profile None.

    Nothing read upright: the photo is tried turned by 180 degrees (a camera mounted upside down), mirrored
    left-right (a meter seen in a mirror, drum rows only: the profile then turns and flips) and, when nothing
    upright even looks like a counter, by a quarter either way (mounted sideways); a reading is given only when
    exactly one of those turns reads (``_turned``), else the upright answer stands."""
    reader = reader.searching()
    version = f"{reader.name}-{reader.version}+autolocate"
    image = _check_image(image_bgr)
    work = _work_image(image)  # searched upright and, if need be, turned
    rows: dict[str, list[Row]] = {}  # its upright rows: turned by 180 degrees or mirrored, the same rows moved
    turns = [(cv2.ROTATE_180, 180.0), *MIRROR_TURNS]
    try:
        found = locate(image, reader, work=work, rows=rows)
    except NoCounterFound as exc:  # nothing like a counter: perhaps the camera is turned by a quarter
        turns += QUARTER_TURNS
        result, profile = _unread(exc.message), None
    except UnreadableError as exc:
        result, profile = _unread(exc.message), None
    else:
        profile = found.profile
        result = _read_found(image_bgr, found, reader)
        if result.reading is None and _reads_upright(result.digits):
            turns = []  # every digit of the row read surely, and not as surely turned (locate checks): upright
    if result.reading is None and turns:
        missed: list[str] = []
        turned = _turned(image, reader, work, turns, missed, rows)
        if turned is not None:
            result, profile = turned
        elif profile is None and len(missed) == 1:  # nothing upright; one turn found a counter it could not read
            result = _unread(f"{result.error}; {missed[0]}")
    result.reader_version = version
    return result, profile


def _reads_upright(values: list[DigitValue]) -> bool:
    """Did every digit of the located row read surely? Then the photo is upright even when the reading is refused
    (a last drum between two digits, an unstable box): turning it would only search it again."""
    return bool(values) and all(v.value is not None and v.confidence >= AUTO_MIN_CONFIDENCE for v in values)


def _read_found(image: np.ndarray, found: LocateResult, reader: DigitReader) -> OcrResult:
    """The located row's reading: the digits read while locating (else read now), assembled."""
    return _assemble(found.digits or reader.read_batch(crops_for(image, found.profile)), found.profile,
                     found.unstable)


def _unread(error: str) -> OcrResult:
    return OcrResult(reading=None, value=None, confidence=0.0, error=error)


QUARTER_TURNS = [(cv2.ROTATE_90_COUNTERCLOCKWISE, 90.0), (cv2.ROTATE_90_CLOCKWISE, -90.0)]
# left-right only, and drums only (``_turned``): seven-segment digits read as other digits mirrored (2 and 5 swap
# top-bottom, 7 reads 1): a photo mirrored top-bottom read an LCD's 07321 as 01351 at 0.93 and more
MIRROR_TURNS = [(MIRROR_H, 0.0)]
TURN_NAMES = {cv2.ROTATE_180: "turned upside down", MIRROR_H: "mirrored left-right",
              cv2.ROTATE_90_COUNTERCLOCKWISE: "turned a quarter anticlockwise",
              cv2.ROTATE_90_CLOCKWISE: "turned a quarter clockwise"}


def _turned(image_bgr: np.ndarray, reader: DigitReader, work: tuple[np.ndarray, float] | None = None,
            turns: list[tuple[int, float]] | None = None, missed: list[str] | None = None,
            rows: dict[str, list[Row]] | None = None) -> tuple[OcrResult, Profile] | None:
    """The reading and profile of the photo turned by one of ``turns`` (``cv2.rotate`` code, counter-clockwise
    degrees; default the two quarter turns), when exactly one of them reads, each with the stricter check
    ``QUARTER_TURNED_MARGIN`` (which way up is then unknown); the profile's ``rotate`` then includes the turn.
    ``missed`` gets, for each turn that found a counter but could not read it, what it found and why it refused
    (the user learns the camera is turned, and what else is wrong)."""
    image = _check_image(image_bgr)
    work = work or _work_image(image)
    read: list[tuple[OcrResult, Profile]] = []
    for code, degrees in QUARTER_TURNS if turns is None else turns:
        way = TURN_NAMES.get(code, "turned")
        try:
            found = locate(image, reader, turned_margin=QUARTER_TURNED_MARGIN, quarter=code, work=work, rows=rows)
        except NoCounterFound:
            continue
        except UnreadableError as exc:
            if missed is not None:
                missed.append(f"{way}, a counter is found but not read: {exc.message}")
            continue
        if code in MIRRORS and found.profile.kind == "lcd":
            continue  # mirrored seven-segment digits read as other digits (``MIRROR_TURNS``)
        result = _assemble(found.digits, found.profile, found.unstable)  # read while locating
        if result.reading is None and missed is not None:
            missed.append(f"{way}, a counter is found but not read: {result.error}")
        if result.reading is not None:
            t = found.profile.transform
            if code in MIRRORS:  # searched: mirrored, then de-skewed by a; the profile: turned by -a, then mirrored
                transform = t.model_copy(update={"rotate": -t.rotate, "flip": MIRRORS[code][0]})
            else:
                rotate = round((t.rotate + degrees + 180.0) % 360.0 - 180.0, 2)
                transform = t.model_copy(update={"rotate": rotate})
            read.append((result, found.profile.model_copy(update={"transform": transform})))
    return read[0] if len(read) == 1 else None


def _assemble(values: list[DigitValue], profile: Profile, unstable: list[int] | None = None) -> OcrResult:
    """Digits -> reading via ``ocr.assemble``; a weak or unstable digit or an inconsistent row gives no reading."""
    from smartmeter.ocr.assemble import assemble

    floor = max(profile.min_confidence, AUTO_MIN_CONFIDENCE)
    weak = [i + 1 for i, v in enumerate(values) if v.value is None or v.confidence < floor]
    if weak:
        return OcrResult(reading=None, value=None, confidence=0.0, digits=values,
                         error=f"digit {', '.join(map(str, weak))} read below confidence {floor}")
    if unstable:
        return OcrResult(reading=None, value=None, confidence=0.0, digits=values,
                         error=f"digit {', '.join(str(i + 1) for i in unstable)} reads differently in a slightly "
                               "different box")
    raw = [v.value % 10.0 for v in values if v.value is not None]
    if LAST_DRUM_AMBIGUOUS[0] <= raw[-1] % 1.0 < LAST_DRUM_AMBIGUOUS[1]:
        # x.8-x.95: either x in transit or x+1 read a little low; a configured meter may take floor(x), an
        # unknown one does not guess
        return OcrResult(reading=None, value=None, confidence=0.0, digits=values,
                         error=f"last digit between {int(raw[-1])} and {(int(raw[-1]) + 1) % 10} ({raw[-1]:.2f})")
    a = assemble(raw, decimals=profile.decimals)
    if a.reading is None:
        return OcrResult(reading=None, value=None, confidence=0.0, digits=values, error=a.error)
    return OcrResult(reading=a.reading, value=a.value, confidence=reading_confidence(values, a.confidence),
                     digits=values)
