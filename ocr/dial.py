"""Read a pointer dial: the needle's angle around the dial centre -> a position 0.0-9.99, with a confidence.

Classical CV on one colour crop of a dial box (the box square and centred on the needle's axis, see
``docs/dials.md``), resized to ``SIZE`` px:

1. Needle mask: for ``needle: red`` the pixels whose red exceeds both other channels clearly (adaptive: at least
   ``RED_MIN`` and a share of the dial's reddest pixels, so a dim photo still works; glare is white, not red);
   for ``dark`` the pixels darker than Otsu's threshold inside ``DARK_RADIUS`` of the centre, where a printed
   scale has no digits or ticks. Only the inscribed disc is looked at.
2. The needle is the mask's connected parts that reach within ``HUB_RADIUS`` of the centre (a hub cap may split
   it). None: no needle found (the reading is refused, never guessed).
3. A radial line integral (the mask's mean along rays from 0.25 to 0.8 of the radius, every degree) gives the
   coarse direction: the long side of the needle, not its counterweight.
4. The needle's own axis (second moments of its pixels) refines that direction, so a box slightly off the dial's
   centre still reads; the end of the axis that reaches farther is the tip.

Confidence is the lowest of: how elongated the needle is (a round blob has no direction), how much farther
the tip reaches than the tail, how well the coarse and refined directions agree, and how clearly the best ray
beats any ray more than 45 degrees away. Angles count clockwise from up in the crop (image "up", the reference
frame's): value = ((angle - zero_degrees) x (+1 clockwise, -1 counter-clockwise) mod 360) / 36.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

SIZE = 96  # px: crops are resized to SIZE x SIZE
SMALL_SIDE = 48  # px: dial crops below this need a longer needle for full confidence
FULL_TIP_SMALL = 0.62
MIN_SIDE = 36  # px: smaller dial crops are refused (rendered red dials at 28 and 32 px: 14 and 5 of 400 read
# confidently wrong, at 36 px 1)
RED_MIN = 28.0  # R - max(G, B) of a needle pixel, at least ...
RED_SHARE = 0.4  # ... and this share of the dial's 99th-percentile redness; pixels joined to those need only
RED_WEAK = 0.2  # this share (a thin or blurred needle, a needle in glare)
RED_SATURATION = 0.2  # (R - max(G, B)) / R of a needle pixel, at least (half that for the joined ones)
DARK_RADIUS = 0.45  # dark needles: only this inner part of the dial (the scale's digits sit outside)
HUB_RADIUS = 0.2  # the needle's parts must reach this close to the centre
ALIGNED_REACH = 0.4  # ... or, lying along a line through the centre, at least this close
MIN_TIP = 0.36  # the tip must reach this far (share of the half box) from the centre, and FULL_TIP for full
FULL_TIP = 0.48  # confidence (a needle is 0.6-0.8 of the dial; a counterweight alone, its thin needle lost, 0.3)
SPLIT_MAX = 14.0  # degrees between the needle's axis and the direction to its tip: no trust at all
RAYS = 360


@dataclass(frozen=True)
class DialSpec:
    direction: Literal["clockwise", "counterclockwise"] = "clockwise"
    zero_degrees: float = 0.0  # where the scale's 0 points, degrees clockwise from up
    needle: Literal["red", "dark"] = "red"


@dataclass(frozen=True)
class DialReading:
    value: float | None  # 0.0-9.99, None: no needle found
    confidence: float
    angle: float | None = None  # degrees clockwise from up
    reason: str | None = None  # why value is None, or what lowered the confidence
    off_centre: float | None = None  # how far the needle's axis passes from the box centre, share of the half box


_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
_RADIUS = np.hypot(_XX - (SIZE - 1) / 2, _YY - (SIZE - 1) / 2) / (SIZE / 2)  # share of the half box


def needle_mask(crop: np.ndarray, needle: str) -> np.ndarray:
    """The needle-coloured pixels of a SIZE x SIZE BGR crop inside the inscribed disc (uint8 0/1)."""
    rr = _RADIUS
    if needle == "red":
        f = crop.astype(np.float32)
        redness = f[..., 2] - np.maximum(f[..., 0], f[..., 1])
        inside = rr < 0.95
        top = float(np.percentile(redness[inside], 99))
        share = redness / np.maximum(f[..., 2], 1.0)  # a tinted face is a little red, but not much of its red
        strong = (redness > max(RED_MIN, RED_SHARE * top)) & (share > RED_SATURATION) & inside
        weak = ((redness > max(RED_MIN / 2, RED_WEAK * top)) & (share > RED_SATURATION / 2) & inside).astype(np.uint8)
        n, labels = cv2.connectedComponents(weak, connectivity=8)  # hysteresis: weak pixels joined to strong ones
        mask = np.isin(labels, np.unique(labels[strong])) & (labels > 0) if n > 1 else strong
    else:
        grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
        inside = rr < DARK_RADIUS
        values = grey[inside].reshape(-1, 1)
        t, _ = cv2.threshold(values, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        mask = (grey < t) & inside & (grey < 0.75 * float(np.percentile(values, 90)))
    out = mask.astype(np.uint8)
    return cv2.morphologyEx(out, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))


def _needle_part(mask: np.ndarray) -> np.ndarray | None:
    """The parts of the mask that are the needle: those reaching within HUB_RADIUS of the centre, and elongated
    parts lying along a line through the centre (a needle whose middle is hidden by a hub cap or glare)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    c, half = (SIZE - 1) / 2, SIZE / 2
    keep = []
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < 4:
            continue
        ys, xs = np.nonzero(labels == i)
        dist = np.hypot(xs - c, ys - c)
        central = dist.min() < HUB_RADIUS * half
        if central or (len(xs) >= 6 and dist.min() < ALIGNED_REACH * half and _points_at_centre(xs - c, ys - c)):
            keep.append(i)
    return np.isin(labels, keep) if keep else None


def _points_at_centre(dx: np.ndarray, dy: np.ndarray) -> bool:
    """An elongated set of pixels whose long axis passes within 0.1 of the radius of the centre."""
    mx, my = float(dx.mean()), float(dy.mean())
    evals, evecs = np.linalg.eigh(np.cov(np.stack([dx - mx, dy - my])))
    if evals[1] < 4.0 * max(evals[0], 0.05):  # less than twice as long as wide
        return False
    ax, ay = evecs[:, 1]
    return abs(mx * ay - my * ax) < 0.1 * SIZE / 2


def _ray_profile(part: np.ndarray) -> np.ndarray:
    """Mean of the mask along each ray (index = degrees clockwise from up), radii 0.25-0.8, weighted outwards."""
    polar = cv2.warpPolar(part.astype(np.float32), (48, RAYS), ((SIZE - 1) / 2, (SIZE - 1) / 2), SIZE / 2,
                          cv2.WARP_POLAR_LINEAR)  # rows: angle from +x, counter-clockwise in image terms (y down)
    radii = np.arange(48) / 48
    band = (radii >= 0.25) & (radii <= 0.8)
    w = radii[band]
    prof = (polar[:, band] * w).sum(axis=1) / w.sum()
    # warpPolar row k is the angle k degrees from +x towards +y (clockwise on screen): clockwise-from-up = k + 90
    return np.roll(prof, 90)


def read_dial(crop: np.ndarray, spec: DialSpec) -> DialReading:
    """Read one dial crop (BGR; grey is accepted for dark needles)."""
    if crop.ndim == 2:
        if spec.needle == "red":
            return DialReading(None, 0.0, reason="a red needle needs a colour photo")
        crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
    side = min(crop.shape[:2])
    if side < MIN_SIDE:
        return DialReading(None, 0.0, reason=f"the dial is only {side} px: at least {MIN_SIDE} px are needed "
                                             "(a closer camera or a higher resolution)")
    small = cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    part = _needle_part(needle_mask(small, spec.needle))
    if part is None:
        return DialReading(None, 0.0, reason=f"no {spec.needle} needle found at the dial centre")
    prof = _ray_profile(part)
    smooth = np.convolve(np.concatenate([prof[-3:], prof, prof[:3]]), np.ones(7) / 7, mode="valid")
    coarse = int(np.argmax(smooth))
    peak = float(smooth[coarse])
    away = np.abs(((np.arange(RAYS) - coarse + 180) % 360) - 180) > 45
    rival = float(smooth[away].max()) if away.any() else 0.0
    if peak <= 0.05:
        return DialReading(None, 0.0, reason="no needle reaches out from the dial centre")
    ys, xs = np.nonzero(part)
    c = (SIZE - 1) / 2
    dx, dy = xs - xs.mean(), ys - ys.mean()
    cov = np.cov(np.stack([dx, dy])) if len(xs) > 2 else np.eye(2)
    evals, evecs = np.linalg.eigh(cov)
    axis = evecs[:, 1]
    elong = math.sqrt(max(evals[1], 1e-9) / max(evals[0], 1e-9))
    axis_deg = math.degrees(math.atan2(axis[0], -axis[1])) % 360  # clockwise from up
    if abs(((axis_deg - coarse + 180) % 360) - 180) > 90:
        axis_deg = (axis_deg + 180) % 360
        axis = -axis
    proj = (xs - c) * axis[0] + (ys - c) * axis[1]
    tip, tail = float(proj.max()), float(max(0.0, -proj.min()))
    if tip < MIN_TIP * SIZE / 2:
        return DialReading(None, 0.0, reason="the needle found is too short to point anywhere")
    far = proj >= proj.max() - 0.1 * SIZE / 2  # the tip: from the needle's centroid to its farthest pixels
    tx, ty = float(xs[far].mean() - xs.mean()), float(ys[far].mean() - ys.mean())
    split = 0.0  # the tip's direction against the needle's axis: a bent or merged needle
    if math.hypot(tx, ty) > 0.15 * SIZE / 2:
        tip_deg = math.degrees(math.atan2(tx, -ty)) % 360
        split = abs(((tip_deg - axis_deg + 180) % 360) - 180)
        axis_deg = tip_deg
    disagree = abs(((axis_deg - coarse + 180) % 360) - 180)
    # a small dial loses a thin needle first: what is left may be its counterweight, so it must reach farther
    full_tip = FULL_TIP if side >= SMALL_SIDE else FULL_TIP_SMALL
    angle = axis_deg if disagree <= 25 else float(coarse)
    checks = {
        "needle not elongated": float(np.clip((elong - 1.15) / 0.35, 0, 1)),
        "short needle": float(np.clip((tip / (SIZE / 2) - MIN_TIP) / (full_tip - MIN_TIP), 0, 1)),
        "tip and tail alike": float(np.clip((tip - tail) / (0.35 * tip), 0, 1)),
        "needle axis off the brightest ray": float(np.clip((30 - disagree) / 15, 0, 1)),
        "a second needle-like ray": float(np.clip((1 - rival / peak) / 0.5, 0, 1)),
        "the tip points away from the needle's axis": float(np.clip((SPLIT_MAX - split) / (SPLIT_MAX / 2), 0, 1)),
    }
    worst = min(checks, key=lambda k: checks[k])
    confidence = checks[worst]
    sign = 1 if spec.direction == "clockwise" else -1
    value = (((angle - spec.zero_degrees) * sign) % 360) / 36
    value = 0.0 if value >= 9.995 else value
    a = math.radians(axis_deg)  # the needle's own line (through its centroid), whatever the box centre says
    off_centre = float(abs((c - xs.mean()) * -math.cos(a) - (c - ys.mean()) * math.sin(a)) / (SIZE / 2))
    return DialReading(round(value, 3), round(confidence, 3), round(angle, 2), worst if confidence < 1 else None,
                       round(off_centre, 3))


def read_dials(crops: list[np.ndarray], specs: list[DialSpec]) -> list[DialReading]:
    return [read_dial(c, s) for c, s in zip(crops, specs, strict=True)]
