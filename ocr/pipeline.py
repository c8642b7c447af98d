"""Photo + meter profile -> reading with confidence.

``MeterReader(profile, reader).read(photo)`` runs: decode (grey; colour too when the profile has pointers) -> align
to the profile's reference (the profile's rotate/flip folded in) -> cut the digit and pointer boxes (one small warp
per box or row of boxes: the photo itself is never rotated or warped) -> read the digit crops with the digit
reader and the pointer crops with the dial reader (``dial.py``: the needle's angle, in colour) -> assemble ->
confidence. ``read_many`` does the same for many photos with the digit crops of all of them in one
``read_batch`` call (chunked).

Speed: JPEGs are decoded straight to grey (in colour only for pointers; debug images decode again), and at 1/2,
1/4 or 1/8 size when every box would still be at least the digit reader's input size (``reader.width x reader.height``,
when the reader declares one) and every pointer box at least ``MIN_DIAL_PX`` — the crops are then cut at that
scale, never enlarged.

The rule throughout: a wrong reading is worse than none. A photo that cannot be decoded or aligned, a digit
or pointer below ``profile.min_confidence``, a dial whose needle is not found, or drums that do not fit each
other give ``OcrResult(reading=None, error=...)`` — never a guess. When two readings are both plausible (a
transition the assembler cannot settle) the result also carries them as ``candidates``, likeliest first, with the
digits' confidence: the worker's validation may choose by the meter's history. Per-photo problems never raise; a
broken reader (e.g. missing tesseract) does.

Overall confidence = lowest digit confidence x the assembler's consistency (1.0 when every drum sits where its
neighbour says it should): ``smartmeter.ocr.reading``, the rule auto-locate uses too, says why.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from smartmeter.errors import AlignmentError, ConfigError, ImageError, InputError, SmartMeterError
from smartmeter.ocr.align import Aligner, AlignResult
from smartmeter.ocr.assemble import assemble
from smartmeter.ocr.dial import DialReading, DialSpec, read_dial
from smartmeter.ocr.image_io import decode_image, load_image, to_grey
from smartmeter.ocr.profile import Profile
from smartmeter.ocr.readers.base import DigitReader
from smartmeter.ocr.reading import reading_confidence
from smartmeter.ocr.reference import WORK_PX, load_reference
from smartmeter.ocr.transforms import is_identity, transform_matrix, transformed_size
from smartmeter.ocr.warp import crop_boxes, outside_error
from smartmeter.types import DigitValue, OcrResult

log = logging.getLogger(__name__)

BATCH = 512
MIN_DIAL_PX = 48  # a reduced decode keeps every pointer box at least this large
# second look: a reading that is not clean (its confidence below SURE: a digit less sure, or drums that barely fit)
# is read again with the digit boxes moved sideways by SIDE_SHARE of their width (at least 1 px); a digit that then
# reads more than UNSTABLE differently depends on where its box sits, and the photo is unreadable. Seen: a clear
# "0" read 6.19 (0.82 sure) in exactly one place and 0.10 a pixel or two to either side, giving 62924.743 for
# 02924.743 at confidence 0.61 (suapapa's ok.jpg). Moving sideways does not move a rolling drum's position.
SURE = 0.9
SIDE_SHARE = 0.08
UNSTABLE = 0.4
PhotoInput = np.ndarray | bytes | Path | str


def make_reader(engine: str, model: Path | None = None, threads: int = 1) -> DigitReader:
    """The digit reader for an engine name (``cnn`` | ``tesseract``); see ``smartmeter.ocr.readers.get_reader``."""
    from smartmeter.ocr.readers import get_reader

    return get_reader(engine, model=model, threads=threads)


@dataclass
class _Prepared:
    name: str
    image: np.ndarray | None = None  # grey, as decoded (kept for debug images only)
    colour: np.ndarray | None = None  # BGR, as decoded (profiles with pointers)
    homography: np.ndarray | None = None  # decoded photo -> reference frame (None: boxes cut directly)
    alignment: AlignResult | None = None
    crops: list[np.ndarray] | None = None  # the digit boxes
    dial_crops: list[np.ndarray] | None = None  # the pointer boxes (colour when decoded in colour)
    shifted: list[tuple[int, list[np.ndarray]]] | None = None  # the digit boxes moved left (-1), right (+1)
    source: PhotoInput | None = None  # for a colour debug image of a photo read in grey
    reduced: int = 1
    error: str | None = None


class MeterReader:
    """Reads whole photos of one meter installation."""

    def __init__(self, profile: Profile, reader: DigitReader, debug_dir: Path | None = None) -> None:
        self.profile = profile
        self.reader = reader
        self.debug_dir = debug_dir
        self.boxes = [*profile.digits, *profile.pointers]
        directions = profile.dials.directions or ["clockwise"] * len(profile.pointers)
        self.dial_specs = [DialSpec(d, profile.dials.zero_degrees, profile.dials.needle) for d in directions]
        self.colour = bool(profile.pointers)  # digits are read from the same grey with or without a debug folder
        self.aligner: Aligner | None = None
        if profile.reference is not None and profile.alignment.method != "none":
            try:
                _, features = load_reference(Path(profile.reference))
            except (OSError, ImageError) as exc:
                raise ConfigError(f"profile reference image {profile.reference}: {exc}") from exc
            self.aligner = Aligner(features, profile.alignment, self.boxes)
        self.reduce = self._reduction()

    def _reduction(self) -> int:
        """How much smaller JPEGs may be decoded: every box stays at least the reader's input size, and the
        reference frame at least the alignment's work size. Only with a reference (boxes are scaled through the
        alignment) and a reader that declares its input size."""
        in_h, in_w = getattr(self.reader, "height", None), getattr(self.reader, "width", None)
        if self.aligner is None or not isinstance(in_h, int) or not isinstance(in_w, int):
            return 1
        min_w, min_h = min(b[2] for b in self.boxes), min(b[3] for b in self.boxes)
        min_dial = min((min(b[2], b[3]) for b in self.profile.pointers), default=MIN_DIAL_PX * 8)
        for k in (8, 4, 2):
            if (min_w / k >= in_w and min_h / k >= in_h and max(self.aligner.ref.size) / k >= WORK_PX
                    and min_dial / k >= MIN_DIAL_PX):
                return k
        return 1

    @property
    def version(self) -> str:
        return f"{self.reader.name}:{self.reader.version}"

    def read(self, image: PhotoInput, name: str | None = None) -> OcrResult:
        """Read one photo (BGR array, encoded bytes or a path)."""
        return self.read_many([image], [name] if name is not None else None)[0]

    def read_many(self, images: Sequence[PhotoInput], names: Sequence[str] | None = None) -> list[OcrResult]:
        """Read many photos; all their digit crops go to the digit reader together (in chunks of 512)."""
        labels = list(names) if names is not None else [_default_name(img, i) for i, img in enumerate(images)]
        prepared = [self._prepare(img, label) for img, label in zip(images, labels, strict=True)]
        values = self._read_digits([c for p in prepared if p.crops is not None for c in p.crops])
        results: list[OcrResult] = []
        pos = 0
        for p in prepared:
            if p.crops is None:
                results.append(OcrResult(None, None, 0.0, error=p.error, reader_version=self.version))
                continue
            mine = values[pos:pos + len(p.crops)]
            pos += len(p.crops)
            dials = [read_dial(c, spec) for c, spec in zip(p.dial_crops or [], self.dial_specs, strict=True)]
            results.append(self._result(mine, dials))
        self._second_look(prepared, results)
        for p, result in zip(prepared, results, strict=True):
            if self.debug_dir is not None and p.image is not None:
                self._write_debug(p, result, [*result.digits, *result.pointers])
        return results

    def _read_digits(self, crops: list[np.ndarray]) -> list[DigitValue]:
        values: list[DigitValue] = []
        for start in range(0, len(crops), BATCH):
            chunk = crops[start:start + BATCH]
            got = self.reader.read_batch(chunk)
            if len(got) != len(chunk):
                raise SmartMeterError(f"reader {self.reader.name} returned {len(got)} values for {len(chunk)} crops")
            values.extend(got)
        return values

    def _second_look(self, prepared: list[_Prepared], results: list[OcrResult]) -> None:
        """Readings (or candidates) that are not clean are read again with the digit boxes moved sideways (``SURE``
        above); one whose digit then reads otherwise becomes unreadable, in place."""
        again = [k for k, (p, r) in enumerate(zip(prepared, results, strict=True))
                 if p.shifted and (r.reading is not None or r.candidates) and r.confidence < SURE]
        values = self._read_digits([c for k in again for _, side in prepared[k].shifted or [] for c in side])
        pos = 0
        for k in again:
            first = results[k]
            sides = []
            for sign, side in prepared[k].shifted or []:
                sides.append((sign, values[pos:pos + len(side)]))
                pos += len(side)
            problem = _unstable(first.digits, sides, self.profile.digits)
            if problem:
                log.info("%s: %s", prepared[k].name, problem)
                results[k] = OcrResult(None, None, 0.0, first.digits, first.pointers, problem, self.version)

    def digit_crops(self, image: PhotoInput, name: str = "photo") -> list[np.ndarray] | None:
        """The digit crops of one photo as ``read`` cuts them (the per-meter adapter keeps them); None when the
        photo cannot be decoded or aligned."""
        return self._prepare(image, name).crops

    def read_dials(self, image: PhotoInput, name: str = "photo") -> list[DialReading]:
        """The dial reader's full readings of one photo's pointers (angle, reason, how far off the box centre the
        needle's axis passes: for ``profile check``); AlignmentError or ImageError when the photo cannot be cut."""
        p = self._prepare(image, name)
        if p.dial_crops is None:
            raise AlignmentError(p.error or f"{name}: cannot be read")
        return [read_dial(c, spec) for c, spec in zip(p.dial_crops, self.dial_specs, strict=True)]

    def _prepare(self, image: PhotoInput, name: str) -> _Prepared:
        transform = self.profile.transform
        try:
            grey, colour, reduced = _decode(image, name, self.reduce, self.colour)
            alignment = None
            if self.aligner is not None:
                alignment = self.aligner.align(grey, transform, reduced)
                homography: np.ndarray | None = alignment.homography
            elif is_identity(transform):
                homography = None
            else:
                homography = transform_matrix(grey.shape[1], grey.shape[0], transform)
                tw, th = transformed_size(grey.shape[1], grey.shape[0], transform)
                for box in self.boxes:
                    x, y, bw, bh = box
                    corners = np.array([[x, y], [x + bw, y], [x + bw, y + bh], [x, y + bh]], np.float64)
                    problem = outside_error(box, corners, tw, th, "the transformed photo")
                    if problem:
                        raise AlignmentError(problem)
            n = len(self.profile.digits)
            crops = crop_boxes(grey, self.boxes[:n], homography, 1.0 / reduced)
            dial_crops = (crop_boxes(colour if colour is not None else grey, self.boxes[n:], homography,
                                     1.0 / reduced) if self.profile.pointers else [])
            shifted = _shifted_crops(grey, self.profile.digits, homography, 1.0 / reduced)
        except (ImageError, AlignmentError) as exc:
            log.info("%s: %s", name, exc)
            return _Prepared(name, error=str(exc))
        if alignment is not None:
            log.debug("%s: aligned by %s, shift %.1f px, %d inliers", name, alignment.method, alignment.shift_px,
                      alignment.inliers)
        if self.debug_dir is None:  # only the crops are kept: a batch of photos is not held in memory
            return _Prepared(name, None, None, homography, alignment, crops, dial_crops, shifted)
        source = image if colour is None else None
        return _Prepared(name, grey, colour, homography, alignment, crops, dial_crops, shifted, source, reduced)

    def _result(self, digits: list[DigitValue], dials: list[DialReading]) -> OcrResult:
        n = len(digits)
        pointers = [DigitValue(d.value, d.confidence) for d in dials]
        values = [*digits, *pointers]

        def unreadable(error: str | None, confidence: float = 0.0) -> OcrResult:
            return OcrResult(None, None, round(confidence, 4), digits, pointers, error, self.version)

        lost = [f"pointer {i + 1}: {d.reason}" for i, d in enumerate(dials) if d.value is None]
        if lost:  # never guessed: a dial we cannot see makes the whole reading unreadable
            return unreadable("; ".join(lost))
        min_conf = self.profile.min_confidence
        low = [(i, v) for i, v in enumerate(values) if v.value is not None and v.confidence < min_conf]
        if low:
            def why(i: int) -> str:
                reason = dials[i - n].reason if i >= n else None
                return f": {reason}" if reason else ""

            names = ", ".join(f"{_position_name(i, n)} ({v.confidence:.2f}{why(i)})" for i, v in low)
            return unreadable(f"confidence below {min_conf:g}: {names}", min(v.confidence for _, v in low))
        coupling = self.profile.coupling
        if coupling.rightmost == "auto" and self.profile.decimals > 0 and not pointers and self.reader.knows_meter:
            coupling = coupling.model_copy(update={"rightmost": "continuous"})  # see DigitReader.knows_meter
        try:
            assembly = assemble([v.value for v in digits], [v.value for v in pointers], self.profile.decimals,
                                coupling=coupling)
        except InputError as exc:  # a reader that returned values outside 0..10
            return unreadable(f"reader returned bad values: {exc}")
        if assembly.reading is None and len(assembly.candidates) > 1:  # the meter's history may choose
            return OcrResult(None, None, reading_confidence(values), digits, pointers, assembly.error, self.version,
                             list(assembly.candidates))
        if assembly.reading is None:
            return unreadable(assembly.error)
        confidence = reading_confidence(values, assembly.confidence)
        if confidence < min_conf:
            return unreadable(f"drums barely fit each other (confidence {confidence:.2f} < {min_conf:g})", confidence)
        return OcrResult(assembly.reading, assembly.value, round(confidence, 4), digits, pointers, None, self.version)

    def _write_debug(self, p: _Prepared, result: OcrResult, values: list[DigitValue]) -> None:
        """The photo in the reference frame with boxes, per-digit values and the reading."""
        assert p.image is not None and self.debug_dir is not None
        image = p.colour if p.colour is not None else p.image  # colour: red drums and needles vanish in grey
        if p.colour is None and p.source is not None:
            with contextlib.suppress(ImageError):  # it decoded a moment ago
                bgr = _decode(p.source, p.name, p.reduced, True)[1]
                image = bgr if bgr is not None else image
        if p.homography is not None:
            if self.aligner is not None:
                size = self.aligner.ref.size
            else:
                size = transformed_size(image.shape[1], image.shape[0], self.profile.transform)
            image = cv2.warpPerspective(image, p.homography, size)
        canvas = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        for (x, y, bw, bh), v in zip(self.boxes, values, strict=True):
            ok = v.value is not None and v.confidence >= self.profile.min_confidence
            colour = (0, 200, 0) if ok else (0, 0, 255)
            cv2.rectangle(canvas, (x, y), (x + bw - 1, y + bh - 1), colour, 1)
            label = "?" if v.value is None else f"{v.value:.2f}"
            cv2.putText(canvas, label, (x, max(12, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
            cv2.putText(canvas, f"{v.confidence:.2f}", (x, y + bh + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1,
                        cv2.LINE_AA)
        title = result.reading if result.reading is not None else f"UNREADABLE: {result.error}"
        cv2.putText(canvas, f"{title}  conf {result.confidence:.2f}", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (255, 0, 255), 2, cv2.LINE_AA)
        self.debug_dir.mkdir(parents=True, exist_ok=True)
        out = self.debug_dir / f"{_safe(p.name)}.debug.png"
        if not cv2.imwrite(str(out), canvas):
            log.warning("cannot write debug image %s", out)


def _shifted_crops(grey: np.ndarray, boxes: list[tuple[int, int, int, int]], homography: np.ndarray | None,
                   scale: float) -> list[tuple[int, list[np.ndarray]]]:
    """The digit boxes moved left and right by ``SIDE_SHARE`` of their width, cut as ``crop_boxes`` does; a side
    whose boxes leave the photo is left out (no second look there)."""
    out = []
    for sign in (-1, 1):
        moved = [(x + sign * max(1, round(SIDE_SHARE * w)), y, w, h) for x, y, w, h in boxes]
        with contextlib.suppress(AlignmentError):
            out.append((sign, crop_boxes(grey, moved, homography, scale)))
    return out


def _unstable(first: list[DigitValue], sides: list[tuple[int, list[DigitValue]]],
              boxes: list[tuple[int, int, int, int]]) -> str | None:
    """Why the digits read with the boxes moved (each side: -1 left, +1 right, and its values) contradict the first
    reading, or None: a digit that reads otherwise on a side, or that the reader refuses on both sides (it was read
    in one place only)."""
    for i, a in enumerate(first):
        if a.value is None:
            continue
        px = max(1, round(SIDE_SHARE * boxes[i][2]))
        moved = [(sign, side[i].value) for sign, side in sides]
        for sign, b in moved:
            if b is not None and abs((a.value - b + 5.0) % 10.0 - 5.0) > UNSTABLE:
                return (f"digit {i + 1} reads {a.value:.2f} ({a.confidence:.2f}) but {b:.2f} with its box {px} px "
                        f"further {'left' if sign < 0 else 'right'}: the reading depends on where the box sits "
                        "(centre the box on the drum window: smartmeter profile check)")
        if len(moved) == 2 and all(b is None for _, b in moved):
            return (f"digit {i + 1} reads {a.value:.2f} ({a.confidence:.2f}) but not with its box {px} px further "
                    "left or right: the reading depends on where the box sits (centre the box on the drum window: "
                    "smartmeter profile check)")
    return None


def _position_name(i: int, n_digits: int) -> str:
    return f"digit {i + 1}" if i < n_digits else f"pointer {i - n_digits + 1}"


def _decode(image: PhotoInput, name: str, reduce: int,
            colour: bool) -> tuple[np.ndarray, np.ndarray | None, int]:
    """The photo as grey, as colour (when asked for and the photo has colour; else None), and how much smaller
    than its file it was decoded (arrays are taken as they are)."""
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or image.size == 0:
            raise ImageError(f"{name}: not an image array (shape {image.shape})")
        bgr = image if colour and image.ndim == 3 and image.shape[2] == 3 else None
        return to_grey(image), bgr, 1
    if isinstance(image, bytes | bytearray):
        if not colour:
            return decode_image(bytes(image), name, grey=True, reduce=reduce), None, reduce
        bgr = decode_image(bytes(image), name, reduce=reduce)
    elif not colour:
        return load_image(image, grey=True, reduce=reduce), None, reduce
    else:
        bgr = load_image(image, reduce=reduce)
    return to_grey(bgr), bgr, reduce


def _default_name(image: PhotoInput, index: int) -> str:
    return str(image) if isinstance(image, Path | str) else f"photo{index + 1}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).name) or "photo"
