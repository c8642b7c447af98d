"""Power from register readings, honest about the register resolution and about gaps.

A register that counts in steps of ``resolution_kwh`` hides small consumption: 0.1 kWh at 150 W takes 40
minutes, so "the register did not move" does not mean "zero power". Power is therefore derived between register
STEPS — the first timestamps at which the register showed a new value — as ``P[W] = ΔkWh × 3.6e6 / Δt[s]``:

- ``step`` interval: between two step times; ``power_w`` is the mean power over it (exact up to one resolution);
- ``gap`` interval: a step interval containing a hole of more than ``gap_s`` without readings; ``power_w`` is
  still the mean over the whole interval (the energy is real), but it is marked, never read as a spike;
- ``flat`` interval: before the first or after the last step — no step observed, so only an upper bound
  ``upper_bound_w = resolution × 3.6e6 / Δt`` is known (``power_w`` is None).

Readings are cleaned first: one per timestamp (highest confidence) and a running maximum, so last-digit jitter
backwards (accepted by validation within tolerance) does not make false steps. Where a sensor reported power, the
interval also carries ``reported_w`` (mean of the reported samples inside it) beside the derived value.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from smartmeter.types import Reading

log = logging.getLogger(__name__)

Kind = Literal["step", "gap", "flat"]


@dataclass(frozen=True)
class PowerInterval:
    """Mean power over one interval between register steps (or a bound where there was no step)."""

    start: datetime
    end: datetime
    kind: Kind
    energy_kwh: float  # register change across the interval (0 for flat)
    power_w: float | None  # derived mean power; None for flat intervals
    upper_bound_w: float | None  # flat intervals: the most power that could hide below one register step
    reported_w: float | None  # mean sensor-reported power of the readings inside, if any
    readings: int  # readings inside [start, end)

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def clean_series(readings: Sequence[Reading]) -> list[Reading]:
    """Time-ordered, one reading per timestamp (highest confidence first)."""
    best: dict[datetime, Reading] = {}
    for r in readings:
        have = best.get(r.timestamp)
        if have is None or r.confidence > have.confidence:
            best[r.timestamp] = r
    return [best[t] for t in sorted(best)]


def step_points(series: Sequence[Reading], resolution_kwh: float) -> list[tuple[datetime, float]]:
    """(time, value) of the first reading and of every reading where the register (running max) stepped."""
    if not series:
        return []
    level = series[0].value_kwh
    points = [(series[0].timestamp, level)]
    for r in series[1:]:
        if r.value_kwh - level >= resolution_kwh / 2:
            level = r.value_kwh
            points.append((r.timestamp, level))
    return points


def _mean_reported(series: Sequence[Reading], lo: int, hi: int) -> float | None:
    vals = [r.power_w for r in series[lo:hi] if r.power_w is not None]
    return sum(vals) / len(vals) if vals else None


def _has_hole(times: Sequence[datetime], lo: int, hi: int, gap_s: float) -> bool:
    return any((times[i + 1] - times[i]).total_seconds() > gap_s for i in range(lo, hi))


def derive_power(readings: Sequence[Reading], resolution_kwh: float, gap_s: float) -> list[PowerInterval]:
    """Intervals covering the first to the last reading: flat lead-in, step/gap intervals, flat tail."""
    series = clean_series(readings)
    if len(series) < 2:
        return []
    times = [r.timestamp for r in series]
    points = step_points(series, resolution_kwh)
    out: list[PowerInterval] = []

    def flat(i0: int, i1: int) -> None:
        dt = (times[i1] - times[i0]).total_seconds()
        if dt > 0:
            out.append(PowerInterval(times[i0], times[i1], "flat", 0.0, None, resolution_kwh * 3.6e6 / dt,
                                     _mean_reported(series, i0, i1), i1 - i0))

    idx = [bisect.bisect_left(times, t) for t, _ in points]
    # points[0] is the first reading; a true step interval starts at the first *observed* step (points[1])
    if len(points) == 1:
        flat(0, len(series) - 1)
        return out
    flat(0, idx[1])
    for k in range(1, len(points) - 1):
        (t0, v0), (t1, v1) = points[k], points[k + 1]
        i0, i1 = idx[k], idx[k + 1]
        dt = (t1 - t0).total_seconds()
        kind: Kind = "gap" if _has_hole(times, i0, i1, gap_s) else "step"
        out.append(PowerInterval(t0, t1, kind, v1 - v0, (v1 - v0) * 3.6e6 / dt, None,
                                 _mean_reported(series, i0, i1), i1 - i0))
    if idx[-1] < len(series) - 1:
        flat(idx[-1], len(series) - 1)
    return out


def register_at(points: Sequence[tuple[datetime, float]], ts: datetime) -> float | None:
    """Best estimate of the register at ``ts``: linear between step points; None outside the observed span."""
    if not points or ts < points[0][0]:
        return None
    times = [t for t, _ in points]
    i = bisect.bisect_right(times, ts) - 1
    if i == len(points) - 1:
        return points[-1][1]  # after the last step: the register holds (less than one step hides)
    (t0, v0), (t1, v1) = points[i], points[i + 1]
    if i == 0:
        return v0  # before the first observed step we do not know when the energy came: hold
    return v0 + (v1 - v0) * (ts - t0).total_seconds() / (t1 - t0).total_seconds()


def sensor_samples(readings: Sequence[Reading], gap_s: float) -> list[tuple[datetime, datetime, float]]:
    """Sensor-reported power as (start, end, W) holds: each sample lasts until the next, at most ``gap_s``."""
    series = [r for r in clean_series(readings) if r.power_w is not None]
    out = []
    for a, b in zip(series, series[1:], strict=False):
        dt = (b.timestamp - a.timestamp).total_seconds()
        if 0 < dt <= gap_s:
            out.append((a.timestamp, b.timestamp, float(a.power_w)))  # type: ignore[arg-type]
    return out


def power_holds(readings: Sequence[Reading], resolution_kwh: float, gap_s: float,
                intervals: Sequence[PowerInterval] | None = None) -> tuple[list[tuple[datetime, datetime, float]], str]:
    """The best power series as (start, end, W) holds, and where it comes from (sensor | register | none).

    Sensor samples when the series has any (each holds until the next, at most ``gap_s``), else the derived mean
    power between register steps (``intervals`` from :func:`derive_power`, computed here when not given).
    """
    sensor = sensor_samples(readings, gap_s)
    if sensor:
        return sensor, "sensor"
    if intervals is None:
        intervals = derive_power(readings, resolution_kwh, gap_s)
    steps = [(i.start, i.end, i.power_w) for i in intervals if i.kind == "step" and i.power_w is not None]
    return steps, "register" if steps else "none"
