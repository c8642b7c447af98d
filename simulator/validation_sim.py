"""Simulated frames for the cross-frame validator: a year of a household meter, read by an imperfect reader.

True register values come from a plausible load (base load, fridge, daily peaks, kettle, oven, washing machine,
a winter heat pump) integrated per minute. Every ``interval_s`` a frame is taken: drum positions as an odometer
shows them, read with small noise and assembled by ``smartmeter.ocr.assemble`` itself.
Then faults are injected at the given rates: a wrong digit (confident), a shifted decimal point,
a blurred frame (unreadable or low confidence), a weak digit (held), a duplicate delivery, an out-of-order
delivery. ``run_validation`` feeds them to :class:`MeterValidator` and counts what ended up stored.
Used by tests/test_validation.py (a month) and bench/worker.py (a year). Deterministic for a seed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from smartmeter.ocr.assemble import Coupling, assemble
from smartmeter.server.frames import Action, Frame, Rules
from smartmeter.server.validation import MeterValidator
from smartmeter.types import DigitValue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaultRates:
    """Probability per frame of each injected fault."""

    wrong_digit: float = 0.003
    shifted_decimal: float = 0.001
    blurred: float = 0.003
    weak_digit: float = 0.01
    duplicate: float = 0.005
    out_of_order: float = 0.01

    def scaled(self, k: float) -> FaultRates:
        return FaultRates(*(min(1.0, getattr(self, f) * k) for f in self.__dataclass_fields__))


@dataclass
class SimFrame:
    frame: Frame
    truth_kwh: float  # true register at capture time
    fault: str = ""


@dataclass
class SimStats:
    frames: int = 0  # distinct photos delivered
    deliveries: int = 0
    stored: int = 0  # readings stored at the end
    wrong_stored: int = 0  # stored readings more than one register step from the truth
    wrong_published_ever: int = 0  # wrong values that were published at some point (then corrected)
    corrections: int = 0
    rejected: int = 0
    pending_end: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    missed_by_fault: dict[str, int] = field(default_factory=dict)

    @property
    def yield_ratio(self) -> float:
        return self.stored / self.frames if self.frames else 0.0


def load_profile_w(minutes: int, rng: np.random.Generator) -> np.ndarray:
    """Household power per minute, W."""
    t = np.arange(minutes)
    hour = (t / 60.0) % 24
    day = t / 1440.0
    p = 120.0 + 100.0 * ((t // 20) % 3 == 0)  # base load, fridge cycling
    p += 700.0 * np.exp(-((hour - 7.5) ** 2) / 0.5) + 1100.0 * np.exp(-((hour - 19.5) ** 2) / 3.0)
    p += 600.0 * np.clip(np.cos(2 * np.pi * day / 365.0), 0, None) * (rng.random(minutes) < 0.4)  # winter
    for watts, length, per_day in ((2000.0, 3, 3.0), (2500.0, 40, 0.5), (2000.0, 25, 0.3), (7400.0, 120, 0.05)):
        starts = np.flatnonzero(rng.random(minutes) < per_day / 1440.0)
        for s in starts:
            p[s:s + length] += watts
    return np.asarray(p * rng.uniform(0.9, 1.1, minutes))


CREEPING_LAST_DRUM = Coupling(rightmost="continuous")


def drum_positions(value: float, n_digits: int, decimals: int) -> list[float]:
    """Odometer positions, most significant first: a drum rolls while its right neighbour goes 9 -> 0."""
    units = value * 10**decimals
    pos = [0.0] * n_digits
    pos[-1] = units % 10.0
    for i in range(n_digits - 2, -1, -1):
        place = 10 ** (n_digits - 1 - i)
        base = math.floor(units / place) % 10
        pos[i] = base + max(0.0, pos[i + 1] - 9.0)
    return pos


def read_positions(pos: list[float], decimals: int) -> tuple[str, float]:
    """Assemble the drums with the real assembler (``ocr.assemble``), so the simulation reads as the worker does;
    its profile says what the simulated counter does: the last drum creeps (``drum_positions``)."""
    result = assemble(pos, decimals=decimals, coupling=CREEPING_LAST_DRUM)
    if result.reading is None or result.value is None:
        raise ValueError(f"simulated drums {pos} do not assemble: {result.error}")
    return result.reading, result.value


def simulate_frames(days: float = 30.0, interval_s: float = 600.0, seed: int = 1, rates: FaultRates | None = None,
                    n_digits: int = 6, decimals: int = 1, start_kwh: float = 12345.0) -> list[SimFrame]:
    """Frames in delivery order (duplicates and late deliveries included)."""
    rates = rates or FaultRates()
    rng = np.random.default_rng(seed)
    minutes = int(days * 1440) + 2
    energy = start_kwh + np.concatenate([[0.0], np.cumsum(load_profile_w(minutes, rng)) / 60.0 / 1000.0])
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    n = int(days * 86400 / interval_s)
    out: list[SimFrame] = []
    for k in range(n):
        sec = k * interval_s + float(rng.integers(0, 4))
        m = sec / 60.0
        i = int(m)
        truth = float(energy[i] + (energy[i + 1] - energy[i]) * (m - i))
        ts = t0 + timedelta(seconds=sec)
        key = f"{ts:%Y%m%dT%H%M%SZ}_sim.jpg"
        pos = [(p + rng.normal(0, 0.03)) % 10.0 for p in drum_positions(truth, n_digits, decimals)]
        reading, value = read_positions(pos, decimals)
        confs = [float(c) for c in rng.uniform(0.88, 1.0, n_digits)]
        conf, fault = min(confs), ""
        u = rng.random()
        cum = np.cumsum([rates.wrong_digit, rates.shifted_decimal, rates.blurred, rates.weak_digit])
        if u < cum[0]:
            fault = "wrong_digit"
            j = int(rng.integers(0, n_digits))
            wrong = (int(pos[j]) + int(rng.integers(1, 10))) % 10
            pos[j] = wrong + 0.1
            chars = [c for c in reading if c != "."]
            chars[j] = str(wrong)
            text = "".join(chars)
            reading = text[: n_digits - decimals] + ("." + text[n_digits - decimals:] if decimals else "")
            value = float(reading)
        elif u < cum[1]:
            fault = "shifted_decimal"
            value = value * 10.0 if rng.random() < 0.5 else value / 10.0
            reading = f"{value:.{decimals}f}"
        elif u < cum[2]:
            fault = "blurred"
            if rng.random() < 0.5:
                reading, value, conf = None, None, 0.1  # type: ignore[assignment]
            else:
                conf = float(rng.uniform(0.2, 0.55))
            confs = [conf] * n_digits
        elif u < cum[3]:
            fault = "weak_digit"
            confs[int(rng.integers(0, n_digits))] = conf = float(rng.uniform(0.62, 0.78))
        digits = [DigitValue(p, c) for p, c in zip(pos, confs, strict=True)]
        frame = Frame(key, ts, value, conf, digits, "sim-1", decimals)
        out.append(SimFrame(frame, truth, fault))
    # delivery faults: duplicates, late deliveries
    delivered: list[SimFrame] = []
    late: list[tuple[int, SimFrame]] = []
    for k, sf in enumerate(out):
        while late and late[0][0] <= k:
            delivered.append(late.pop(0)[1])
        u = rng.random()
        if u < rates.out_of_order:
            late.append((k + int(rng.integers(1, 20)), sf))
            late.sort(key=lambda x: x[0])
            sf.fault = sf.fault or "out_of_order"
            continue
        delivered.append(sf)
        if u < rates.out_of_order + rates.duplicate:
            delivered.append(SimFrame(sf.frame, sf.truth_kwh, "duplicate"))
    delivered.extend(s for _, s in late)
    return delivered


def is_wrong(value: float, truth: float, resolution: float) -> bool:
    """More than one register step away from what the register showed."""
    shown = math.floor(truth / resolution + 1e-9) * resolution
    return abs(value - shown) > resolution * 1.001


def run_validation(frames: list[SimFrame], rules: Rules) -> tuple[SimStats, MeterValidator]:
    """Feed frames in delivery order; count what is stored at the end and what was ever published wrong."""
    v = MeterValidator("sim", rules)
    truth = {sf.frame.key: sf.truth_kwh for sf in frames}
    fault = {sf.frame.key: sf.fault for sf in frames if sf.fault != "duplicate"}
    stats = SimStats(frames=len(truth), deliveries=len(frames))
    for sf in frames:
        stats.faults[sf.fault or "none"] = stats.faults.get(sf.fault or "none", 0) + 1
        for d in v.feed(sf.frame):
            if d.action in (Action.PUBLISH, Action.CORRECT) and d.value is not None:
                stats.wrong_published_ever += is_wrong(d.value, truth[d.key], rules.resolution_kwh)
            stats.corrections += d.action in (Action.CORRECT, Action.WITHDRAW)
            stats.rejected += d.action is Action.REJECT
    anchors = v.anchors
    stats.stored = len(anchors)
    stats.wrong_stored = sum(is_wrong(a.value, truth[a.key], rules.resolution_kwh) for a in anchors)
    stats.pending_end = len(v.pending)
    stored = {a.key for a in anchors}
    for key, f in fault.items():
        if key not in stored:
            stats.missed_by_fault[f or "none"] = stats.missed_by_fault.get(f or "none", 0) + 1
    return stats, v
