"""Synthetic digit crops rendered from TrueType fonts (training only; Pillow, no torch).

Twenty-odd real meters teach the model a dozen typefaces; a user's meter may use another. Rendered drums add
typeface variety the real crops lack: a strip of consecutive digits at a random pitch, seen through a window at a
known drum position (label = digit + share of the pitch rolled), in the colour schemes meters use (light on dark,
dark on light, white on red, red on white) with the cylinder's shading. Seven-segment fonts (DSEG) render LCD
digits instead: whole digits only, sometimes over the faint unlit segments. The usual augmentation
(``smartmeter.ocr.digit_data.augment_batch``) is applied on top, as for real crops.

Fonts come from a folder tree (``/usr/share/fonts`` by default; ``make train`` installs the Debian packages
listed in :data:`FONT_PACKAGES`). Fonts without digits or with decorative glyphs are skipped by name.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from smartmeter.progress import Progress

log = logging.getLogger(__name__)

FONT_DIR = Path("/usr/share/fonts")
FONT_PACKAGES = ("fonts-dseg", "fonts-urw-base35", "fonts-freefont-ttf", "fonts-liberation2", "fonts-ocr-a",
                 "fonts-ocr-b", "fonts-croscore", "fonts-dejavu-core")
SKIP = ("symbol", "z003", "d050000l", "weather", "math", "dingbat", "emoji", "seggchan")  # no plain digits
GLYPH_PX = 44  # rendering size of a digit's height before the window is cut (the reader resizes to 32 x 20)

SCHEMES = (  # (background, ink) as RGB ranges: light on dark, dark on light, white on red, red on white
    (((0, 60), (0, 60), (0, 60)), ((170, 255), (170, 255), (170, 255))),
    (((170, 255), (170, 255), (170, 255)), ((0, 70), (0, 70), (0, 70))),
    (((150, 230), (0, 50), (0, 50)), ((200, 255), (200, 255), (200, 255))),
    (((200, 255), (200, 255), (200, 255)), ((150, 230), (0, 60), (0, 60))),
)
SCHEME_P = (0.45, 0.3, 0.12, 0.13)


@dataclass(frozen=True)
class DigitFont:
    path: Path
    segments: bool  # a seven-segment (LCD) face: whole digits only


def missing_font_packages() -> list[str]:
    """Those of :data:`FONT_PACKAGES` not installed (``make train`` installs them)."""
    return [p for p in FONT_PACKAGES if not (Path("/usr/share/doc") / p).is_dir()]


def find_fonts(root: Path = FONT_DIR) -> list[DigitFont]:
    """Usable fonts under ``root`` (TrueType/OpenType files that render the ten digits), sorted by path."""
    fonts = []
    for path in sorted([*root.rglob("*.ttf"), *root.rglob("*.otf")]):
        name = path.name.lower()
        if any(s in name for s in SKIP) or "dseg14" in name:
            continue
        try:
            font = ImageFont.truetype(str(path), GLYPH_PX)
            boxes = [font.getbbox(str(d)) for d in range(10)]
        except OSError:
            continue
        if any(b[2] - b[0] < 2 or b[3] - b[1] < GLYPH_PX // 3 for b in boxes[:1] + boxes[2:]):
            continue  # no real digit glyphs
        fonts.append(DigitFont(path, segments="dseg" in name))
    return fonts


def _colour(rng: np.random.Generator, ranges: tuple[tuple[int, int], ...]) -> tuple[int, int, int]:
    r, g, b = (int(rng.integers(lo, hi + 1)) for lo, hi in ranges)
    return r, g, b


def _draw_centred(draw: ImageDraw.ImageDraw, font: ImageFont.FreeTypeFont, text: str, cx: float, cy: float,
                  fill: tuple[int, int, int]) -> None:
    left, top, right, bottom = font.getbbox(text, anchor="ls")
    draw.text((cx - (left + right) / 2.0, cy - (top + bottom) / 2.0), text, font=font, fill=fill, anchor="ls")


@functools.lru_cache(maxsize=256)
def _face(path: Path) -> tuple[ImageFont.FreeTypeFont, int, int]:
    """The font at GLYPH_PX, with the tallest and the widest of its ten digit glyphs (loaded once per file)."""
    face = ImageFont.truetype(str(path), GLYPH_PX)
    boxes = [face.getbbox(str(k)) for k in range(10)]
    return face, int(max(b[3] - b[1] for b in boxes)), int(max(b[2] - b[0] for b in boxes))


def render_digit(font: DigitFont, value: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """One BGR crop of ``font`` showing drum position ``value`` (LCD fonts: the whole digit), and its label."""
    face, gh, gw = _face(font.path)
    d = int(math.floor(value)) % 10
    frac = 0.0 if font.segments else value - math.floor(value)
    scheme = SCHEMES[int(rng.choice(len(SCHEMES), p=SCHEME_P))]
    bg, ink = _colour(rng, scheme[0]), _colour(rng, scheme[1])
    win_w = max(8, round(gw * rng.uniform(1.2, 2.0 if font.segments else 1.8)))
    if font.segments:
        pitch = gh * 2.0  # nothing above or below an LCD digit
        win_h = round(gh * rng.uniform(1.1, 1.5))
    else:
        pitch = gh * rng.uniform(1.15, 1.7)
        win_h = round(pitch * rng.uniform(0.8, 1.15))
    strip_h = round(4 * pitch + win_h)
    img = Image.new("RGB", (win_w, strip_h), bg)
    draw = ImageDraw.Draw(img)
    cx = win_w / 2.0 + rng.uniform(-0.05, 0.05) * win_w
    centre_of = [win_h / 2.0 + (j + 0.5) * pitch for j in range(3)]  # digits d-1, d, d+1 ... d+2 below
    if font.segments and rng.random() < 0.5:  # the unlit segments, faintly visible
        faint = tuple(int(b + (i - b) * rng.uniform(0.06, 0.2)) for b, i in zip(bg, ink, strict=True))
        _draw_centred(draw, face, "8", cx, centre_of[1], faint)  # type: ignore[arg-type]
    if font.segments and rng.random() < 0.6:  # an LCD crop often shows parts of the digits beside it
        step = gw * rng.uniform(0.95, 1.45)
        for side in (-1, 1):
            _draw_centred(draw, face, str(int(rng.integers(0, 10))), cx + side * step, centre_of[1], ink)
            if rng.random() < 0.3:  # a decimal point or separator between them
                px = cx + side * step / 2.0
                r = max(1.0, gw * 0.06)
                draw.ellipse((px - r, centre_of[1] + gh / 2 - 2 * r, px + r, centre_of[1] + gh / 2), fill=ink)
    for j, k in enumerate((d - 1, d, d + 1)):
        if font.segments and k != d:
            continue
        _draw_centred(draw, face, str(k % 10), cx, centre_of[j], ink)
    if not font.segments:
        _draw_centred(draw, face, str((d + 2) % 10), cx, centre_of[2] + pitch, ink)
    a = np.asarray(img, dtype=np.float32)
    top = round(centre_of[1] + frac * pitch - win_h / 2.0)
    window = a[top:top + win_h]
    shade = rng.uniform(0.0, 0.45) if not font.segments else rng.uniform(0.0, 0.15)
    y = np.linspace(-1.0, 1.0, win_h, dtype=np.float32)[:, None, None]
    window = window * (1.0 - shade * y * y)  # the drum is a cylinder: darker towards the top and bottom
    bgr = np.clip(window[:, :, ::-1], 0, 255).astype(np.uint8)
    return np.ascontiguousarray(bgr), (d + frac) % 10.0


def render_pool(fonts: list[DigitFont], n: int, seed: int,
                progress: bool = True) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` rendered crops with labels, uniform over fonts and drum positions (tenths), seeded."""
    if not fonts:
        return [], np.zeros(0)
    rng = np.random.default_rng(seed)
    crops: list[np.ndarray] = []
    labels = np.empty(n)
    with Progress("rendering font digits", n, enabled=progress) as p:
        for i in range(n):
            font = fonts[int(rng.integers(0, len(fonts)))]
            crop, labels[i] = render_digit(font, rng.uniform(0.0, 10.0), rng)
            crops.append(crop)
            p.advance()
    log.info("rendered %d digit crops from %d fonts", n, len(fonts))
    return crops, labels
