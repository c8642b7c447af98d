"""Anomalies and statistics of one meter's readings.

``analyse(readings, meter_settings, analysis_settings, now=None) -> Analysis`` returns events (kind, start, end,
value, detail) and statistics. Days are UTC days. Event kinds and their exact definitions:

- ``blackout`` (value: seconds), either
  (a) SENSOR: consecutive readings whose reported power is below ``ZERO_W`` spanning at least ``blackout_min_s``
      (from the first zero sample to the first sample with power again), while the register moved by less than
      one resolution step over that span (a zero sensor with a moving register is not a blackout); or
  (b) HOLE: no readings at all for at least ``blackout_min_s`` (the camera shares the mains) AND no register step
      across the hole AND the hole is long enough that the household's base load would certainly have made a step
      (``base_load_w × Δt ≥ resolution``). Without that last condition "no step" proves nothing (0.1 kWh at 150 W
      takes 40 min), so such a hole is reported as a ``gap`` instead. The base load is the power exceeded 90 % of
      the time (load-duration curve, zero samples excluded); with no estimate, holes are ``gap``s.
- ``gap`` (value: seconds): readings further apart than ``gap_s`` that are not a blackout.
- ``power_high`` (value: peak W): power above ``power_threshold_w``. From sensor samples when the series has any
  (each sample holds until the next), else from derived step/gap intervals (server.power); adjacent ones merge.
- ``energy_day`` (value: kWh): a UTC day whose energy exceeds ``energy_threshold_kwh_day``.
- ``long_load`` (value: mean W above the base load): power stays at least ``long_load_w`` above the base load,
  without a break, for at least ``long_load_s`` — a heater or an oven left on. From sensor samples when the
  series has any, else from derived step intervals; a gap breaks the run.
- ``stale_camera`` (value: seconds): no camera reading (source ``image:…``) for at least ``stale_camera_s``,
  between camera readings or from the last one until ``now``. Only for meters that have camera readings.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from smartmeter.server.power import (
    PowerInterval,
    clean_series,
    derive_power,
    power_holds,
    register_at,
    sensor_samples,
    step_points,
)
from smartmeter.settings import AnalysisSettings, MeterSettings
from smartmeter.types import Reading

log = logging.getLogger(__name__)

ZERO_W = 1.0  # a sensor sample below this is "no power"
DURATION_PERCENTS = (1, 5, 10, 25, 50, 75, 90, 99)


@dataclass(frozen=True)
class Event:
    kind: str  # blackout | gap | power_high | long_load | energy_day | stale_camera
    start: datetime
    end: datetime
    value: float
    detail: str


@dataclass(frozen=True)
class DayEnergy:
    day: date
    energy_kwh: float
    coverage: float  # fraction of the day between the first and last reading


@dataclass
class Statistics:
    readings: int = 0
    start: datetime | None = None
    end: datetime | None = None
    energy_kwh: float = 0.0
    mean_power_w: float | None = None
    peak_power_w: float | None = None  # highest derived mean power over a step interval (gaps excluded)
    peak_reported_w: float | None = None  # highest sensor-reported power
    base_load_w: float | None = None  # power exceeded 90 % of the time
    power_source: str = "none"  # where the load-duration curve comes from: sensor | register | none
    load_duration: list[tuple[int, float]] = field(default_factory=list)  # (% of time, W exceeded that long)
    days: list[DayEnergy] = field(default_factory=list)


@dataclass
class Analysis:
    meter_id: str
    stats: Statistics
    events: list[Event]
    intervals: list[PowerInterval]


def _dur(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def load_duration(holds: Sequence[tuple[float, float]]) -> list[tuple[int, float]]:
    """(seconds, W) holds -> power exceeded during p % of the time, for each p in DURATION_PERCENTS."""
    total = sum(s for s, _ in holds)
    if total <= 0:
        return []
    ranked = sorted(holds, key=lambda h: -h[1])
    out, acc, i = [], 0.0, 0
    for p in DURATION_PERCENTS:
        target = total * p / 100
        while i < len(ranked) - 1 and acc + ranked[i][0] < target:
            acc += ranked[i][0]
            i += 1
        out.append((p, ranked[i][1]))
    return out


def daily_energy(points: Sequence[tuple[datetime, float]], first: datetime, last: datetime) -> list[DayEnergy]:
    days, d = [], first.date()
    while d <= last.date():
        day_start = datetime(d.year, d.month, d.day, tzinfo=UTC)
        lo, hi = max(day_start, first), min(day_start + timedelta(days=1), last)
        a, b = register_at(points, lo), register_at(points, hi)
        if a is not None and b is not None and hi > lo:
            days.append(DayEnergy(d, max(b - a, 0.0), (hi - lo).total_seconds() / 86400))
        d += timedelta(days=1)
    return days


def _merge(events: list[Event], kind: str, unit: str) -> list[Event]:
    out: list[Event] = []
    for e in events:
        if out and out[-1].end >= e.start:
            p = out[-1]
            v = max(p.value, e.value)
            out[-1] = Event(kind, p.start, max(p.end, e.end), v, f"peak {v:,.0f} {unit}")
        else:
            out.append(e)
    return out


def _power_events(series: list[Reading], intervals: list[PowerInterval], cfg: AnalysisSettings,
                  sensor: list[tuple[datetime, datetime, float]]) -> list[Event]:
    thr = cfg.power_threshold_w
    raw: list[Event] = []
    if any(r.power_w is not None for r in series):
        raw = [Event("power_high", a, b, w, f"peak {w:,.0f} W") for a, b, w in sensor if w > thr]
    else:
        raw = [Event("power_high", i.start, i.end, i.power_w, f"peak {i.power_w:,.0f} W")
               for i in intervals if i.power_w is not None and i.power_w > thr]
    merged = _merge(raw, "power_high", "W")
    return [Event(e.kind, e.start, e.end, e.value, f"{e.detail} above {thr:,.0f} W for "
                  f"{_dur((e.end - e.start).total_seconds())}") for e in merged]


def _long_loads(holds: Sequence[tuple[datetime, datetime, float]], cfg: AnalysisSettings,
                base_w: float | None) -> list[Event]:
    """Runs of (start, end, W) holds staying ``long_load_w`` above the base load for ``long_load_s`` or more."""
    level = (base_w or 0.0) + cfg.long_load_w
    out: list[Event] = []
    run: list[tuple[datetime, datetime, float]] = []

    def close() -> None:
        if not run:
            return
        secs = (run[-1][1] - run[0][0]).total_seconds()
        if secs >= cfg.long_load_s:
            mean = sum((b - a).total_seconds() * w for a, b, w in run) / secs - (base_w or 0.0)
            out.append(Event("long_load", run[0][0], run[-1][1], mean,
                             f"{mean:,.0f} W above the base load for {_dur(secs)}"))
        run.clear()

    for a, b, w in holds:
        if w >= level and (not run or run[-1][1] == a):
            run.append((a, b, w))
        else:
            close()
            if w >= level:
                run.append((a, b, w))
    close()
    return out


def _blackouts_and_gaps(series: list[Reading], ms: MeterSettings, cfg: AnalysisSettings,
                        base_w: float | None) -> list[Event]:
    out: list[Event] = []
    run: list[Reading] = []
    for r in [*series, None]:  # (a) sensor zero runs
        if r is not None and r.power_w is not None and r.power_w < ZERO_W:
            run.append(r)
            continue
        if run:
            end = r.timestamp if r is not None else run[-1].timestamp
            secs = (end - run[0].timestamp).total_seconds()
            moved = (r.value_kwh if r is not None else run[-1].value_kwh) - run[0].value_kwh
            if secs >= cfg.blackout_min_s and moved < ms.resolution_kwh:
                out.append(Event("blackout", run[0].timestamp, end, secs,
                                 f"sensor reported no power for {_dur(secs)}"))
            run = []
    for a, b in zip(series, series[1:], strict=False):  # (b) holes
        secs = (b.timestamp - a.timestamp).total_seconds()
        stepped = b.value_kwh - a.value_kwh >= ms.resolution_kwh / 2
        certain = base_w is not None and base_w * secs / 3.6e6 >= ms.resolution_kwh
        if secs >= cfg.blackout_min_s and not stepped and certain:
            out.append(Event("blackout", a.timestamp, b.timestamp, secs,
                             f"no readings and no register step for {_dur(secs)}; at the base load "
                             f"~{base_w:,.0f} W a step would have shown"))
        elif secs > cfg.gap_s:
            why = "register stepped across it" if stepped else "too short to tell a blackout from no load"
            out.append(Event("gap", a.timestamp, b.timestamp, secs, f"no readings for {_dur(secs)} ({why})"))
    return out


def _stale_camera(readings: Sequence[Reading], cfg: AnalysisSettings, now: datetime | None) -> list[Event]:
    cam = sorted({r.timestamp for r in readings if r.source.startswith("image:")})
    if not cam:
        return []
    ends = list(zip(cam, cam[1:], strict=False)) + ([(cam[-1], now)] if now is not None else [])
    return [Event("stale_camera", a, b, (b - a).total_seconds(), f"no camera reading for "
                  f"{_dur((b - a).total_seconds())}")
            for a, b in ends if (b - a).total_seconds() >= cfg.stale_camera_s]


def analyse(readings: Sequence[Reading], meter: MeterSettings, cfg: AnalysisSettings,
            now: datetime | None = None) -> Analysis:
    """Events and statistics of one meter's readings (any order)."""
    series = clean_series(readings)
    stats = Statistics(readings=len(series))
    intervals = derive_power(series, meter.resolution_kwh, cfg.gap_s)
    sensor = sensor_samples(series, cfg.gap_s)
    events: list[Event] = []
    if series:
        stats.start, stats.end = series[0].timestamp, series[-1].timestamp
        points = step_points(series, meter.resolution_kwh)
        stats.energy_kwh = max(r.value_kwh for r in series) - series[0].value_kwh  # running max: no jitter
        span = (stats.end - stats.start).total_seconds()
        stats.mean_power_w = stats.energy_kwh * 3.6e6 / span if span > 0 else None
        derived = [i.power_w for i in intervals if i.kind == "step" and i.power_w is not None]
        stats.peak_power_w = max(derived, default=None)
        stats.peak_reported_w = max((r.power_w for r in series if r.power_w is not None), default=None)
        timed, stats.power_source = power_holds(series, meter.resolution_kwh, cfg.gap_s, intervals)
        holds = [((b - a).total_seconds(), w) for a, b, w in timed]
        stats.load_duration = load_duration(holds)
        positive = load_duration([h for h in holds if h[1] >= ZERO_W])
        stats.base_load_w = dict(positive).get(90)
        stats.days = daily_energy(points, stats.start, stats.end)
        events += _blackouts_and_gaps(series, meter, cfg, stats.base_load_w)
        events += _power_events(series, intervals, cfg, sensor)
        events += _long_loads(timed, cfg, stats.base_load_w)
        events += [Event("energy_day", datetime(d.day.year, d.day.month, d.day.day, tzinfo=UTC),
                         datetime(d.day.year, d.day.month, d.day.day, tzinfo=UTC) + timedelta(days=1),
                         d.energy_kwh, f"{d.energy_kwh:.1f} kWh on {d.day} (threshold "
                         f"{cfg.energy_threshold_kwh_day:g} kWh)")
                   for d in stats.days if d.energy_kwh > cfg.energy_threshold_kwh_day]
    events += _stale_camera(readings, cfg, now)
    events.sort(key=lambda e: (e.start, e.kind))
    return Analysis(meter.id, stats, events, intervals)
