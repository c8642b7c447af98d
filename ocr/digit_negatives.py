"""Crops that are not one settled digit: the "not a digit / cannot tell" examples of the digit model's reject class.

Training (``ocr.train``, ``--reject``) draws them each epoch from the training meters' own crops, and
``bench/digit_reject.py`` cuts the same kinds from the held-out meters' crops (plus print from real photos, which
training never sees) to measure the reject. Kinds (:data:`KINDS`):

- ``between``: the right half of one drum, the dark gap, the left half of another: a box between two drums (two
  half digits side by side). Two half digits *stacked* are a drum in transit, a reading, and never a negative.
- ``edge``: a frame edge (dark or light) over 45-60 % of the width: the box slid off its drum.
- ``blank``: the crop's own border colour, shaded and noisy: a blank drum, the window's face.
- ``glare``: a reflection bright enough to wash out the middle of the digit.
- ``text``: letters, units and small print rendered from the training fonts (``ocr.digit_fonts``): the meter's
  face, a serial number, "kWh".

Every generator takes BGR crops and a seeded ``numpy`` generator, so a run is reproducible. No torch here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

KINDS = ("between", "edge", "blank", "glare", "text")
TEXT = "AEFHKLMNPRUVWXYaehkmnrtuvwxy/-:%"  # no letter that passes for a digit (B 8, D O 0, S 5, Z 2, G b 6, T 7, I l 1)
UNITS = ("kWh", "m³", "m3", "kW", "Nr", "No", "Wh", "Hz", "A", "V", "imp", "Typ", "cl.", "L1", "x0.1", "°C")


def _resized(a: np.ndarray, like: np.ndarray) -> np.ndarray:
    return cv2.resize(a, (like.shape[1], like.shape[0]), interpolation=cv2.INTER_AREA)


def between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The right half of ``a``, a dark gap, the left half of ``b`` (resized to ``a``): a box between two drums."""
    b = _resized(b, a)
    h, w = a.shape[:2]
    gap = np.full((h, max(1, w // 5), 3), int(np.percentile(a, 10)), np.uint8)
    return _resized(np.concatenate([a[:, w // 2:], gap, b[:, : w - w // 2]], axis=1), a)


def edge(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``a`` with a flat dark or light band over 45-60 % of its width, on one side."""
    h, w = a.shape[:2]
    band = int(w * rng.uniform(0.45, 0.6))
    out = a.copy()
    side = slice(0, band) if rng.random() < 0.5 else slice(w - band, w)
    out[:, side] = rng.integers(0, 60) if rng.random() < 0.6 else rng.integers(180, 255)
    return out


def blank(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A crop of ``a``'s size in the colour of its border, with a vertical shade and noise."""
    h = a.shape[0]
    ring = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    level = np.median(ring, axis=0)
    shade = np.linspace(rng.uniform(-25, 0), rng.uniform(0, 25), h)[:, None, None]
    return np.clip(level + shade + rng.normal(0, 4, a.shape), 0, 255).astype(np.uint8)


def glare(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``a`` under a round reflection that saturates its middle."""
    h, w = a.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    r = rng.uniform(0.35, 0.6) * h
    spot = np.exp(-((xx - w / 2) ** 2 + (yy - h * rng.uniform(0.3, 0.7)) ** 2) / (2 * (r / 2) ** 2))
    return np.clip(a.astype(np.float32) + 255 * 1.5 * spot[..., None], 0, 255).astype(np.uint8)


def text(fonts: Sequence[Path], rng: np.random.Generator) -> np.ndarray:
    """Print that is not a digit: a letter or symbol filling a digit cell, or a unit or a few small letters."""
    from PIL import Image, ImageDraw, ImageFont

    w = int(rng.integers(16, 48))
    h = int(round(w * rng.uniform(1.3, 2.0)))
    bg = int(rng.integers(0, 256))
    ink = int(np.clip(bg + (1 if bg < 128 else -1) * rng.uniform(70, 200), 0, 255))
    img = Image.new("L", (w, h), bg)
    draw = ImageDraw.Draw(img)
    if rng.random() < 0.6:  # one glyph about a digit's size
        s, size = TEXT[int(rng.integers(0, len(TEXT)))], h * rng.uniform(0.6, 0.95)
    else:  # a unit or small print, several glyphs across the cell
        s = UNITS[int(rng.integers(0, len(UNITS)))] if rng.random() < 0.5 else "".join(
            TEXT[int(i)] for i in rng.integers(0, len(TEXT), int(rng.integers(2, 5))))
        size = h * rng.uniform(0.25, 0.5)
    font = ImageFont.truetype(str(fonts[int(rng.integers(0, len(fonts)))]), max(6, int(size)))
    left, top, right, bottom = draw.textbbox((0, 0), s, font=font)
    x = (w - (right - left)) / 2 - left + rng.uniform(-0.1, 0.1) * w
    y = (h - (bottom - top)) / 2 - top + rng.uniform(-0.1, 0.1) * h
    draw.text((x, y), s, fill=ink, font=font)
    grey = np.asarray(img, dtype=np.uint8)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


def draw(crops: Sequence[np.ndarray], n: int, rng: np.random.Generator,
         fonts: Sequence[Path] = ()) -> list[np.ndarray]:
    """``n`` non-digit crops made from ``crops`` (BGR digit crops), the kinds in about equal shares (``text``
    only with ``fonts``)."""
    kinds = [k for k in KINDS if k != "text" or fonts]
    out: list[np.ndarray] = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        a = crops[int(rng.integers(0, len(crops)))]
        if kind == "between":
            out.append(between(a, crops[int(rng.integers(0, len(crops)))]))
        elif kind == "edge":
            out.append(edge(a, rng))
        elif kind == "blank":
            out.append(blank(a, rng))
        elif kind == "glare":
            out.append(glare(a, rng))
        else:
            out.append(text(fonts, rng))
    order = rng.permutation(len(out))
    return [out[int(j)] for j in order]


def share_count(share: float, positives: int) -> int:
    """How many negatives make ``share`` of an epoch of ``positives`` digit crops plus them."""
    return 0 if share <= 0 else int(math.ceil(positives * share / (1.0 - share)))
