"""Event detectors on raw readings, run only inside the windows the hourly rollups point at.

``candidate_hours(hours, hr, base_w, meter, cfg)`` marks the UTC hours where an event may lie (from
``rollup_hour`` alone); ``windows(...)`` grows them by an hour on each side and joins them, so every event lies whole
inside one window; ``detect_raw(raw, ...)`` finds, in one window's readings (``rollups.raw_frame``):

- ``blackout`` (value: s): (a) sensor power below ``ZERO_W`` from the first zero sample to the first sample with
  power again, at least ``blackout_min_s``, while the register moved by less than one step; (b) camera meters (no
  sensor power): no register step for longer than ``blackout_steps`` times the step time at the base load (and at
  least ``blackout_min_s``) WHILE PHOTOS KEEP ARRIVING (no gap between photos of ``stale_camera_s`` inside): from the
  last step to the next one. A span without photos is ``camera_stale``, never a blackout.
- ``power_high`` (value: peak W): sensor samples at or above ``power_threshold_w`` (each holds until the next,
  at most ``gap_s``), else the mean power between register steps; adjacent ones merge. Like the original system's
  ``superamento``, there is no minimum duration.
- ``long_load`` (value: mean W above the base load): power at least ``long_load_w`` above the base load without a
  break for ``long_load_s`` — a heater left on.
- ``gap`` (value: s): readings further apart than ``gap_s``; ``camera_stale`` (value: s): photos further apart
  than ``stale_camera_s`` (the one up to "now" is added by ``smartmeter.server.events``).

An event whose condition still holds at the window's last reading, when that is the meter's last reading, is open.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from smartmeter.server.rollups import HOUR_MS, ZERO_W
from smartmeter.settings import AnalysisSettings, MeterSettings

log = logging.getLogger(__name__)

LONG_STEP_MS = 600_000  # long loads from register steps: mean power over at least 10 minutes


@dataclass(frozen=True)
class Event:
    kind: str  # blackout | power_high | long_load | gap | camera_stale | energy_day | unusual | baseload_shift
    start_ms: int
    end_ms: int
    value: float
    detail: str
    is_open: bool = False


def dur(ms: float) -> str:
    s = ms / 1000
    return f"{s / 3600:.1f} h" if s >= 5400 else f"{s / 60:.0f} min"


def step_limit_ms(meter: MeterSettings, cfg: AnalysisSettings, base_w: float | np.ndarray) -> np.ndarray:
    """How long the register may stay still at the base load before that means a blackout, ms."""
    base = np.maximum(np.asarray(base_w, np.float64), 1.0)
    steps = cfg.blackout_steps * meter.resolution_kwh * 3.6e9 / base
    return np.maximum(np.nan_to_num(steps, nan=np.inf), cfg.blackout_min_s * 1000)


def candidate_hours(hours: pd.DataFrame, hr: pd.DataFrame, base_w: pd.Series, meter: MeterSettings,
                    cfg: AnalysisSettings) -> np.ndarray:
    """Hour starts (ms) whose rollups say an event may lie there."""
    if hours.empty:
        return np.zeros(0, np.int64)
    h = hours
    prev_last = h["last_ms"].shift(1)
    cross_gap = (h["first_ms"] - prev_last).fillna(0)
    sensor = h["n_power"] > 0
    kwh = hr["kwh"].reindex(h.index)
    base = base_w.reindex(h.index)
    limit = step_limit_ms(meter, cfg, base.to_numpy())
    flat_cross = (h["tail_flat_ms"].shift(1).fillna(0) + cross_gap + h["lead_flat_ms"]).to_numpy()
    camera = (h["n_camera"] > 0) & ~sensor
    prev_cam = h["last_cam_ms"].ffill().shift(1)
    cam_cross = (h["first_cam_ms"] - prev_cam).fillna(0)
    power_w = hr["power_w"].reindex(h.index)
    cand = ((h["n_zero"] > 0)
            | (h["max_power_w"].fillna(0) >= cfg.power_threshold_w)
            | (~sensor & (kwh * 1000 >= cfg.power_threshold_w / 6))
            | (camera & ((h["n_rises"] == 0) | (h["max_flat_ms"] >= limit) | (flat_cross >= limit)))
            | (h["max_gap_ms"] > cfg.gap_s * 1000) | (cross_gap > cfg.gap_s * 1000)
            | (h["max_cam_gap_ms"] >= cfg.stale_camera_s * 1000) | (cam_cross >= cfg.stale_camera_s * 1000)
            | (power_w >= base.fillna(0) + cfg.long_load_w))
    idx = h.index.to_numpy()[cand.to_numpy()]
    # a gap that starts in one hour ends in the next stored one: both sides are candidates
    after = (cross_gap > cfg.gap_s * 1000) | (cam_cross >= cfg.stale_camera_s * 1000)
    before = h.index.to_numpy()[np.flatnonzero(after.to_numpy()) - 1].clip(min=h.index[0])
    return np.unique(np.concatenate([idx, before]))


def windows(cands: np.ndarray, pad_hours: int = 1) -> list[tuple[int, int]]:
    """Candidate hours -> disjoint [start, end) windows, each grown by ``pad_hours`` on both sides."""
    if not cands.size:
        return []
    lo, hi = cands - pad_hours * HOUR_MS, cands + (pad_hours + 1) * HOUR_MS
    out: list[tuple[int, int]] = []
    for a, b in zip(lo.tolist(), hi.tolist(), strict=True):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[(i, j)] index ranges (inclusive i, exclusive j) where ``mask`` is True."""
    if not mask.any():
        return []
    d = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


def _sensor_events(ts: np.ndarray, kwh: np.ndarray, pw: np.ndarray, meter: MeterSettings, cfg: AnalysisSettings,
                   base_w: float, last: bool) -> list[Event]:
    out: list[Event] = []
    n = ts.size
    nxt = np.append(ts[1:], ts[-1])  # each sample holds until the next one
    for i, j in _runs(pw < ZERO_W):
        end = int(ts[j]) if j < n else int(ts[-1])
        secs = (end - ts[i]) / 1000
        moved = (kwh[j] if j < n else kwh[-1]) - kwh[i]
        if secs >= cfg.blackout_min_s and moved < meter.resolution_kwh:
            out.append(Event("blackout", int(ts[i]), end, secs, f"sensor reported no power for {dur(end - ts[i])}",
                             last and j >= n))
    held = (nxt - ts) <= cfg.gap_s * 1000
    for kind, mask, level in (("power_high", pw >= cfg.power_threshold_w, cfg.power_threshold_w),
                              ("long_load", pw >= base_w + cfg.long_load_w, base_w + cfg.long_load_w)):
        for i, j in _runs(mask & (held | (np.arange(n) == n - 1))):
            end = int(nxt[j - 1]) if j < n else int(ts[-1])
            span = end - int(ts[i])
            if kind == "power_high" and span > 0:
                peak = float(pw[i:j].max())
                out.append(Event(kind, int(ts[i]), end, peak, f"peak {peak:,.0f} W at or above "
                                 f"{level:,.0f} W for {dur(span)}", last and j >= n))
            elif kind == "long_load" and span >= cfg.long_load_s * 1000:
                w = np.diff(np.append(ts[i:j], end)) / 1000
                mean = float((pw[i:j] * w).sum() / max(w.sum(), 1e-9) - base_w)
                out.append(Event(kind, int(ts[i]), end, mean, f"{mean:,.0f} W above the base load for {dur(span)}",
                                 last and j >= n))
    return out


def _thin(ts: np.ndarray, steps: np.ndarray, min_ms: int) -> np.ndarray:
    """Step indices at least ``min_ms`` apart (the first kept): power between them is not one step's quantisation."""
    kept = [int(steps[0])]
    for i in steps[1:].tolist():
        if ts[i] - ts[kept[-1]] >= min_ms:
            kept.append(int(i))
    return np.asarray(kept)


def _register_events(ts: np.ndarray, kwh: np.ndarray, cam: np.ndarray, meter: MeterSettings,
                     cfg: AnalysisSettings, base_w: float, last: bool) -> list[Event]:
    """Events from register steps alone (no sensor power)."""
    out: list[Event] = []
    level = np.maximum.accumulate(kwh)
    half = meter.resolution_kwh / 2
    # step points: the first reading, then each reading where the running max reached a new step
    steps = [0]
    for rise in (np.flatnonzero(np.diff(level) > 0) + 1).tolist():
        if level[rise] - level[steps[-1]] >= half:
            steps.append(rise)
    st = np.asarray(steps)
    limit = float(step_limit_ms(meter, cfg, base_w))
    cam_ts = ts[cam]
    bounds = [*zip(st[:-1].tolist(), st[1:].tolist(), strict=True), (int(st[-1]), ts.size - 1)]
    for k, (a, b) in enumerate(bounds):
        t0, t1 = int(ts[a]), int(ts[b])
        if t1 - t0 < limit:
            continue
        inside = cam_ts[(cam_ts >= t0) & (cam_ts <= t1)]
        if inside.size < 2 or np.diff(inside).max() >= cfg.stale_camera_s * 1000:
            continue  # no photos across it: the camera was stale, which says nothing about the supply
        open_ = last and k == len(bounds) - 1
        out.append(Event("blackout", t0, t1, (t1 - t0) / 1000, f"photos kept arriving but the register did not "
                         f"step for {dur(t1 - t0)} (at the base load ~{base_w:,.0f} W a step takes "
                         f"{dur(limit / cfg.blackout_steps)})", open_))
    if st.size >= 2:
        for kind, lev in (("power_high", cfg.power_threshold_w), ("long_load", base_w + cfg.long_load_w)):
            kept = st if kind == "power_high" else _thin(ts, st, LONG_STEP_MS)
            t, v = ts[kept], level[kept]
            pw = (np.diff(v) * 3.6e9) / np.maximum(np.diff(t), 1)
            for i, j in _runs(pw >= lev):
                span = int(t[j] - t[i])
                peak = float(pw[i:j].max())
                if kind == "power_high":
                    out.append(Event(kind, int(t[i]), int(t[j]), peak, f"peak {peak:,.0f} W (between register "
                                     f"steps) at or above {lev:,.0f} W for {dur(span)}"))
                elif span >= cfg.long_load_s * 1000:
                    mean = float(np.diff(v[i:j + 1]).sum() * 3.6e9 / span - base_w)
                    out.append(Event(kind, int(t[i]), int(t[j]), mean, f"{mean:,.0f} W above the base load for "
                                     f"{dur(span)}"))
    return out


def detect_raw(raw: pd.DataFrame, meter: MeterSettings, cfg: AnalysisSettings, base_w: float,
               last: bool) -> list[Event]:
    """Events inside one window's readings; ``last``: the window ends at the meter's last reading."""
    if len(raw) < 2:
        return []
    ts = raw["ts_ms"].to_numpy()
    kwh = raw["value_kwh"].to_numpy()
    pw = raw["power_w"].to_numpy()
    cam = raw["camera"].to_numpy()
    has = ~np.isnan(pw)
    out: list[Event] = []
    if has.any():
        out += _sensor_events(ts[has], kwh[has], pw[has], meter, cfg, base_w, last)
    if (~has).sum() >= 2:
        out += _register_events(ts[~has], kwh[~has], cam[~has], meter, cfg, base_w, last)
    gaps = np.diff(ts)
    for i in np.flatnonzero(gaps > cfg.gap_s * 1000).tolist():
        out.append(Event("gap", int(ts[i]), int(ts[i + 1]), gaps[i] / 1000, f"no readings for {dur(gaps[i])}"))
    cts = ts[cam]
    if cts.size >= 2:
        cg = np.diff(cts)
        for i in np.flatnonzero(cg >= cfg.stale_camera_s * 1000).tolist():
            out.append(Event("camera_stale", int(cts[i]), int(cts[i + 1]), cg[i] / 1000,
                             f"no photo for {dur(cg[i])}"))
    return out
