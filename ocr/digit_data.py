"""The labelled digit-crop data set for training and benchmarking the digit model, and its augmentations.

The data set is a folder with ``labels.csv`` (``path,label,meter``; label = drum position 0.0-9.9 or NaN) and one
sub-folder per meter. Validation is by whole meters: :data:`HELD_OUT_METERS` are never trained on by the shipped
model, so accuracy reported on them is honest. Crops labelled NaN (the labeller could not tell) are excluded.
No torch here: the benchmark uses this module too.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from smartmeter.errors import InputError, NotFoundError
from smartmeter.ocr.digit_preprocess import HEIGHT, WIDTH, normalise, resize_grey, to_grey
from smartmeter.progress import Progress

log = logging.getLogger(__name__)

# Whole meters held out of the shipped model: electricity, water (drum and another make), gas, LCD.
HELD_OUT_METERS: tuple[str, ...] = (
    "powermeter-emeter1",
    "watermeter-techem",
    "watermeter-altair",
    "gasmeter-gmt",
    "lcd2",
)

MAX_SIDE_CUT = 0.06  # share of the width augmentation may cut off one side


@dataclass
class DigitSet:
    """Colour crops (original size, BGR as decoded) with labels and the meter each came from."""

    crops: list[np.ndarray]
    labels: np.ndarray  # float64, 0.0-9.9
    meters: np.ndarray  # str
    paths: list[str]

    def __len__(self) -> int:
        return len(self.crops)

    def select(self, mask: np.ndarray) -> DigitSet:
        idx = np.flatnonzero(mask)
        return DigitSet([self.crops[i] for i in idx], self.labels[idx], self.meters[idx], [self.paths[i] for i in idx])


def load_digits(root: Path, meters: set[str] | None = None, limit_per_meter: int | None = None,
                seed: int = 0, progress: bool = True) -> DigitSet:
    """Read ``root/labels.csv`` and its crops as BGR images (NaN labels skipped).

    ``meters`` restricts to those folders; ``limit_per_meter`` takes a seeded random subsample per meter.
    """
    csv_path = root / "labels.csv"
    if not csv_path.is_file():
        raise NotFoundError(f"no labels.csv in {root}", hint="pass --data pointing at the digit data set")
    rows: list[tuple[str, float, str]] = []
    with csv_path.open(newline="") as f:
        for r in csv.DictReader(f):
            try:
                label = float(r["label"])
            except (KeyError, ValueError) as exc:
                raise InputError(f"{csv_path}: bad row {r}") from exc
            if math.isnan(label):
                continue
            if meters is not None and r["meter"] not in meters:
                continue
            rows.append((r["path"], label % 10.0, r["meter"]))
    if limit_per_meter is not None:
        rng = np.random.default_rng(seed)
        by_meter: dict[str, list[int]] = {}
        for i, (_, _, m) in enumerate(rows):
            by_meter.setdefault(m, []).append(i)
        keep: list[int] = []
        for m in sorted(by_meter):
            idx = by_meter[m]
            keep += sorted(rng.choice(idx, size=min(limit_per_meter, len(idx)), replace=False).tolist())
        rows = [rows[i] for i in sorted(keep)]
    crops: list[np.ndarray] = []
    with Progress("loading digit crops", len(rows), enabled=progress) as p:
        for path, _, _ in rows:
            img = cv2.imread(str(root / path), cv2.IMREAD_COLOR)
            if img is None:
                raise InputError(f"cannot decode {root / path}")
            crops.append(img)
            p.advance()
    return DigitSet(crops, np.array([r[1] for r in rows]), np.array([r[2] for r in rows]), [r[0] for r in rows])


def _side_margins(g: np.ndarray, rng: np.random.Generator, hshift: float, vscale: float) -> np.ndarray:
    """Cut or pad the crop's sides: left and right independently, padded by up to ``hshift`` of the width or cut by
    up to :data:`MAX_SIDE_CUT` (a sideways move of the window, which does not move the drum; deeper cuts take
    the top bar off a 7 and teach the model that a 1 may be a 7); top and bottom by the *same* amount, up to
    ``vscale`` of the height (a zoom that keeps the centre, so the drum position is kept). Padding repeats the
    border, or is a dark or light band (the meter's frame)."""
    h, w = g.shape
    cut = min(hshift, MAX_SIDE_CUT)
    lf, rt = (round(rng.uniform(-hshift, cut) * w) for _ in range(2))
    tb = round(rng.uniform(-vscale, vscale) * h)
    lf, rt = max(lf, -(w // 3)), max(rt, -(w // 3))
    if lf + rt > w // 2:  # never cut away more than half of the width
        lf, rt = lf // 2, rt // 2
    tb = max(tb, -(h // 4))
    g = g[max(tb, 0):h - max(tb, 0), max(lf, 0):w - max(rt, 0)]
    pads = (max(-tb, 0), max(-tb, 0), max(-lf, 0), max(-rt, 0))
    if any(pads):
        u = rng.random()
        if u < 0.5:
            g = cv2.copyMakeBorder(g, *pads, cv2.BORDER_REPLICATE)
        else:
            value = int(rng.integers(0, 50)) if u < 0.85 else int(rng.integers(190, 256))
            g = cv2.copyMakeBorder(g, *pads, cv2.BORDER_CONSTANT, value=value)
    return g


def _frame_edge(a: np.ndarray, rng: np.random.Generator, neighbour: np.ndarray | None) -> np.ndarray:
    """A frame edge at one or both sides: a dark or light band with a soft, slightly slanted border, or a slice of
    the neighbouring drum (``neighbour``, another crop) as when the box is placed too wide."""
    h, w = a.shape
    a = a.copy()
    sides = [0] if rng.random() < 0.45 else [1] if rng.random() < 0.8 else [0, 1]
    for side in sides:
        bar = rng.uniform(0.04, 0.25) * w
        if neighbour is not None and rng.random() < 0.35:
            nb = cv2.resize(neighbour, (w, h), interpolation=cv2.INTER_AREA)
            k = max(1, round(bar))
            if side == 0:
                a[:, :k] = nb[:, w - k:]
            else:
                a[:, w - k:] = nb[:, :k]
            continue
        slant = rng.uniform(-0.08, 0.08) * w
        x = np.arange(w, dtype=np.float32)[None, :]
        edge = bar + slant * (np.arange(h, dtype=np.float32)[:, None] / h - 0.5)
        dist = (edge - x) if side == 0 else (x - (w - 1 - edge))
        soft = max(0.3, rng.uniform(0.0, 0.04) * w)
        alpha = 1.0 / (1.0 + np.exp(np.clip(-dist / soft, -30.0, 30.0)))
        value = rng.uniform(0, 45) if rng.random() < 0.75 else rng.uniform(190, 255)
        shade = value + rng.normal(0.0, 6.0, (h, 1)).astype(np.float32)  # a rough, unevenly lit rim
        a = np.clip(a * (1 - alpha) + shade * alpha, 0, 255).astype(np.uint8)
    return a


def _flat_glare(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Recipe 1's reflection: a horizontal bright band."""
    h = a.shape[0]
    yc, half = rng.uniform(0.0, 1.0) * h, max(1.0, rng.uniform(0.03, 0.12) * h)
    band = np.exp(-0.5 * ((np.arange(h) - yc) / half) ** 2)[:, None] * rng.uniform(60, 200)
    return np.clip(a.astype(np.float32) + band.astype(np.float32), 0, 255).astype(np.uint8)


def _thin_line(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A sharp, thin, nearly horizontal line across the window: the edge of a reflection on the cover glass or a
    scratch (bright, sometimes dark), which must not turn a 9 into an 8."""
    h, w = a.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yc = rng.uniform(0.15, 0.85) * h + rng.uniform(-0.1, 0.1) * (xx - w / 2)
    half = max(0.5, rng.uniform(0.01, 0.035) * h)
    band = np.clip(1.0 - np.abs(yy - yc) / half, 0.0, 1.0)
    amount = rng.uniform(80, 220) * (1.0 if rng.random() < 0.8 else -0.6)
    return np.clip(a.astype(np.float32) + band * amount, 0, 255).astype(np.uint8)


def _glare(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A bright reflection: a horizontal (slightly tilted) band or a round spot, added to the window."""
    h, w = a.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if rng.random() < 0.7:
        yc = rng.uniform(0.0, 1.0) * h + rng.uniform(-0.15, 0.15) * (xx - w / 2)
        half = max(1.0, rng.uniform(0.03, 0.14) * h)
        band = np.exp(-0.5 * ((yy - yc) / half) ** 2)
    else:
        cy, cx = rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w
        ry, rx = max(1.0, rng.uniform(0.05, 0.2) * h), max(1.0, rng.uniform(0.1, 0.4) * w)
        band = np.exp(-0.5 * (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2))
    return np.clip(a.astype(np.float32) + band * rng.uniform(60, 190), 0, 255).astype(np.uint8)


def augment_batch(crops: list[np.ndarray], labels: np.ndarray, rng: np.random.Generator,
                  height: int = HEIGHT, width: int = WIDTH, glare: float = 0.0,
                  frame: float = 0.0, hshift: float = 0.07, vscale: float = 0.0,
                  recipe: int = 2, lines: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Randomly distorted copies of BGR crops → (normalised ``N x H x W`` planes, labels).

    Colour becomes grey with random channel weights half of the time, or after a random tint (the reader's fixed
    BGR→grey otherwise), so the model does not depend on one meter's ink colour. The sides are cut or padded
    (:func:`_side_margins`: sideways up to ``hshift`` of the width, a centred vertical zoom up to ``vscale``).
    Vertical *shifts* stay small (a vertical shift is a drum movement: ±2 % of the height is about ±0.2 of a step);
    scale (about the centre, so the position is kept), sideways squeeze and rotation are freer. Strokes get thinner
    or bolder; photometric changes cover gamma, contrast, inversion (dark on light), blur, noise and JPEG artefacts.
    With probability ``frame`` a frame edge or a slice of the neighbouring drum covers a side (:func:`_frame_edge`;
    with ``frame=0`` a plain dark or light bar on 30 %), and with probability ``glare`` a bright reflection crosses
    the window (:func:`_glare`). Each crop then goes through the same resize and normalisation the reader uses.
    ``recipe=1`` replays the first shipped recipe draw for draw (no tint, no side cut/pad, plain bar, flat glare
    band), so that model can be rebuilt.
    """
    n = len(crops)
    out = np.empty((n, height, width), dtype=np.float32)
    g: np.ndarray
    a: np.ndarray
    for i, bgr in enumerate(crops):
        u = rng.random()
        if u < 0.5:
            wts = rng.dirichlet((1.0, 1.0, 1.0))
            g = np.clip(bgr.astype(np.float32) @ wts.astype(np.float32), 0, 255).astype(np.uint8)
        elif recipe >= 2 and u < 0.65:  # tinted light: per-channel gains, then the reader's conversion
            gains = rng.uniform(0.6, 1.3, 3).astype(np.float32)
            g = to_grey(np.clip(bgr.astype(np.float32) * gains, 0, 255).astype(np.uint8))
        else:
            g = to_grey(bgr)
        if recipe >= 2 and (hshift > 0.07 or vscale > 0):
            g = _side_margins(g, rng, hshift, vscale)
        h, w = g.shape
        if rng.random() < 0.25:
            r = max(1, round(min(h, w) / 25))
            kernel = np.ones((r + 1, r + 1), np.uint8)
            g = cv2.erode(g, kernel) if rng.random() < 0.5 else cv2.dilate(g, kernel)
        scale = rng.uniform(0.88, 1.15)
        sx = scale * rng.uniform(0.85, 1.15)
        angle = math.radians(rng.uniform(-4.0, 4.0))
        tx = 0.0 if recipe >= 2 and hshift > 0.07 else rng.uniform(-0.07, 0.07) * w
        ty = rng.uniform(-0.02, 0.02) * h
        cos, sin = math.cos(angle), math.sin(angle)
        m = np.array([[sx * cos, -scale * sin, 0.0], [sx * sin, scale * cos, 0.0]])
        c = np.array([w / 2.0, h / 2.0])
        m[:, 2] = c - m[:, :2] @ c + (tx, ty)
        a = cv2.warpAffine(g, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if glare > 0 and rng.random() < glare:
            a = _glare(a, rng) if recipe >= 2 else _flat_glare(a, rng)
        if lines > 0 and rng.random() < lines:
            a = _thin_line(a, rng)
        if recipe >= 2 and frame > 0:
            if rng.random() < frame:
                j = int(rng.integers(0, n))
                a = _frame_edge(a, rng, to_grey(crops[j]) if j != i else None)
        elif rng.random() < 0.3:  # a dark or light frame edge at one side, as when the box catches the drum's rim
            bar = max(1, round(w * rng.uniform(0.05, 0.2)))
            cols = slice(0, bar) if rng.random() < 0.5 else slice(w - bar, w)
            a[:, cols] = int(rng.integers(0, 40)) if rng.random() < 0.7 else int(rng.integers(200, 256))
        if rng.random() < 0.3:
            k = int(rng.integers(1, 3)) * 2 + 1
            a = cv2.GaussianBlur(a, (k, k), rng.uniform(0.3, 1.2) * max(h, w) / 40.0)
        if rng.random() < 0.3:
            q = int(rng.integers(15, 80))
            ok, buf = cv2.imencode(".jpg", a, [cv2.IMWRITE_JPEG_QUALITY, q])
            decoded = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if ok else None
            if decoded is not None:
                a = decoded
        f = resize_grey(a, height, width).astype(np.float32) / 255.0
        f = f ** rng.uniform(0.6, 1.6)
        lo = rng.uniform(0.0, 0.3)
        f = lo + f * rng.uniform(0.2, 1.0 - lo)  # weaker contrast, shifted brightness
        if rng.random() < 0.35:
            f = 1.0 - f
        if rng.random() < 0.5:
            f = f + rng.normal(0.0, rng.uniform(0.0, 0.04), f.shape)
        out[i] = f * 255.0
    return normalise(out), labels


def plain_batch(crops: list[np.ndarray], height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """Undistorted normalised planes (for validation), exactly as the reader sees them."""
    out = np.empty((len(crops), height, width), dtype=np.float32)
    for i, bgr in enumerate(crops):
        out[i] = resize_grey(to_grey(bgr), height, width)
    return normalise(out)


def circular_hits(err: np.ndarray) -> tuple[float, float]:
    """Shares of errors ≤ 0.5 and ≤ 0.2 (with a hair of float tolerance: labels are tenths)."""
    if len(err) == 0:
        return float("nan"), float("nan")
    return float(np.mean(err <= 0.5 + 1e-6)), float(np.mean(err <= 0.2 + 1e-6))
