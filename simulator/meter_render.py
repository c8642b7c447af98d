"""A simulated electricity meter photographed by a virtual camera (the ``sim`` camera backend).

The meter face (body, labels, serial number, a dark counter window) is drawn once; each photo pastes REAL digit
crops (``simulator/assets/digits``, see its README) into the drum boxes, then applies the camera: lighting
(brightness, tint, a gradient), a slight shift, sometimes blur and glare, sensor noise, JPEG. Drums roll like a
real counter: the last drum turns continuously, every other drum turns only while its right neighbour goes 9->0;
each drum shows a crop whose label is the drum's exact tenth position.

    r = MeterRenderer(seed=1)
    jpeg, truth = r.render(12345.67, datetime.now(UTC))
    Path("profile.yaml").write_text(r.profile().to_yaml())   # or r.write_profile(folder)
"""

from __future__ import annotations

import csv
import functools
import logging
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from smartmeter.errors import ConfigError, InputError
from smartmeter.ocr.profile import Alignment, Box, Profile
from smartmeter.types import utc

log = logging.getLogger(__name__)

ASSETS = Path(__file__).parent / "assets" / "digits"
STYLES = ("powermeter-emeter1", "watermeter-techem")
DRUM_W, DRUM_H, GAP = 28, 44, 4
MARGIN = 10  # the face is drawn this much larger on every side; the camera shift picks a window of it


@dataclass(frozen=True)
class Truth:
    """What the photo shows: the register, each drum's position (0.0-9.9) and the careful human reading."""

    timestamp: datetime
    register_kwh: float
    positions: tuple[float, ...]  # most significant first, as shown (a tenth of a step)
    reading: str  # e.g. "012345.6": what a careful person would write down
    value: float  # the reading as a number
    shift: tuple[int, int]  # camera shift (dx, dy), px
    brightness: float
    blurred: bool
    glare: bool

    def row(self) -> list[str]:
        return [f"{utc(self.timestamp):%Y-%m-%dT%H:%M:%SZ}", f"{self.register_kwh:.4f}", self.reading,
                " ".join(f"{p:.1f}" for p in self.positions), f"{self.shift[0]} {self.shift[1]}",
                f"{self.brightness:.2f}", str(int(self.blurred)), str(int(self.glare))]


TRUTH_HEADER = ["timestamp", "register_kwh", "reading", "positions", "shift", "brightness", "blurred", "glare"]


@functools.lru_cache(maxsize=4)
def load_crops(style: str, root: Path = ASSETS) -> tuple[list[np.ndarray], ...]:
    """Crops of one source meter resized to the drum size, per tenth position 0..99 (missing ones borrowed
    from the next tenth above within the same digit, else below).

    ``root`` holds ``index.csv`` (the shipped assets) or ``labels.csv`` (the full digit data set,
    ``path,label,meter``), so any labelled meter can be rendered, e.g. one the digit model never saw."""
    index = root / "index.csv" if (root / "index.csv").is_file() else root / "labels.csv"
    pools: list[list[np.ndarray]] = [[] for _ in range(100)]
    try:
        with index.open(newline="") as fh:
            for row in csv.DictReader(fh):
                if row["meter"].strip() != style:
                    continue
                if row["label"].strip().lower() == "nan":
                    continue
                img = cv2.imread(str(root / row["path"]), cv2.IMREAD_COLOR)
                if img is None:
                    raise ConfigError(f"cannot decode digit crop {row['path']}")
                q = int(round(float(row["label"]) * 10)) % 100
                pools[q].append(cv2.resize(img, (DRUM_W, DRUM_H), interpolation=cv2.INTER_AREA))
    except OSError as exc:
        raise ConfigError(f"cannot read the simulator's digit crops {index}: {exc.strerror}") from exc
    if not any(pools):
        raise ConfigError(f"no digit crops for style {style!r} in {index}")
    for q in range(100):
        if not pools[q]:
            for cand in [*range(q + 1, (q // 10) * 10 + 10), *range(q - 1, (q // 10) * 10 - 1, -1)]:
                if pools[cand]:
                    pools[q] = pools[cand]
                    break
            else:
                raise ConfigError(f"style {style!r} has no crop for digit {q // 10}")
    return tuple(pools)


def drum_positions(register: float, drums: int, decimals: int) -> tuple[list[int], int]:
    """Tenth positions (0..99, most significant first) of each drum, and the careful reading in last-drum units.

    The last drum turns continuously; drum k turns only while drum k+1 (its right neighbour) rolls 9->0.
    """
    if not math.isfinite(register) or register < 0:
        raise InputError(f"register must be a number >= 0, got {register!r}")
    tenths = int(math.floor(register * 10 ** (decimals + 1) + 1e-6))
    q = [0] * drums
    q[-1] = tenths % 100
    for k in range(drums - 2, -1, -1):
        digit = (tenths // 10 ** (drums - k)) % 10
        right = q[k + 1]
        q[k] = 10 * digit + (right - 90 if right >= 90 else 0)
    return q, (tenths // 10) % 10 ** drums


class MeterRenderer:
    """Renders photos of one simulated meter; ``seed`` fixes its look, serial number and camera jitter."""

    def __init__(self, seed: int = 1, *, meter_id: str = "sim1", style: str | None = None, integer_digits: int = 6,
                 decimals: int = 1, size: tuple[int, int] = (320, 240), jpeg_quality: int = 85,
                 effects: bool = True, digits_root: Path | None = None) -> None:
        if style is not None and style not in STYLES and digits_root is None:
            raise ConfigError(f"unknown meter style {style!r}; choose one of {', '.join(STYLES)}")
        if not 1 <= integer_digits + decimals <= 9:
            raise ConfigError("a simulated meter has 1 to 9 drums")
        self.seed, self.meter_id, self.decimals = seed, meter_id, decimals
        self.drums = integer_digits + decimals
        self.style = style or STYLES[0]
        self.w, self.h = size
        self.quality, self.effects = jpeg_quality, effects
        self.rng = np.random.default_rng(seed)
        self.crops = load_crops(self.style) if digits_root is None else load_crops(self.style, digits_root)
        self.serial = f"{int(self.rng.integers(10**9, 10**10))}"
        width = self.drums * DRUM_W + (self.drums - 1) * GAP
        if width + 60 > self.w or self.h < DRUM_H + 120:
            raise ConfigError(f"{self.drums} drums do not fit a {self.w}x{self.h} photo")
        x0, y0 = (self.w - width) // 2 - 12, self.h // 2 - DRUM_H // 2 - 4
        self.boxes: list[Box] = [(x0 + i * (DRUM_W + GAP), y0, DRUM_W, DRUM_H) for i in range(self.drums)]
        self.face = self._draw_face()
        self._prepare_camera()

    # -- the meter face, drawn once -------------------------------------------------------------------------
    def _draw_face(self) -> np.ndarray:
        w, h, m = self.w + 2 * MARGIN, self.h + 2 * MARGIN, MARGIN
        base = np.array([205, 208, 210], np.float32) + self.rng.uniform(-15, 15, 3).astype(np.float32)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        face = base[None, None, :] * (1.0 - 0.12 * (yy / h))[..., None] * (1.0 - 0.05 * (xx / w))[..., None]
        img = np.clip(face, 0, 255).astype(np.uint8)
        cv2.rectangle(img, (0, 0), (w - 1, h - 1), (60, 60, 60), 6)
        for cx, cy in ((m + 14, m + 14), (w - m - 14, m + 14), (m + 14, h - m - 14), (w - m - 14, h - m - 14)):
            cv2.circle(img, (cx, cy), 6, (120, 120, 125), -1)  # screws
            cv2.line(img, (cx - 4, cy), (cx + 4, cy), (70, 70, 70), 2)
        bx = [b[0] + m for b in self.boxes]
        by = self.boxes[0][1] + m
        x0, x1 = bx[0] - 8, bx[-1] + DRUM_W + 8
        cv2.rectangle(img, (x0, by - 8), (x1, by + DRUM_H + 8), (25, 25, 25), -1)  # counter window
        cv2.rectangle(img, (x0 - 2, by - 10), (x1 + 2, by + DRUM_H + 10), (90, 90, 90), 2)
        for i in range(self.drums - self.decimals, self.drums):  # decimal drums framed in red
            cv2.rectangle(img, (bx[i] - 2, by - 3), (bx[i] + DRUM_W + 1, by + DRUM_H + 2), (30, 30, 200), 2)
        font = cv2.FONT_HERSHEY_SIMPLEX
        dark = (40, 40, 40)
        cv2.putText(img, "kWh", (x1 + 8, by + DRUM_H // 2 + 7), font, 0.6, dark, 2, cv2.LINE_AA)
        cv2.putText(img, f"SIMMETER E-{self.seed % 1000}", (m + 30, m + 30), font, 0.5, dark, 1, cv2.LINE_AA)
        cv2.putText(img, f"No. {self.serial}", (m + 30, m + 52), font, 0.45, dark, 1, cv2.LINE_AA)
        cv2.putText(img, "230V 50Hz 10(60)A", (m + 30, h - m - 50), font, 0.45, dark, 1, cv2.LINE_AA)
        cv2.putText(img, "1000 imp/kWh", (m + 30, h - m - 30), font, 0.45, dark, 1, cv2.LINE_AA)
        cv2.circle(img, (w - m - 40, h - m - 45), 5, (30, 30, 160), -1)  # pulse LED
        for i in range(12):  # barcode under the serial: texture for feature alignment
            bw = 1 + int(self.rng.integers(0, 3))
            cv2.rectangle(img, (w - m - 110 + 7 * i, m + 22), (w - m - 110 + 7 * i + bw, m + 48), dark, -1)
        return img

    def _prepare_camera(self) -> None:
        """Precomputed lighting gradients, glare blobs and sensor noise, reused by every photo."""
        yy, xx = np.mgrid[0:self.h, 0:self.w].astype(np.float32)
        # all uint8, so each effect is one saturating OpenCV call: gain maps in units of 1/128
        self.gradients = [np.repeat(np.clip(128 * (1.0 + a * (xx / self.w - 0.5) + b * (yy / self.h - 0.5)),
                                            0, 255).astype(np.uint8)[..., None], 3, axis=2)
                          for a, b in ((0, 0), (0.35, 0), (-0.35, 0.1), (0.1, 0.35), (-0.2, -0.3))]
        self.glares = []
        for cx, cy, r in ((0.2, 0.25, 35), (0.8, 0.8, 30), (0.75, 0.3, 40), (0.5, 0.5, 22)):
            d2 = (xx - cx * self.w) ** 2 + (yy - cy * self.h) ** 2
            blob = (np.exp(-d2 / (2 * r * r)) * 170.0).astype(np.uint8)[..., None]
            self.glares.append(np.repeat(blob, 3, axis=2))
        noise = self.rng.normal(0, 3.0, (self.h + 64, self.w + 64, 3))
        self.noise_up = np.clip(noise, 0, 255).astype(np.uint8)
        self.noise_down = np.clip(-noise, 0, 255).astype(np.uint8)

    # -- one photo ----------------------------------------------------------------------------------------
    def render_array(self, register_kwh: float, t: datetime) -> tuple[np.ndarray, Truth]:
        """The photo as a BGR array, and its truth."""
        q, units = drum_positions(register_kwh, self.drums, self.decimals)
        canvas = self.face.copy()
        rng = self.rng
        for (x, y, w, h), pos in zip(self.boxes, q, strict=True):
            pool = self.crops[pos]
            canvas[y + MARGIN:y + MARGIN + h, x + MARGIN:x + MARGIN + w] = pool[int(rng.integers(0, len(pool)))]
        dx, dy, bright, blurred, glare = 0, 0, 1.0, False, False
        if self.effects:
            dx, dy = (int(v) for v in rng.integers(-6, 7, 2))
        img = canvas[MARGIN + dy:MARGIN + dy + self.h, MARGIN + dx:MARGIN + dx + self.w]
        if self.effects:
            hour = utc(t).hour + utc(t).minute / 60.0
            daylight = 0.5 + 0.5 * math.cos((hour - 13.0) / 24.0 * 2 * math.pi)  # indoor light follows the day
            bright = float(rng.uniform(0.55, 0.8) + 0.45 * daylight * rng.uniform(0.7, 1.0))
            tint = (1.0 + rng.uniform(-0.08, 0.08, 3)) * bright
            img = cv2.multiply(np.ascontiguousarray(img), self.gradients[int(rng.integers(0, len(self.gradients)))],
                               scale=1.0 / 128)
            img = cv2.multiply(img, (float(tint[0]), float(tint[1]), float(tint[2]), 0.0))  # type: ignore[call-overload]
            if rng.random() < 0.07:
                glare = True
                img = cv2.add(img, self.glares[int(rng.integers(0, len(self.glares)))])
            ox, oy = (int(v) for v in rng.integers(0, 64, 2))
            img = cv2.add(img, self.noise_up[oy:oy + self.h, ox:ox + self.w])
            img = cv2.subtract(img, self.noise_down[oy:oy + self.h, ox:ox + self.w])
            if rng.random() < 0.25:
                blurred = True
                img = cv2.GaussianBlur(img, (5, 5), float(rng.uniform(0.6, 1.3)))
        else:
            img = np.ascontiguousarray(img)
        value = units / 10 ** self.decimals
        text = f"{units:0{self.drums}d}"
        reading = text if not self.decimals else f"{text[:-self.decimals]}.{text[-self.decimals:]}"
        truth = Truth(utc(t), float(register_kwh), tuple(p / 10 for p in q), reading, value, (dx, dy), bright,
                      blurred, glare)
        return img, truth

    def render(self, register_kwh: float, t: datetime) -> tuple[bytes, Truth]:
        """One JPEG photo of the meter showing ``register_kwh`` at time ``t``, and its truth."""
        img, truth = self.render_array(register_kwh, t)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise InputError("cannot encode the simulated photo as JPEG")
        return buf.tobytes(), truth

    # -- the matching profile ---------------------------------------------------------------------------
    def reference_image(self) -> np.ndarray:
        """The face without camera effects, drums at 0 (what the profile's boxes refer to)."""
        img = self.face[MARGIN:MARGIN + self.h, MARGIN:MARGIN + self.w].copy()
        for x, y, w, h in self.boxes:
            img[y:y + h, x:x + w] = self.crops[0][0]
        return img

    def profile(self, reference: str | None = "reference.png") -> Profile:
        return Profile(meter=self.meter_id, kind="drum", unit="kWh", reader="cnn",
                       reference=Path(reference) if reference else None,
                       alignment=Alignment(method="auto", max_shift_px=30.0, min_inliers=12),
                       digits=list(self.boxes), decimals=self.decimals)

    def write_profile(self, folder: Path) -> Path:
        """Write ``reference.png`` and ``profile.yaml`` into ``folder``; returns the profile path."""
        folder.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(folder / "reference.png"), self.reference_image()):
            raise InputError(f"cannot write {folder / 'reference.png'}")
        path = folder / "profile.yaml"
        path.write_text(self.profile().to_yaml(), encoding="utf-8")
        return path
