"""Synthetic rolling-drum crops made from a meter's own whole-digit crops (training only, no torch).

Most labelled crops show a drum at rest or nearly so, and each meter has few crops of any one half-rolled pair
(5.5 = the lower half of a 5 above the upper half of a 6). A careful reader interpolates those from the two
digits it knows; so do we: two crops of the *same* meter labelled exactly ``d.0`` and ``(d+1).0`` are stacked
(with a small band of drum between them, coloured like the crop's own top and bottom rows) and a window of the
crop height is cut at a random offset. The label follows from the geometry: offset / (height + gap) of a step.
Meters whose crops are never between digits (LCDs) are skipped: their digits do not roll.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from smartmeter.ocr.digit_data import DigitSet

log = logging.getLogger(__name__)

RollPools = dict[str, tuple[float, list[list[np.ndarray]]]]  # meter -> (pitch / crop height, digit -> crops)


def build_roll_pools(data: DigitSet, static_pitch: float = 0.0) -> RollPools:
    """Per rolling meter (one with fractional labels), its ``d.0`` crops resized to the meter's median size. With
    ``static_pitch`` > 0, meters whose digits never roll (LCDs) get a pool too, at that pitch (a share of the crop
    height): their digits rolled as if printed on drums, like the segment-style typefaces of some drum counters."""
    pools: RollPools = {}
    for meter in sorted(set(data.meters.tolist())):
        sel = np.flatnonzero(data.meters == meter)
        labels = data.labels[sel]
        frac = np.abs(labels - np.round(labels))
        rolls = bool((frac > 0.05).any())
        if not rolls and static_pitch <= 0:  # an LCD or a set of whole digits only: nothing rolls
            continue
        whole = sel[frac < 1e-6]
        if len(whole) == 0:
            continue
        h = int(np.median([data.crops[i].shape[0] for i in whole]))
        w = int(np.median([data.crops[i].shape[1] for i in whole]))
        by_digit: list[list[np.ndarray]] = [[] for _ in range(10)]
        for i in whole:
            by_digit[int(round(data.labels[i])) % 10].append(
                cv2.resize(data.crops[i], (w, h), interpolation=cv2.INTER_AREA))
        pairs = sum(1 for d in range(10) if by_digit[d] and by_digit[(d + 1) % 10])
        if pairs:
            pools[meter] = (calibrate_pitch(data, meter, by_digit) if rolls else static_pitch, by_digit)
            log.info("roll pool %s: %d whole-digit crops, %d of 10 digit pairs", meter, len(whole), pairs)
    return pools


def roll_crop(top: np.ndarray, bottom: np.ndarray, frac: float, pitch: int) -> np.ndarray:
    """The window showing ``top`` rolled ``frac`` of a step towards ``bottom`` (same shape), their centres
    ``pitch`` rows apart on the drum: a pitch below the crop height trims the rows each crop shows of its
    neighbours, a pitch above it puts a band of drum (coloured like the crops' edge rows) between them."""
    h = top.shape[0]
    if pitch <= h:
        m = (h - pitch) // 2
        strip = np.concatenate([top[:h - m], bottom[m + (h - pitch) % 2:]])
    else:
        edge = np.concatenate([top[-1:], bottom[:1]]).mean(axis=0, keepdims=True)
        strip = np.concatenate([top, np.repeat(edge, pitch - h, axis=0).astype(top.dtype), bottom])
    y0 = int(round(frac * pitch))
    return np.ascontiguousarray(strip[y0:y0 + h])


def calibrate_pitch(data: DigitSet, meter: str, by_digit: list[list[np.ndarray]], max_crops: int = 300) -> float:
    """The drum pitch of ``meter`` as a share of its crop height: the one whose synthetic rolls of the mean
    whole-digit images best match (normalised correlation) the meter's real half-rolled crops."""
    h, w = next(p for p in by_digit if p)[0].shape[:2]
    means = [np.mean([cv2.cvtColor(c, cv2.COLOR_BGR2GRAY) for c in p], axis=0).astype(np.float32) if p else None
             for p in by_digit]
    real: list[tuple[np.ndarray, int, float]] = []
    for i in np.flatnonzero(data.meters == meter):
        d, f = int(data.labels[i]) % 10, float(data.labels[i] % 1.0)
        if 0.2 <= f <= 0.8 and means[d] is not None and means[(d + 1) % 10] is not None:
            g = cv2.resize(cv2.cvtColor(data.crops[i], cv2.COLOR_BGR2GRAY), (w, h), interpolation=cv2.INTER_AREA)
            real.append((g.astype(np.float32), d, f))
        if len(real) >= max_crops:
            break
    if not real:
        return 1.0

    def ncc(a: np.ndarray, b: np.ndarray) -> float:
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).sum() / (np.sqrt((a * a).sum() * (b * b).sum()) + 1e-6))

    scores: dict[float, float] = {}
    for ratio in np.arange(0.6, 1.31, 0.02):
        pitch = max(2, int(round(ratio * h)))
        total = 0.0
        for g, d, f in real:
            top, bottom = means[d], means[(d + 1) % 10]
            assert top is not None and bottom is not None
            total += ncc(g, roll_crop(top, bottom, f, pitch))
        scores[float(ratio)] = total / len(real)
    best = max(scores, key=lambda r: scores[r])
    log.info("drum pitch %s: %.2f of the crop height (correlation %.3f on %d half-rolled crops)",
             meter, best, scores[best], len(real))
    return best


def synth_rolls(data: DigitSet, pools: RollPools, rng: np.random.Generator,
                share: float) -> tuple[list[np.ndarray], np.ndarray]:
    """A copy of the training crops where about ``share`` of those from rolling meters are replaced by synthetic
    half-rolled drums of the same meter (new labels). Crops of other meters are kept as they are."""
    crops = list(data.crops)
    labels = data.labels.copy()
    if share <= 0 or not pools:
        return crops, labels
    for i in np.flatnonzero(rng.random(len(crops)) < share):
        pool = pools.get(str(data.meters[i]))
        if pool is None:
            continue
        ratio, by_digit = pool
        digits = [d for d in range(10) if by_digit[d] and by_digit[(d + 1) % 10]]
        d = digits[int(rng.integers(0, len(digits)))]
        top = by_digit[d][int(rng.integers(0, len(by_digit[d])))]
        nxt = by_digit[(d + 1) % 10]
        bottom = nxt[int(rng.integers(0, len(nxt)))]
        pitch = max(2, int(round(ratio * rng.uniform(0.95, 1.05) * top.shape[0])))
        y0 = int(rng.integers(0, pitch))
        frac = y0 / pitch
        crops[i] = roll_crop(top, bottom, frac, pitch)
        labels[i] = (d + frac) % 10.0
    return crops, labels
