"""Rendered pointer dials with a known value, to measure ``smartmeter.ocr.dial`` on dials it was not tuned on.

One dial per call, seeded: a white or cream face with a printed scale (10 or 50 ticks, the digits 0-9 around it,
turning clockwise or counter-clockwise), a needle of a random shape (teardrop, lance, line with a counterweight)
and colour (reds from orange-red to dark red; or black, dark blue, dark grey for ``needle="dark"``), an optional
hub cap, then the camera: the whole dial turned by up to ``max_turn`` degrees (the profile is told, like a user
who measured the zero on the reference), the box slightly off-centre, a lighting gradient, glare (a white
ellipse), blur, noise and JPEG.

    dial, truth = render_dial(np.random.default_rng(7))
    read_dial(dial, DialSpec(truth.direction, truth.zero_degrees, truth.needle))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

Direction = Literal["clockwise", "counterclockwise"]
SHAPES = ("teardrop", "lance", "line")
REDS = ((30, 30, 220), (20, 60, 240), (40, 40, 170), (60, 50, 230), (30, 90, 250))  # BGR
DARKS = ((20, 20, 20), (90, 30, 20), (60, 60, 60))


@dataclass(frozen=True)
class DialTruth:
    value: float  # 0.0-9.99, what the needle points at on the printed scale
    direction: Direction
    zero_degrees: float  # where 0 is, clockwise from up, in the rendered image
    needle: Literal["red", "dark"]
    shape: str
    glare: bool
    blurred: bool


def _polar(cx: float, cy: float, r: float, deg: float) -> tuple[float, float]:
    a = math.radians(deg)
    return cx + r * math.sin(a), cy - r * math.cos(a)


def _needle(canvas: np.ndarray, cx: float, cy: float, r: float, deg: float, shape: str, colour: tuple[int, ...],
            rng: np.random.Generator) -> None:
    s = 8  # sub-pixel drawing: coordinates << 3
    def p(rad: float, d: float) -> tuple[int, int]:
        x, y = _polar(cx, cy, rad, d)
        return round(x * s), round(y * s)

    length = r * rng.uniform(0.62, 0.8)
    if shape == "teardrop":
        base = r * rng.uniform(0.16, 0.38)
        cv2.circle(canvas, (round(cx * s), round(cy * s)), round(base * s), colour, -1, cv2.LINE_AA, 3)
        spread = math.degrees(math.asin(min(0.99, base / (0.35 * length + base))))
        pts = np.array([p(base, deg - 90), p(length, deg), p(base, deg + 90), p(base * 0.6, deg + 180 - spread)])
        cv2.fillPoly(canvas, [pts.reshape(-1, 1, 2)], colour, cv2.LINE_AA, 3)
    elif shape == "lance":
        w = r * rng.uniform(0.06, 0.1)
        pts = np.array([p(length, deg), p(w * 1.5, deg + 90), p(r * 0.18, deg + 180), p(w * 1.5, deg - 90)])
        cv2.fillPoly(canvas, [pts.reshape(-1, 1, 2)], colour, cv2.LINE_AA, 3)
    else:
        thick = max(1, round(r * rng.uniform(0.04, 0.08)))
        cv2.line(canvas, p(r * 0.25, deg + 180), p(length, deg), colour, thick, cv2.LINE_AA, 3)
        cv2.circle(canvas, p(r * 0.22, deg + 180), round(r * 0.08 * s), colour, -1, cv2.LINE_AA, 3)


def render_dial(rng: np.random.Generator, size: int | None = None, needle: Literal["red", "dark"] | None = None,
                max_turn: float = 10.0) -> tuple[np.ndarray, DialTruth]:
    """One dial crop (BGR, square box around the dial with a margin) and what it shows."""
    size = size or int(rng.integers(44, 160))
    needle = needle or ("red" if rng.random() < 0.75 else "dark")
    direction: Direction = "clockwise" if rng.random() < 0.5 else "counterclockwise"
    sign = 1 if direction == "clockwise" else -1
    value = float(rng.uniform(0, 10))
    zero = float(rng.uniform(-max_turn, max_turn))
    big = size * 2  # drawn at twice the size, then shrunk (anti-aliasing)
    face = np.array([rng.integers(225, 256), rng.integers(225, 256), rng.integers(225, 256)], np.float64)
    canvas = np.empty((big, big, 3), np.uint8)
    canvas[:] = (face * rng.uniform(0.55, 0.8)).astype(np.uint8)  # the meter body around the dial
    off = rng.uniform(-0.04, 0.04, 2) * big
    cx, cy = big / 2 + off[0], big / 2 + off[1]
    r = big * rng.uniform(0.4, 0.46)
    cv2.circle(canvas, (round(cx), round(cy)), round(r), tuple(int(c) for c in face), -1, cv2.LINE_AA)
    ink = (int(rng.integers(0, 60)),) * 3
    cv2.circle(canvas, (round(cx), round(cy)), round(r), ink, max(1, round(r * 0.03)), cv2.LINE_AA)
    ticks = 50 if rng.random() < 0.5 else 10
    for i in range(ticks):
        d = zero + sign * i * 360 / ticks
        inner = 0.78 if i % (ticks // 10) == 0 else 0.86
        x0, y0 = _polar(cx, cy, r * inner, d)
        x1, y1 = _polar(cx, cy, r * 0.96, d)
        cv2.line(canvas, (round(x0), round(y0)), (round(x1), round(y1)), ink, max(1, round(r * 0.025)), cv2.LINE_AA)
    scale = r / 60
    for digit in range(10):
        x, y = _polar(cx, cy, r * 0.64, zero + sign * digit * 36)
        (tw, th), _ = cv2.getTextSize(str(digit), cv2.FONT_HERSHEY_SIMPLEX, scale, max(1, round(scale * 2)))
        cv2.putText(canvas, str(digit), (round(x - tw / 2), round(y + th / 2)), cv2.FONT_HERSHEY_SIMPLEX, scale, ink,
                    max(1, round(scale * 2)), cv2.LINE_AA)
    palette = REDS if needle == "red" else DARKS
    colour = tuple(int(c) for c in palette[int(rng.integers(len(palette)))])
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    _needle(canvas, cx, cy, r, zero + sign * value * 36, shape, colour, rng)
    if rng.random() < 0.5:  # a hub cap over the needle's axis
        hub = (int(rng.integers(0, 80)),) * 3 if rng.random() < 0.5 else colour
        cv2.circle(canvas, (round(cx), round(cy)), round(r * rng.uniform(0.06, 0.12)), hub, -1, cv2.LINE_AA)
    img = canvas.astype(np.float32)
    yy, xx = np.mgrid[0:big, 0:big].astype(np.float32) / big
    g = rng.uniform(-0.35, 0.35, 2)
    img *= (rng.uniform(0.45, 1.15) * (1 + g[0] * (xx - 0.5) + g[1] * (yy - 0.5)))[..., None]
    glare = bool(rng.random() < 0.4)
    if glare:
        gx, gy = rng.uniform(0.25, 0.75, 2) * big
        ax = rng.uniform(0.08, 0.25) * big
        mask = np.zeros((big, big), np.float32)
        cv2.ellipse(mask, (round(gx), round(gy)), (round(ax), round(ax * rng.uniform(0.3, 0.8))),
                    float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), ax * 0.3) * rng.uniform(0.5, 0.9)
        img = img * (1 - mask[..., None]) + 255 * mask[..., None]
    small = cv2.resize(np.clip(img, 0, 255).astype(np.uint8), (size, size), interpolation=cv2.INTER_AREA)
    blurred = bool(rng.random() < 0.3)
    if blurred:
        small = cv2.GaussianBlur(small, (0, 0), rng.uniform(0.5, 1.0 + size / 100))
    noisy = small.astype(np.float32) + rng.normal(0, rng.uniform(1, 6), small.shape)
    ok, buf = cv2.imencode(".jpg", np.clip(noisy, 0, 255).astype(np.uint8),
                           [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(60, 95))])
    assert ok
    out = np.asarray(cv2.imdecode(buf, cv2.IMREAD_COLOR), dtype=np.uint8)
    return out, DialTruth(round(value, 4), direction, zero, needle, shape, glare, blurred)
