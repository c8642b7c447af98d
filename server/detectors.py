"""Event detectors on the hourly rollups (``smartmeter.server.rollups``): no raw reading is read, except the few
hours of register-only meters heavy enough to hide a superamento.

- ``blackout`` (value: s): (a) sensor power below ``ZERO_W`` from the first zero sample to the first sample with
  power again, at least ``blackout_min_s``, while the register moved by less than one step between the first and
  the last zero sample; (b) camera meters (no
  sensor power): no register rise for longer than ``blackout_steps`` times the step time at the base load (and at
  least ``blackout_min_s``) WHILE PHOTOS KEEP ARRIVING (no gap of ``stale_camera_s`` between photos): from the last
  rise to the next. A span without photos is ``camera_stale``, never a blackout. (c) camera meters whose photos
  carry the last drum's fine position (``photos.fine_kwh``: the register plus the drum's fraction): the drum still
  (its running maximum moves by less than ``FINE_STILL`` of a step) over at least ``FINE_MIN_PHOTOS`` photos with
  no ``stale_camera_s`` gap, for at least ``blackout_min_s``, while the base load should have turned it by
  ``FINE_VISIBLE`` of a step or more (the base load: the drum's own, see :func:`fine_base`): from the first still
  photo to the first that moved. This sees a 45-minute
  outage at ~100 W on a 0.1 kWh register, which (b) cannot (no step is due for an hour). Photos whose drum did
  not match (fine = the register + half a step: the reader's mid-step estimate) are left out.
- ``power_high`` (value: peak W): sensor samples at or above ``power_threshold_w`` (no minimum duration, as the
  original system's ``superamento``), from the first such sample to the first sample below; runs in the same or
  adjacent hours join. Register-only meters: the mean power between register steps, from the raw readings of
  hours whose mean power is at least half the threshold.
- ``long_load`` (value: mean W above the base load): hourly mean power at least ``long_load_w`` above the base
  load for ``long_load_s`` or more (a heater left on); the edges are placed inside the first and last hour by their
  share of the extra energy.
- ``fridge_stopped`` (value: the usual swing, W): sensor meters whose power swings every hour (a fridge's
  compressor cycling: each hour's max - min sensor power, its daily minimum's median over the previous
  ``FRIDGE_DAYS`` days, at least ``FRIDGE_MIN_W``) showing ``FRIDGE_FLAT_HOURS`` or more consecutive hours that
  swing by less than half of it (no zero sample: a blackout is not that); flat runs up to ``FRIDGE_JOIN_H`` hours
  apart join. Only sensor meters: hourly register energy cannot show a cycle.
- ``gap`` (value: s): readings further apart than ``gap_s``; ``camera_stale`` (value: s): photos further apart than
  ``stale_camera_s``. Inside an hour only its longest gap is seen (the rollups keep one per hour).

An event whose condition still holds at the meter's last reading is open.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from smartmeter.server import photos_repo
from smartmeter.server.analysis import BASE_PERCENT
from smartmeter.server.database import Database
from smartmeter.server.rollups import HOUR_MS, load_raw
from smartmeter.settings import AnalysisSettings, MeterSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    # blackout | power_high | long_load | fridge_stopped | gap | camera_stale | energy_day | unusual | baseload_shift
    kind: str
    start_ms: int
    end_ms: int
    value: float
    detail: str
    is_open: bool = False


def dur(ms: float) -> str:
    s = ms / 1000
    return f"{s / 3600:.1f} h" if s >= 5400 else f"{s / 60:.0f} min"


def step_limit_ms(meter: MeterSettings, cfg: AnalysisSettings, base_w: float) -> float:
    """How long the register may stay still at the base load before that means a blackout, ms."""
    if not np.isfinite(base_w) or base_w <= 1.0:
        return float("inf")  # no base load known: a still register proves nothing
    return max(cfg.blackout_steps * meter.resolution_kwh * 3.6e9 / base_w, cfg.blackout_min_s * 1000)


class Hours:
    """The rollup columns as arrays, in stored (time) order, for the detectors' loops."""

    def __init__(self, hours: pd.DataFrame) -> None:
        self.size = len(hours)
        self.hour = hours.index.to_numpy()
        data = hours.to_numpy(np.float64)
        for k, c in enumerate(hours.columns):
            setattr(self, c, data[:, k])
        self.runmax = np.maximum.accumulate(self.max_kwh) if self.size else np.zeros(0)

    def __getattr__(self, name: str) -> np.ndarray:  # columns set in __init__ (for the type checker)
        raise AttributeError(name)


def runs(h: Hours, name: str, gap_ms: float) -> list[tuple[int, int, int, int, bool]]:
    """Runs of the sensor condition ``name`` (high | zero): (start ms, end ms, first hour i, last hour i, open)."""
    n_c = h.n_high if name == "high" else h.n_zero
    first, end, at_start = (getattr(h, f"first_{name}_ms"), getattr(h, f"end_{name}_ms"),
                            getattr(h, f"{name}_at_start"))
    out: list[tuple[int, int, int, int, bool]] = []
    cur: list[int] | None = None  # [start, first i, last i]

    def close(cur: list[int]) -> None:
        i = cur[2]
        if not np.isnan(end[i]):
            out.append((cur[0], int(end[i]), cur[1], i, False))
        elif i + 1 < h.size and h.first_ms[i + 1] - h.last_ms[i] <= gap_ms:
            out.append((cur[0], int(h.first_ms[i + 1]), cur[1], i, False))
        else:
            out.append((cur[0], int(h.last_ms[i]), cur[1], i, i == h.size - 1))

    for i in np.flatnonzero(n_c > 0).tolist():
        if (cur is not None and cur[2] == i - 1 and np.isnan(end[i - 1]) and at_start[i]
                and h.first_ms[i] - h.last_ms[i - 1] <= gap_ms):
            cur[2] = i
            continue
        if cur is not None:
            close(cur)
        cur = [int(first[i]), i, i]
    if cur is not None:
        close(cur)
    return out


def sensor_events(h: Hours, meter: MeterSettings, cfg: AnalysisSettings, start_ms: int = -(2**62)) -> list[Event]:
    """Blackouts and superamenti from the sensor-sample runs ending at or after ``start_ms``."""
    out: list[Event] = []
    gap_ms = cfg.gap_s * 1000
    for a, b, i, j, open_ in runs(h, "zero", gap_ms):
        if b < start_ms:
            continue
        moved = h.zero_last_kwh[j] - h.zero_first_kwh[i]  # between the first and the last zero sample
        if b - a >= cfg.blackout_min_s * 1000 and moved < meter.resolution_kwh:
            out.append(Event("blackout", a, b, (b - a) / 1000, f"sensor reported no power for {dur(b - a)}", open_))
    for a, b, i, j, open_ in runs(h, "high", gap_ms):
        if b < start_ms:
            continue
        peak = float(np.nanmax(h.max_power_w[i:j + 1]))
        out.append(Event("power_high", a, b, peak, f"peak {peak:,.0f} W at or above {cfg.power_threshold_w:,.0f} W "
                         f"for {dur(b - a)}", open_))
    return out


def camera_blackouts(h: Hours, meter: MeterSettings, cfg: AnalysisSettings, base: np.ndarray) -> list[Event]:
    """Still register while photos keep arriving, on hours with photos and no sensor power."""
    out: list[Event] = []
    cam = (h.n_camera > 0) & (h.n_power == 0)
    if not cam.any():
        return out
    stale = cfg.stale_camera_s * 1000
    prev_cam = pd.Series(h.last_cam_ms).ffill().shift(1).to_numpy()
    bad = ~cam | (h.max_cam_gap_ms >= stale) | (np.nan_to_num(h.first_cam_ms - prev_cam) >= stale)
    bad_sum = np.concatenate(([0], np.cumsum(bad)))

    def emit(a: float, b: float, i: int, j: int, open_: bool) -> None:
        limit = step_limit_ms(meter, cfg, float(base[i]))
        if b - a < limit or bad_sum[j + 1] - bad_sum[i + 1] > 0 or bad[i] and i == j:
            return
        out.append(Event("blackout", int(a), int(b), (b - a) / 1000, f"photos kept arriving but the register did "
                         f"not step for {dur(b - a)} (at the base load ~{base[i]:,.0f} W a step takes "
                         f"{dur(limit / cfg.blackout_steps)})", open_))

    start, si = h.first_ms[0], 0
    for i in range(h.size):
        if i and h.first_kwh[i] > h.runmax[i - 1] + 1e-9:  # a rise at the hour's first reading
            emit(start, h.first_ms[i], si, i, False)
            start, si = h.first_ms[i], i
        if h.n_rises[i] > 0:
            emit(start, h.first_ms[i] + h.lead_flat_ms[i], si, i, False)
            inner_end = h.max_flat_end_ms[i]
            if h.max_flat_ms[i] > max(h.lead_flat_ms[i], h.tail_flat_ms[i]):
                emit(inner_end - h.max_flat_ms[i], inner_end, i, i, False)
            start, si = h.last_ms[i] - h.tail_flat_ms[i], i
    emit(start, h.last_ms[-1], si, h.size - 1, True)
    return out


FINE_STILL = 0.05  # the drum's running maximum moving by less than this share of a step: still (reader jitter)
FINE_VISIBLE = 0.3  # ... while the base load should have turned it by at least this share of a step
FINE_MIN_PHOTOS = 5
FINE_STATUSES = ("published", "reviewed")  # photos whose reading is the stored one
FINE_BASE_H = 72  # hours of drum movement the base load is taken from
FINE_LOOKBACK_MS = 4 * 24 * HOUR_MS  # photos read before a pass's start (base hours + the longest still span)


def fine_photos(db: Database, meter: MeterSettings, start_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """(capture ms, fine kWh) of the meter's stored photos from ``start_ms``, time order, mid-step estimates out."""
    rows = photos_repo.fine_positions(db, meter.id, start_ms, FINE_STATUSES)
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0)
    a = np.asarray(rows, np.float64)
    keep = np.abs(a[:, 2] - a[:, 1] - meter.resolution_kwh / 2) > 1e-9 * max(1.0, abs(float(a[0, 1])))
    return a[keep, 0].astype(np.int64), a[keep, 2]


def fine_blackouts(t: np.ndarray, fine: np.ndarray, meter: MeterSettings, cfg: AnalysisSettings,
                   start_ms: int = -(2**62)) -> list[Event]:
    """Blackouts of camera meters from the last drum's fine position (see (c) above), ending at/after ``start_ms``."""
    n = t.size
    if n < FINE_MIN_PHOTOS:
        return []
    res, stale = meter.resolution_kwh, cfg.stale_camera_s * 1000
    g = np.maximum.accumulate(fine)  # last-digit jitter backwards is no movement
    e = np.searchsorted(g, g + FINE_STILL * res, "right") - 1  # the last photo still at photo i's position
    gaps = np.concatenate(([0], np.cumsum(np.diff(t) >= stale)))
    e = np.minimum(e, np.searchsorted(gaps, gaps, "right") - 1)  # a stale gap ends the still span
    span = t[e] - t
    b = fine_base(t, g)  # a 0.1 kWh register's hours are mostly 0 or 100 Wh: the drum tells the base load better
    due = b * span / 3.6e9  # kWh the base load should have turned the drum by
    ok = (e - np.arange(n) + 1 >= FINE_MIN_PHOTOS) & (span >= cfg.blackout_min_s * 1000) & (b > 1.0) & \
        (due >= FINE_VISIBLE * res)
    out: list[Event] = []
    cur: list[int] | None = None  # [first photo, last still photo]
    for i in np.flatnonzero(ok).tolist():
        if cur is not None and i <= cur[1]:
            cur[1] = max(cur[1], int(e[i]))
            continue
        if cur is not None:
            out.append(_fine_event(t, cur, b, res, n))
        cur = [i, int(e[i])]
    if cur is not None:
        out.append(_fine_event(t, cur, b, res, n))
    return [ev for ev in out if ev.end_ms >= start_ms]


def fine_base(t: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Per photo: the base load from the drum itself, W: the ``BASE_PERCENT`` percentile of the hourly mean powers
    of the ``FINE_BASE_H`` hours before the photo's hour (NaN with under 12 of them)."""
    h0 = int(t[0]) - int(t[0]) % HOUR_MS
    edges = np.arange(h0, int(t[-1]) + HOUR_MS, HOUR_MS, dtype=np.int64)
    power = np.diff(np.interp(edges.astype(np.float64), t.astype(np.float64), g)) * 3.6e9 / HOUR_MS
    q = pd.Series(power).rolling(FINE_BASE_H, min_periods=12).quantile(BASE_PERCENT / 100).shift(1).to_numpy()
    return np.nan_to_num(q[np.clip((t - h0) // HOUR_MS, 0, q.size - 1)], nan=0.0)


def _fine_event(t: np.ndarray, cur: list[int], b: np.ndarray, res: float, n: int) -> Event:
    i, j = cur
    open_ = j == n - 1
    end = int(t[j]) if open_ else int(t[j + 1])
    a = int(t[i])
    return Event("blackout", a, end, (end - a) / 1000, f"photos kept arriving but the last drum did not turn for "
                 f"{dur(end - a)} (at the base load ~{b[i]:,.0f} W it turns a step in {dur(res * 3.6e9 / b[i])})",
                 open_)


def merge_blackouts(evs: list[Event]) -> list[Event]:
    """Overlapping blackouts (register steps and the fine drum see the same outage) -> one, their union."""
    others = [e for e in evs if e.kind != "blackout"]
    out: list[Event] = []
    for e in sorted((e for e in evs if e.kind == "blackout"), key=lambda e: e.start_ms):
        if out and e.start_ms <= out[-1].end_ms:
            m = out[-1]
            end = max(m.end_ms, e.end_ms)
            keep = m if m.end_ms >= e.end_ms else e
            out[-1] = Event("blackout", m.start_ms, end, (end - m.start_ms) / 1000, keep.detail,
                            m.is_open or e.is_open)
        else:
            out.append(e)
    return others + out


FRIDGE_MIN_W = 40.0
FRIDGE_DAYS = 28
FRIDGE_FLAT_HOURS = 3
FRIDGE_JOIN_H = 6
FRIDGE_MIN_SAMPLES = 30  # sensor samples an hour needs to judge its swing


def fridge_stopped(h: Hours, start_ms: int = -(2**62)) -> list[Event]:
    """Hours where the usual hourly on/off swing of the base load is missing (see ``fridge_stopped`` above)."""
    if not h.size:
        return []
    sens = (h.n_power >= FRIDGE_MIN_SAMPLES) & (h.n_zero == 0)
    spread = np.where(sens, h.max_power_w - h.min_power_w, np.nan)
    day = h.hour // (24 * HOUR_MS)
    daily = pd.Series(spread).groupby(day).min()
    usual = daily.rolling(FRIDGE_DAYS, min_periods=1).median().shift(1)
    ref = usual.reindex(day).to_numpy()
    with np.errstate(invalid="ignore"):
        flat = sens & (ref >= FRIDGE_MIN_W) & (spread < ref / 2)
    d = np.diff(np.concatenate(([0], flat.astype(np.int8), [0])))
    found = [(i, j) for i, j in zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True)
             if h.hour[j - 1] - h.hour[i] >= (FRIDGE_FLAT_HOURS - 1) * HOUR_MS]
    joined: list[list[int]] = []
    for i, j in found:
        if joined and h.hour[i] - h.hour[joined[-1][1] - 1] <= (FRIDGE_JOIN_H + 1) * HOUR_MS:
            joined[-1][1] = j
        else:
            joined.append([i, j])
    out = []
    for i, j in joined:
        a, b = int(h.hour[i]), int(h.hour[j - 1]) + HOUR_MS
        if b < start_ms:
            continue
        w = float(ref[i])
        out.append(Event("fridge_stopped", a, b, w, f"the base load stopped cycling for {dur(b - a)} (it usually "
                         f"swings by {w:,.0f} W every hour): a fridge or freezer off?", j == h.size))
    return out


def gap_events(h: Hours, cfg: AnalysisSettings) -> list[Event]:
    out: list[Event] = []
    for kind, lim, longest, end, first, last, what in (
            ("gap", cfg.gap_s * 1000, h.max_gap_ms, h.max_gap_end_ms, h.first_ms, h.last_ms, "readings"),
            ("camera_stale", cfg.stale_camera_s * 1000 - 1, h.max_cam_gap_ms, h.max_cam_gap_end_ms, h.first_cam_ms,
             h.last_cam_ms, "photo")):
        prev = pd.Series(last).ffill().shift(1).to_numpy()
        cross = first - prev
        for i in np.flatnonzero(np.nan_to_num(cross) > lim).tolist():
            out.append(Event(kind, int(prev[i]), int(first[i]), cross[i] / 1000, f"no {what} for {dur(cross[i])}"))
        for i in np.flatnonzero(longest > lim).tolist():
            out.append(Event(kind, int(end[i] - longest[i]), int(end[i]), longest[i] / 1000,
                             f"no {what} for {dur(longest[i])}"))
    return out


def long_loads(hr: pd.DataFrame, base: np.ndarray, cfg: AnalysisSettings, last_ms: int,
               start_ms: int = -(2**62)) -> list[Event]:
    """Runs of hours whose mean power stays ``long_load_w`` above the base load (those ending after ``start_ms``)."""
    p = hr["power_w"].to_numpy()
    level = np.nan_to_num(base) + cfg.long_load_w
    on = np.nan_to_num(p - level, nan=-1.0) >= 0
    d = np.diff(np.concatenate(([0], on.astype(np.int8), [0])))
    out: list[Event] = []
    t = hr.index.to_numpy()
    for i, j in zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True):
        if t[j - 1] + 2 * HOUR_MS < start_ms or (j - i + 2) * HOUR_MS < cfg.long_load_s * 1000:
            continue
        extra = float(np.mean(p[i:j] - np.nan_to_num(base[i:j])))
        before = 0.0 if i == 0 else float(np.clip((p[i - 1] - base[i - 1]) / extra, 0, 1))
        after = 0.0 if j >= len(p) else float(np.clip((p[j] - base[j]) / extra, 0, 1))
        a, b = int(t[i] - before * HOUR_MS), int(t[j - 1] + HOUR_MS + after * HOUR_MS)
        b = min(b, last_ms)
        if b - a >= cfg.long_load_s * 1000:
            out.append(Event("long_load", a, b, extra, f"{extra:,.0f} W above the base load for {dur(b - a)}",
                             j >= len(p)))
    return out


def register_power_high(db: Database, meter: MeterSettings, cfg: AnalysisSettings, hr: pd.DataFrame,
                        h: Hours, start_ms: int) -> list[Event]:
    """Register-only hours heavy enough to hide a superamento: the mean power between register steps."""
    heavy = (h.n_power == 0) & (np.nan_to_num(hr["power_w"].reindex(h.hour).to_numpy()) >= cfg.power_threshold_w / 2)
    out: list[Event] = []
    for i in np.flatnonzero(heavy & (h.hour >= start_ms - HOUR_MS)).tolist():
        raw = load_raw(db, meter.id, int(h.hour[i]) - HOUR_MS, int(h.hour[i]) + 2 * HOUR_MS)
        ts, kwh = raw["ts_ms"].to_numpy(), np.maximum.accumulate(raw["value_kwh"].to_numpy())
        steps = [0]
        for k in range(1, ts.size):
            if kwh[k] - kwh[steps[-1]] >= meter.resolution_kwh / 2:
                steps.append(k)
        if len(steps) < 2:
            continue
        st = np.asarray(steps)
        pw = np.diff(kwh[st]) * 3.6e9 / np.maximum(np.diff(ts[st]), 1)
        for k in np.flatnonzero(pw >= cfg.power_threshold_w).tolist():
            a, b = int(ts[st[k]]), int(ts[st[k + 1]])
            if h.hour[i] <= a < h.hour[i] + HOUR_MS:
                out.append(Event("power_high", a, b, float(pw[k]), f"{pw[k]:,.0f} W between register steps, at or "
                                 f"above {cfg.power_threshold_w:,.0f} W for {dur(b - a)}"))
    merged: list[Event] = []
    for e in sorted(out, key=lambda e: e.start_ms):
        if merged and merged[-1].end_ms >= e.start_ms:
            m = merged[-1]
            peak = max(m.value, e.value)
            merged[-1] = Event(m.kind, m.start_ms, max(m.end_ms, e.end_ms), peak, f"{peak:,.0f} W between register "
                               f"steps, at or above {cfg.power_threshold_w:,.0f} W for "
                               f"{dur(max(m.end_ms, e.end_ms) - m.start_ms)}")
        else:
            merged.append(e)
    return merged
