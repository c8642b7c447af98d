"""Render synthetic meter photos with known counter window, digit boxes and reading (for ocr.autolocate).

Two kinds of face:

- ``drum``: a white/grey meter face with printed labels, serial numbers and small print, a dark counter window
  holding N real digit crops (from a folder of labelled crops, ``<label>_<id>.jpg``, one sub-folder per meter),
  the last 0-2 digits optionally on red (decimals), the last digit sometimes in transition.
- ``lcd``: a grey-green LCD panel with drawn seven-segment digits, a decimal point, an OBIS code and a unit.

Then the whole photo is tilted (±15°), scaled, lit unevenly, blurred, noised and JPEG-compressed.
Ground truth (window corners, digit box corners, labels, decimals) is mapped through the same transform.

    python tests/resources/autolocate/generate.py --crops ../shared/data/digits --out DIR --n 200 --seed 1000
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

MIXED = {"new", "misc", "neural-network-autotrain-digital-counter", "ziffer-raw"}  # many meters in one folder
FONTS = [cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_COMPLEX]
LABELS = ["kWh", "230V 50Hz", "10(40)A", "1 kWh = 375 U", "Cl. 2", "Wechselstromzahler", "Nr.", "Typ DZ 2",
          "IEC 62053-21", "Made in EU", "imp/kWh", "40 C", "3x230/400V", "Active energy"]

# seven segments a..g as (x0, y0, x1, y1) in a unit box 0..1 (w) x 0..2 (h)
SEGMENTS = {"a": (0.1, 0.0, 0.9, 0.0), "b": (1.0, 0.1, 1.0, 0.9), "c": (1.0, 1.1, 1.0, 1.9),
            "d": (0.1, 2.0, 0.9, 2.0), "e": (0.0, 1.1, 0.0, 1.9), "f": (0.0, 0.1, 0.0, 0.9),
            "g": (0.1, 1.0, 0.9, 1.0)}
DIGIT_SEGMENTS = ["abcdef", "bc", "abged", "abgcd", "fgbc", "afgcd", "afgedc", "abc", "abcdefg", "abcdfg"]


@dataclass
class Truth:
    kind: str
    labels: list[float]
    decimals: int
    window: list[list[float]] = field(default_factory=list)  # 4 corners (x, y) in the final photo
    digits: list[list[list[float]]] = field(default_factory=list)  # per digit 4 corners
    tilt: float = 0.0


def load_crops(root: Path) -> dict[str, list[tuple[Path, float]]]:
    """Crops grouped by meter folder: (path, label); NaN labels and tiny crops skipped."""
    out: dict[str, list[tuple[Path, float]]] = {}
    for p in sorted(root.rglob("*.jpg")):
        try:
            label = float(p.name.split("_", 1)[0])
        except ValueError:
            continue
        if label != label or "lcd" in p.parent.name or p.parent.name in MIXED:
            continue
        out.setdefault(p.parent.name, []).append((p, label))
    return {k: v for k, v in out.items() if sum(1 for _, lab in v if lab == int(lab)) >= 10}


def _lighting(img: np.ndarray, rng: random.Random) -> np.ndarray:
    h, w = img.shape[:2]
    gx = np.linspace(rng.uniform(0.55, 1.0), rng.uniform(0.75, 1.15), w, dtype=np.float32)
    gy = np.linspace(rng.uniform(0.7, 1.1), rng.uniform(0.6, 1.1), h, dtype=np.float32)
    gain = np.outer(gy, gx)[..., None]
    return np.clip(img.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, colour: tuple[int, int, int],
          rng: random.Random) -> None:
    cv2.putText(img, text, org, rng.choice(FONTS), scale, colour, max(1, int(scale * 2)), cv2.LINE_AA)


def _distractors(face: np.ndarray, rng: random.Random, avoid: tuple[int, int, int, int], unit: int) -> None:
    """Labels, serial numbers and small print, away from the counter window ``avoid`` (x, y, w, h)."""
    h, w = face.shape[:2]
    ax, ay, aw, ah = avoid
    for _ in range(rng.randint(4, 10)):
        if rng.random() < 0.4:
            text = "".join(rng.choice("0123456789") for _ in range(rng.randint(6, 10)))
            text = rng.choice(["", "Nr. ", "S/N ", "No "]) + text
        else:
            text = rng.choice(LABELS)
        scale = unit * rng.uniform(0.0006, 0.0016)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
        for _try in range(20):
            x, y = rng.randint(0, max(1, w - tw)), rng.randint(th + 2, h - 2)
            if x + tw < ax - 10 or x > ax + aw + 10 or y < ay - 10 or y - th > ay + ah + 10:
                _text(face, text, (x, y), scale, (rng.randint(0, 60),) * 3, rng)
                break
    if rng.random() < 0.6:  # rotating disc of a Ferraris meter, with its red mark
        cx, cy = rng.randint(w // 4, 3 * w // 4), min(h - 5, ay + ah + rng.randint(unit // 8, unit // 3))
        axes = (unit // 3, unit // 30 + 2)
        cv2.ellipse(face, (cx, cy), axes, 0, 0, 360, (150, 150, 155), -1)
        cv2.rectangle(face, (cx - unit // 40, cy - axes[1]), (cx + unit // 40, cy + axes[1]), (30, 30, 200), -1)


def _red_background(crop: np.ndarray) -> np.ndarray:
    """Re-colour a digit crop onto a red drum (the decimal digits of many counters)."""
    g = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255.0
    if g.mean() > 0.5:  # dark digit on light drum: make the digit white on red
        g = 1.0 - g
    red = np.array([40, 40, 190], np.float32)
    white = np.array([235, 235, 240], np.float32)
    return (red * (1 - g[..., None]) + white * g[..., None]).astype(np.uint8)


def render_drum(rng: random.Random, crops: dict[str, list[tuple[Path, float]]],
                hard: bool = False, case: bool = False) -> tuple[np.ndarray, Truth]:
    meter = rng.choice(sorted(crops))
    pool = crops[meter]
    integers = [c for c in pool if c[1] == int(c[1])]
    transit = [c for c in pool if c[1] != int(c[1])]
    n = rng.randint(5, 8)
    chosen = [rng.choice(integers) for _ in range(n)]
    if transit and rng.random() < 0.3:
        chosen[-1] = rng.choice(transit)
    decimals = rng.choice([0, 0, 1, 1, 2]) if n >= 6 else rng.choice([0, 1])
    red_style = rng.choice(["fill", "frame"])

    fw, fh = rng.randint(900, 1400), rng.randint(800, 1200)
    base = rng.randint(185, 245)
    face = np.full((fh, fw, 3), (base, base, base + rng.randint(-10, 10)), np.uint8)
    dh = int(fh * rng.uniform(0.08, 0.16))
    dw = int(dh * rng.uniform(0.6, 0.75))
    gap = int(dw * rng.uniform(0.12, 0.45))
    if n * (dw + gap) > 0.8 * fw:  # keep the window on the face
        f = 0.8 * fw / (n * (dw + gap))
        dh, dw, gap = int(dh * f), int(dw * f), int(gap * f)
    pitch = dw + gap
    margin = int(dh * rng.uniform(0.12, 0.3))
    ww, wh = n * pitch - gap + 2 * margin, dh + 2 * margin
    wx = rng.randint(int(fw * 0.05), max(int(fw * 0.05) + 1, fw - ww - int(fw * 0.05)))
    wy = rng.randint(int(fh * 0.15), int(fh * 0.5))
    frame = rng.randint(3, 10)
    light_window = hard and rng.random() < 0.25  # white drums behind a light window, dark digits
    cv2.rectangle(face, (wx - frame, wy - frame), (wx + ww + frame, wy + wh + frame),
                  (rng.randint(20, 60) if light_window else rng.randint(60, 120),) * 3, -1)
    inside = rng.randint(170, 215) if light_window else rng.randint(5, 35)
    cv2.rectangle(face, (wx, wy), (wx + ww, wy + wh), (inside,) * 3, -1)
    boxes = []
    for i, (path, _label) in enumerate(chosen):
        crop = cv2.imread(str(path))
        crop = cv2.resize(crop, (dw, dh), interpolation=cv2.INTER_AREA)
        if light_window and float(crop.mean()) < 110:  # light drums: dark digit on white
            crop = 255 - crop
        is_decimal = i >= n - decimals
        if is_decimal and red_style == "fill":
            crop = _red_background(crop)
        x, y = wx + margin + i * pitch, wy + margin
        face[y:y + dh, x:x + dw] = crop
        if is_decimal and red_style == "frame":
            cv2.rectangle(face, (x - 2, y - 2), (x + dw + 1, y + dh + 1), (30, 30, 200), max(2, gap // 4))
        boxes.append((x, y, dw, dh))
    _text(face, "kWh", (wx + ww + frame + int(dh * 0.2), wy + wh), dh / 45, (20, 20, 20), rng)
    _distractors(face, rng, (wx - frame, wy - frame, ww + 2 * frame + int(dh * 1.6), wh + 2 * frame), min(fw, fh))
    if hard:
        _near_digits(face, rng, (wx - frame, wy - frame, ww + 2 * frame, wh + 2 * frame), dh, dw, gap, pool)
    truth = Truth("drum", [c[1] for c in chosen], decimals)
    return _photograph(face, rng, (wx, wy, ww, wh), boxes, truth, hard, case)


def _near_digits(face: np.ndarray, rng: random.Random, window: tuple[int, int, int, int], dh: int, dw: int,
                 gap: int, pool: list[tuple[Path, float]]) -> None:
    """Digits close to the counter that are not the register: a small second register (drums in their own
    window) or a serial number printed just below or above the window."""
    fh, fw = face.shape[:2]
    wx, wy, ww, wh = window
    f = rng.uniform(0.35, 0.6)
    sh, sw, sg = max(8, int(dh * f)), max(5, int(dw * f)), max(1, int(gap * f))
    below = wy + wh + int(dh * rng.uniform(0.3, 0.8))
    y = below if below + sh + 10 < fh or wy - sh < 20 else wy - sh - int(dh * rng.uniform(0.3, 0.8))
    if rng.random() < 0.5:  # second register, 3-5 small drums
        n = rng.randint(3, 5)
        x = min(max(5, wx + rng.randint(0, max(1, ww // 2))), max(5, fw - n * (sw + sg) - 10))
        cv2.rectangle(face, (x - 4, y - 4), (x + n * (sw + sg) - sg + 4, y + sh + 4), (rng.randint(5, 40),) * 3, -1)
        for i in range(n):
            path, _ = rng.choice(pool)
            crop = cv2.resize(cv2.imread(str(path)), (sw, sh), interpolation=cv2.INTER_AREA)
            xi = x + i * (sw + sg)
            if y >= 0 and y + sh <= fh and xi + sw <= fw:
                face[y:y + sh, xi:xi + sw] = crop
    else:  # serial number in a digit-like font
        text = "".join(rng.choice("0123456789") for _ in range(rng.randint(6, 10)))
        _text(face, text, (max(5, wx + rng.randint(-dw, dw)), y + sh), sh / 24, (rng.randint(0, 50),) * 3, rng)


def _draw_seven(img: np.ndarray, digit: int, x: int, y: int, w: int, h: int, colour: tuple[int, int, int],
                slant: float) -> None:
    t = max(2, int(w * 0.17))
    for s in DIGIT_SEGMENTS[digit]:
        x0, y0, x1, y1 = SEGMENTS[s]
        p0 = (x0 * (w - t) + t / 2, y0 * (h - t) / 2 + t / 2)
        p1 = (x1 * (w - t) + t / 2, y1 * (h - t) / 2 + t / 2)
        pts = [(x + px + slant * (h - py), y + py) for px, py in (p0, p1)]
        cv2.line(img, (int(pts[0][0]), int(pts[0][1])), (int(pts[1][0]), int(pts[1][1])), colour, t, cv2.LINE_AA)


def render_lcd(rng: random.Random, hard: bool = False, case: bool = False) -> tuple[np.ndarray, Truth]:
    n = rng.randint(6, 8)
    decimals = rng.choice([0, 1, 1, 2])
    digits = [rng.randint(0, 9) for _ in range(n)]
    digits[0] = rng.choice([0, 0, rng.randint(1, 9)])
    fw, fh = rng.randint(900, 1400), rng.randint(800, 1200)
    base = rng.randint(150, 230)
    face = np.full((fh, fw, 3), (base, base, base), np.uint8)
    dh = int(fh * rng.uniform(0.07, 0.14))
    dw = int(dh * rng.uniform(0.5, 0.6))
    gap = int(dw * rng.uniform(0.3, 0.55))
    if n * (dw + gap) + dh > 0.8 * fw:
        f = 0.8 * fw / (n * (dw + gap) + dh)
        dh, dw, gap = int(dh * f), int(dw * f), int(gap * f)
    pitch = dw + gap
    margin = int(dh * rng.uniform(0.3, 0.6))
    ww, wh = n * pitch - gap + 2 * margin, int(dh * 1.6) + 2 * margin
    wx = rng.randint(int(fw * 0.05), max(int(fw * 0.05) + 1, fw - ww - int(fw * 0.05)))
    wy = rng.randint(int(fh * 0.15), int(fh * 0.5))
    panel = (rng.randint(150, 185), rng.randint(185, 215), rng.randint(165, 200))
    cv2.rectangle(face, (wx - 8, wy - 8), (wx + ww + 8, wy + wh + 8), (40, 40, 40), -1)
    cv2.rectangle(face, (wx, wy), (wx + ww, wy + wh), panel, -1)
    ink = (rng.randint(20, 60),) * 3
    slant = rng.uniform(0.0, 0.12)
    top = wy + margin + int(dh * 0.45)
    boxes = []
    for i, d in enumerate(digits):
        x = wx + margin + i * pitch
        _draw_seven(face, d, x, top, dw, dh, ink, slant)
        boxes.append((x, top, int(dw + slant * dh), dh))
        if decimals and i == n - decimals - 1:
            r = max(2, dw // 8)
            cv2.circle(face, (x + dw + gap // 2, top + dh - r), r, ink, -1)
    _text(face, rng.choice(["1.8.0", "1.8.1", "2.8.0", "C.1.0"]), (wx + margin, wy + margin + int(dh * 0.3)),
          dh / 110, ink, rng)
    _text(face, "kWh", (wx + ww - margin - int(dh * 0.9), wy + wh - margin // 3), dh / 90, ink, rng)
    _distractors(face, rng, (wx - 8, wy - 8, ww + 16, wh + 16), min(fw, fh))
    truth = Truth("lcd", [float(d) for d in digits], decimals)
    return _photograph(face, rng, (wx, wy, ww, wh), boxes, truth, hard, case)


def _corners(box: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = box
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float32)


def _glare(img: np.ndarray, rng: random.Random) -> np.ndarray:
    """Camera-flash glare spots, a reflection band across the glass and a cast shadow."""
    h, w = img.shape[:2]
    out = img.astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(rng.randint(0, 2)):  # glare spots
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.03, 0.12) * w
        spot = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        out += spot[..., None] * rng.uniform(80, 220)
    if rng.random() < 0.5:  # reflection band
        a, off, width = rng.uniform(-1.0, 1.0), rng.uniform(0, w), rng.uniform(0.03, 0.15) * w
        d = np.abs(xx - (off + a * yy)) / width
        out += (np.exp(-d * d) * rng.uniform(30, 90))[..., None]
    if rng.random() < 0.5:  # shadow: a soft dark half-plane
        a, off = rng.uniform(-1.5, 1.5), rng.uniform(0.2, 0.8) * w
        d = (xx - (off + a * (yy - h / 2))) / (0.05 * w)
        out *= (1.0 - rng.uniform(0.3, 0.6) / (1.0 + np.exp(-d)))[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def _photograph(face: np.ndarray, rng: random.Random, window: tuple[int, int, int, int],
                boxes: list[tuple[int, int, int, int]], truth: Truth, hard: bool = False,
                case: bool = False) -> tuple[np.ndarray, Truth]:
    """Tilt, rescale, perspective, lighting, blur, noise: the face as a camera would see it. ``hard`` adds glare,
    reflections, shadows, stronger perspective, lower resolution and harsher JPEG; ``case`` puts the face in a
    meter case on a wall and photographs the whole meter at 4 to 12 MP (the counter a few percent of the photo)."""
    if case:
        face, window, boxes = _in_case(face, rng, window, boxes)
    h, w = face.shape[:2]
    tilt = rng.uniform(-15, 15)
    widths = [2048, 2592, 3264, 4000] if case else [480, 640, 800, 1024, 1280, 1600] if hard else [640, 800, 1024,
                                                                                                    1280, 1600]
    out_w = rng.choice(widths)
    scale = out_w / w * rng.uniform(0.85, 1.1)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), tilt, scale)
    m[0, 2] += out_w / 2 - w / 2
    out_h = int(out_w * rng.choice([0.75, 0.75, 1.0, 0.5625] if case else [0.75, 0.75, 1.0, 0.5625, 1.33]))
    m[1, 2] += out_h / 2 - h / 2
    hom = np.vstack([m, [0, 0, 1]]).astype(np.float64)
    jitter = out_w * (0.06 if hard else 0.03)
    src = np.array([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]], np.float32)
    dst = src + np.array([[rng.uniform(-jitter, jitter), rng.uniform(-jitter, jitter)] for _ in range(4)], np.float32)
    hom = cv2.getPerspectiveTransform(src, dst).astype(np.float64) @ hom
    bg = tuple(int(v) for v in np.array([rng.randint(30, 200)] * 3))
    img = cv2.warpPerspective(face, hom, (out_w, out_h), flags=cv2.INTER_AREA, borderValue=bg)
    img = _lighting(img, rng)
    if hard:
        img = _glare(img, rng)
    k = rng.choice([0, 0, 3, 5])
    if k:
        img = cv2.GaussianBlur(img, (k, k), 0)
    noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, rng.uniform(2, 8), img.shape)
    img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    quality = rng.randint(35, 92) if hard else rng.randint(60, 92)
    ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    img = cv2.imdecode(enc, cv2.IMREAD_COLOR)

    def warp(pts: np.ndarray) -> list[list[float]]:
        return [[round(float(x), 1), round(float(y), 1)]
                for x, y in cv2.perspectiveTransform(pts[None], hom)[0]]

    truth.window = warp(_corners(window))
    truth.digits = [warp(_corners(b)) for b in boxes]
    truth.tilt = round(tilt, 2)
    return img, truth


def _in_case(face: np.ndarray, rng: random.Random, window: tuple[int, int, int, int],
             boxes: list[tuple[int, int, int, int]]) -> tuple[np.ndarray, tuple[int, int, int, int],
                                                               list[tuple[int, int, int, int]]]:
    """The face inside a meter case (plastic body, screws, a terminal cover with text) on a wall, sometimes a
    finger in front: a canvas 2.2-3.2 times the face's size, with the window and digit boxes moved along."""
    fh, fw = face.shape[:2]
    k = rng.uniform(2.2, 3.2)
    ch, cw = int(fh * k), int(fw * k * rng.uniform(0.8, 1.0))
    wall = rng.randint(90, 230)
    canvas = np.full((ch, cw, 3), (wall, wall - rng.randint(0, 20), wall - rng.randint(0, 40)), np.uint8)
    ox, oy = rng.randint(int(0.25 * (cw - fw)), int(0.75 * (cw - fw))), rng.randint(int(0.15 * (ch - fh)),
                                                                                     int(0.45 * (ch - fh)))
    body = rng.choice([(40, 40, 40), (200, 200, 195), (120, 125, 130)])
    pad = int(0.15 * fw)
    cv2.rectangle(canvas, (ox - pad, oy - pad), (ox + fw + pad, min(ch - 1, oy + fh + 3 * pad)), body, -1)
    for sx, sy in ((ox - pad // 2, oy - pad // 2), (ox + fw + pad // 2, oy - pad // 2)):
        cv2.circle(canvas, (sx, sy), max(3, pad // 6), (90, 90, 90), -1)
        cv2.line(canvas, (sx - pad // 8, sy), (sx + pad // 8, sy), (30, 30, 30), max(1, pad // 30))
    canvas[oy:oy + fh, ox:ox + fw] = face
    ink = (230, 230, 230) if body[0] < 100 else (25, 25, 25)
    for i in range(rng.randint(1, 3)):  # printed text on the terminal cover
        _text(canvas, rng.choice(LABELS), (ox + rng.randint(0, fw // 2), oy + fh + pad * (i + 1)), fw / 900, ink, rng)
    if rng.random() < 0.3:  # a finger in the picture, away from the counter window
        x = rng.choice([ox - pad, ox + fw + pad])
        cv2.ellipse(canvas, (x, ch), (int(0.08 * cw), int(0.45 * ch)), rng.uniform(-20, 20), 0, 360,
                    (120, 150, 200), -1)
    wx, wy, ww, wh = window
    return canvas, (wx + ox, wy + oy, ww, wh), [(x + ox, y + oy, w, h) for x, y, w, h in boxes]


def generate(out: Path, n: int, seed: int, crops_root: Path, lcd_share: float = 0.3,
             meters: list[str] | None = None, hard: bool = False, case: bool = False) -> list[dict[str, object]]:
    crops = load_crops(crops_root)
    if meters:
        crops = {k: v for k, v in crops.items() if k in meters}
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    index = []
    for i in range(n):
        img, truth = render_lcd(rng, hard, case) if rng.random() < lcd_share else render_drum(rng, crops, hard, case)
        name = f"meter_{seed}_{i:03d}.jpg"
        cv2.imwrite(str(out / name), img, [cv2.IMWRITE_JPEG_QUALITY, 85])
        index.append({"file": name, **truth.__dict__})
    (out / "truth.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
    return index


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--crops", type=Path, required=True, help="folder of labelled digit crops")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lcd-share", type=float, default=0.3)
    ap.add_argument("--meters", nargs="*", help="only crops of these meter folders (e.g. the model's held-out ones)")
    ap.add_argument("--hard", action="store_true", help="glare, reflections, shadows, stronger perspective, low "
                    "resolution, harsh JPEG, light drum windows, a second small register or serial number nearby")
    ap.add_argument("--case", action="store_true", help="the whole meter in its case on a wall, 4-12 MP photos")
    args = ap.parse_args()
    generate(args.out, args.n, args.seed, args.crops, args.lcd_share, args.meters, args.hard, args.case)


if __name__ == "__main__":
    main()
