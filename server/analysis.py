"""Statistics of one meter from its stored hourly rollups (``smartmeter.server.rollups``), in the meter's local time.

``hourly(hours, resolution_kwh)`` turns the rollup rows into one row per UTC hour from the first to the last
reading: energy (kWh), mean power (W, from the register), sensor mean power, whether readings were seen, and the
share of the hour inside the observed span. The register at each hour boundary is interpolated between the
readings on either side (running maximum: last-digit jitter backwards makes no energy), so the hours of a day add
up to that day's register difference and energy across a gap is spread over it (marked: ``seen`` is False).

``statistics(db, meter, start, end)`` gives, in ``meter.timezone`` (DST days have 23 or 25 hours): energy per
local hour, day, ISO week, month and year; the weekday and weekend profile (mean W by local hour); the base load
(median over days of each day's 10th-percentile hourly mean power); the peak (sensor maximum, and the highest hourly
mean); the day/night split (night: local ``NIGHT_HOURS``); and the same figures' totals for the previous period of
equal length. Hours are attributed to the local day their start falls in (zones with a half-hour offset put a
half hour in the neighbouring day).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from smartmeter.server import rollups
from smartmeter.server.database import Database, to_ms
from smartmeter.settings import MeterSettings

log = logging.getLogger(__name__)

HOUR_MS = rollups.HOUR_MS
NIGHT_HOURS = (23, 7)  # local night: from 23:00 to 07:00
BASE_PERCENT = 10  # a day's base load: this percentile of its hourly mean powers
DURATION_PERCENTS = (1, 5, 10, 25, 50, 75, 90, 99)


def hourly(hours: pd.DataFrame) -> pd.DataFrame:
    """One row per UTC hour spanned by the rollups: kwh, power_w (register), sensor_w, seen, coverage."""
    if hours.empty:
        return pd.DataFrame({c: np.zeros(0) for c in ("kwh", "power_w", "sensor_w", "seen", "coverage")},
                            index=pd.Index([], name="hour_ms", dtype=np.int64))
    t = np.column_stack([hours["first_ms"].to_numpy(), hours["last_ms"].to_numpy()]).ravel().astype(np.float64)
    v = np.maximum.accumulate(np.column_stack([hours["first_kwh"].to_numpy(), hours["last_kwh"].to_numpy()]).ravel())
    t_first, t_last = t[0], t[-1]
    h0 = int(hours.index[0])
    grid = np.arange(h0, int(hours.index[-1]) + 2 * HOUR_MS, HOUR_MS, dtype=np.int64)
    b = np.clip(grid.astype(np.float64), t_first, t_last)
    reg = np.interp(b, t, v)
    kwh = np.diff(reg)
    coverage = np.diff(b) / HOUR_MS
    idx = pd.Index(grid[:-1], name="hour_ms")
    out = pd.DataFrame({"kwh": kwh, "coverage": coverage}, index=idx)
    out["power_w"] = np.where(coverage > 0, kwh * 3.6e6 / np.maximum(coverage * HOUR_MS / 1000, 1e-9), np.nan)
    sensor = hours["sum_power_w"] / hours["n_power"].where(hours["n_power"] > 0)
    out["sensor_w"] = sensor.reindex(idx)
    out["seen"] = pd.Series(True, index=hours.index).reindex(idx, fill_value=False)
    return out


def local_index(hour_ms: pd.Index, timezone: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(np.asarray(hour_ms, np.int64), unit="ms", utc=True)).tz_convert(timezone)


def daily(hr: pd.DataFrame, timezone: str) -> pd.DataFrame:
    """Local days: kwh, hours (in the span), coverage (share of the day's hours inside the span), base_w, peak_w."""
    if hr.empty:
        return pd.DataFrame({c: np.zeros(0) for c in ("kwh", "hours", "coverage", "base_w", "peak_w")})
    loc = local_index(hr.index, timezone)
    day = loc.tz_localize(None).normalize()
    full = hr["coverage"].to_numpy() >= 0.999
    g = hr.assign(day=day, full_w=np.where(full, hr["power_w"], np.nan)).groupby("day")
    out = pd.DataFrame({"kwh": g["kwh"].sum(), "hours": g["coverage"].sum(),
                        "base_w": g["full_w"].quantile(BASE_PERCENT / 100), "peak_w": g["full_w"].max()})
    # the day's length in hours (23 or 25 on DST days): local midnight to the next local midnight
    starts = out.index.tz_localize(timezone, ambiguous=False, nonexistent="shift_forward")
    ends = (out.index + pd.Timedelta(days=1)).tz_localize(timezone, ambiguous=False, nonexistent="shift_forward")
    out["length_h"] = (ends - starts).total_seconds() / 3600
    out["coverage"] = out["hours"] / out["length_h"]
    return out


def load_duration(power_w: np.ndarray) -> list[tuple[int, float]]:
    """Hourly mean powers -> the power exceeded during p % of the hours, for each p in DURATION_PERCENTS."""
    w = np.sort(power_w[np.isfinite(power_w)])[::-1]
    if not w.size:
        return []
    return [(p, float(w[min(w.size - 1, int(np.ceil(w.size * p / 100)) - 1)])) for p in DURATION_PERCENTS]


@dataclass
class Statistics:
    meter_id: str
    timezone: str
    readings: int = 0
    start: datetime | None = None  # first reading in the period
    end: datetime | None = None  # last reading in the period
    energy_kwh: float = 0.0
    mean_power_w: float | None = None
    base_load_w: float | None = None
    peak_sensor_w: float | None = None
    peak_hour_w: float | None = None
    night_kwh: float = 0.0
    day_kwh: float = 0.0
    hours_seen: int = 0
    hours_spanned: int = 0
    photos: int = 0  # readings from photos
    hours_with_photos: int = 0
    hours: pd.DataFrame = field(default_factory=pd.DataFrame)  # hourly() rows of the period
    days: pd.DataFrame = field(default_factory=pd.DataFrame)  # daily() rows
    weeks: pd.Series = field(default_factory=pd.Series)  # kWh per ISO week (label: its Monday)
    months: pd.Series = field(default_factory=pd.Series)
    years: pd.Series = field(default_factory=pd.Series)
    profile: dict[str, list[float | None]] = field(default_factory=dict)  # weekday|weekend -> mean W per hour
    load_duration: list[tuple[int, float]] = field(default_factory=list)
    previous: dict[str, Any] = field(default_factory=dict)  # the previous period of equal length


def _clip(hours: pd.DataFrame, start_ms: int | None, end_ms: int | None) -> pd.DataFrame:
    keep = np.ones(len(hours), bool)
    if start_ms is not None:
        keep &= hours.index.to_numpy() >= start_ms
    if end_ms is not None:
        keep &= hours.index.to_numpy() < end_ms
    return hours[keep]


def _profile(hr: pd.DataFrame, timezone: str) -> dict[str, list[float | None]]:
    full = hr[hr["coverage"] >= 0.999]
    loc = local_index(full.index, timezone)
    weekend = np.asarray(loc.day_of_week >= 5)
    out = {}
    for name, mask in (("weekday", ~weekend), ("weekend", weekend)):
        means = full["power_w"][mask].groupby(np.asarray(loc.hour)[mask]).mean().reindex(range(24))
        out[name] = [None if np.isnan(x) else round(float(x), 1) for x in means]
    return out


def statistics(db: Database, meter: MeterSettings, start: datetime | None = None, end: datetime | None = None,
               refresh: bool = True, high_w: float = rollups.DEFAULT_HIGH_W) -> Statistics:
    """Statistics of ``meter`` over ``[start, end)`` (UTC instants; open = all) from its rollups (refreshed first
    with the power threshold ``high_w`` unless ``refresh`` is False)."""
    if refresh:
        rollups.refresh(db, meter.id, high_w)
    tz = meter.timezone
    start_ms = None if start is None else to_ms(start)
    end_ms = None if end is None else to_ms(end)
    lo = None if start_ms is None else start_ms - start_ms % HOUR_MS
    hours = rollups.load_hours(db, meter.id, lo, end_ms)
    st = summarise(meter.id, tz, _clip(hourly(hours), lo, end_ms), hours)
    if start_ms is not None and end_ms is not None:
        first = start_ms - start_ms % HOUR_MS
        prev = rollups.load_hours(db, meter.id, first - (end_ms - start_ms), first)
        p = summarise(meter.id, tz, hourly(prev), prev)
        st.previous = {"start": p.start, "end": p.end, "energy_kwh": p.energy_kwh, "base_load_w": p.base_load_w,
                       "night_kwh": p.night_kwh, "day_kwh": p.day_kwh, "peak_sensor_w": p.peak_sensor_w}
    return st


def summarise(meter_id: str, tz: str, hr: pd.DataFrame, hours: pd.DataFrame) -> Statistics:
    st = Statistics(meter_id, tz, hours=hr)
    if hours.empty or hr.empty:
        return st
    st.start = pd.Timestamp(int(hours["first_ms"].iloc[0]), unit="ms", tz="UTC").to_pydatetime()
    st.end = pd.Timestamp(int(hours["last_ms"].iloc[-1]), unit="ms", tz="UTC").to_pydatetime()
    st.readings = int(hours["n"].sum())
    st.energy_kwh = float(hr["kwh"].sum())
    span_s = (st.end - st.start).total_seconds()
    st.mean_power_w = st.energy_kwh * 3.6e6 / span_s if span_s > 0 else None
    st.days = daily(hr, tz)
    base = st.days["base_w"].dropna()
    st.base_load_w = float(base.median()) if len(base) else None
    peak = hours["max_power_w"].max()
    st.peak_sensor_w = None if pd.isna(peak) else float(peak)
    full = hr["power_w"][hr["coverage"] >= 0.999]
    st.peak_hour_w = float(full.max()) if len(full) else None
    loc = local_index(hr.index, tz)
    night = np.asarray((loc.hour >= NIGHT_HOURS[0]) | (loc.hour < NIGHT_HOURS[1]))
    st.night_kwh = float(hr["kwh"][night].sum())
    st.day_kwh = st.energy_kwh - st.night_kwh
    st.hours_seen = int(hr["seen"].sum())
    st.hours_spanned = int(len(hr))
    st.photos = int(hours["n_camera"].sum())
    st.hours_with_photos = int((hours["n_camera"] > 0).sum())
    d = st.days["kwh"]
    st.weeks = d.groupby(d.index - pd.to_timedelta(d.index.day_of_week, unit="D")).sum()
    st.months = d.groupby(d.index.to_period("M")).sum()
    st.years = d.groupby(d.index.year).sum()
    st.profile = _profile(hr, tz)
    st.load_duration = load_duration(full.to_numpy())
    return st
