"""Tesseract as a digit reader: the baseline that needs no model file.

Each crop is prepared the way tesseract likes it (grey, scaled to ~64 px high, Otsu binarised, dark digit on a
white background with a margin) and read as a single character (``--psm 10``) with a digits-only whitelist.
Tesseract cannot see drum motion, so the value is always a whole digit (``3.0``); the confidence is tesseract's
own (0-100 scaled to 0-1). Nothing read, or more than one character, gives ``value=None``. One process per crop:
``read_batch`` is a loop.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import cv2
import numpy as np

from smartmeter.errors import ExternalToolError
from smartmeter.ocr.image_io import to_grey
from smartmeter.ocr.readers.base import DigitReader, ReaderUnavailable
from smartmeter.ocr.tesseract import Tesseract, check_tesseract, find_tesseract, run_tesseract
from smartmeter.types import DigitValue

log = logging.getLogger(__name__)

TARGET_HEIGHT = 64
MARGIN = 12
ARGS = ["--psm", "10", "--oem", "1", "-c", "tessedit_char_whitelist=0123456789"]


def prepare(crop: np.ndarray) -> np.ndarray:
    """Grey, scaled, binarised, dark-on-light, padded: what tesseract reads best."""
    grey = to_grey(crop)
    h, w = grey.shape[:2]
    if h == 0 or w == 0:
        raise ValueError("empty crop")
    scale = TARGET_HEIGHT / h
    grey = cv2.resize(grey, (max(1, round(w * scale)), TARGET_HEIGHT),
                      interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
    grey = cv2.GaussianBlur(grey, (3, 3), 0)
    _, binary = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # the background is the majority of a digit window; make it white
    if np.count_nonzero(binary) < binary.size / 2:
        binary = cv2.bitwise_not(binary)
    binary = _drop_border_blobs(binary)
    return cv2.copyMakeBorder(binary, MARGIN, MARGIN, MARGIN, MARGIN, cv2.BORDER_CONSTANT, value=255)


def _drop_border_blobs(binary: np.ndarray) -> np.ndarray:
    """Whiten dark blobs touching the crop's edge (window frame, neighbouring drums); keep the digit."""
    ink = (binary == 0).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    h, w = binary.shape
    keep = np.zeros(n, dtype=bool)
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        touches = x == 0 or y == 0 or x + bw >= w or y + bh >= h
        keep[i] = not touches and area >= 0.002 * h * w
    if not keep.any():
        return binary
    return np.where(keep[labels], 0, 255).astype(np.uint8)


class TesseractReader(DigitReader):
    """Single-digit reads with the tesseract binary (``ExternalToolError`` at construction if it is missing).

    A crop that makes tesseract crash or run past ``timeout_s`` raises ``ExternalToolError``: the caller makes
    that photo unreadable, after :meth:`probe` has checked the binary itself still runs."""

    name = "tesseract"

    def __init__(self, cmd: str | None = None, timeout_s: float = 30.0) -> None:
        self.tool: Tesseract = find_tesseract(cmd)
        self.timeout_s = timeout_s
        self.version = f"tesseract-{self.tool.version_text}"

    def probe(self) -> None:
        try:
            check_tesseract(self.tool.path)
        except ExternalToolError as exc:
            raise ReaderUnavailable(exc.message, hint=exc.hint) from exc

    def read_batch(self, crops: Sequence[np.ndarray]) -> list[DigitValue]:
        return [self._read_one(crop) for crop in crops]

    def _read_one(self, crop: np.ndarray) -> DigitValue:
        if crop.size == 0:
            return DigitValue(None, 0.0)
        words = run_tesseract(prepare(crop), ARGS, self.tool, self.timeout_s)
        if len(words) != 1 or len(words[0].text) != 1 or not words[0].text.isdigit():
            log.debug("tesseract read %r: not a single digit", [w.text for w in words])
            return DigitValue(None, 0.0)
        word = words[0]
        return DigitValue(float(int(word.text)), min(max(word.confidence / 100.0, 0.0), 1.0))
