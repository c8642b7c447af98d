"""Scheduled analysis: stored events (table ``events``) and each meter's state (table ``analysis_state``).

``analyse_meter(db, settings, meter_id, now=None, full=False) -> dict`` refreshes the meter's rollups, detects
events from the point the last pass could have changed (the earliest hour whose readings changed, the last
analysed reading less two hours, and the start of every event still open or ending after that) to the last
reading, and replaces the stored events from there, in one transaction. Detection depends only on the readings, so
re-running it — after a restart, a re-analysis or a full pass — stores the same rows (idempotent). An event whose
condition still holds at the last reading is stored open (``is_open``) and closed by the pass that sees it end.

The state returned and stored is the original system's dictionary ``{"blackout": bool, "superamento": bool}``
(an open blackout / an open power_high event, threshold ``analysis.power_threshold_w``, default 3 kW) plus
``camera_stale``, the last reading and the open events. When ``analysis.state_topic`` is set, each change of
``blackout`` or ``superamento`` (and a meter's first pass) queues the pair in the alert outbox (channel
``mqtt_state``: published retained to that topic by ``smartmeter alerts``). ``analyse_all`` does every meter;
``smartmeter analyse --every 5m`` and the worker (``worker.analyse_every_s``) call it on a schedule.

Kinds (see ``smartmeter.server.detectors`` for those found in raw readings): blackout, power_high, long_load,
fridge_stopped, gap, camera_stale (photos further apart than ``stale_camera_s``, or none since the last one until
now), and from the rollups: ``energy_day`` (a local day above ``energy_threshold_kwh_day``; open while the day
lasts), ``unusual`` (an hour above the median of the same local hour of week over the past ``baseline_weeks`` by
more than ``unusual_mad`` robust deviations and ``unusual_min_kwh``), ``baseload_shift`` (the week's median base
load differs from the four weeks before by more than ``baseload_shift_w``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from smartmeter.server import alerts_repo, rollups
from smartmeter.server import detectors as det
from smartmeter.server.analysis import daily, hourly, local_index
from smartmeter.server.database import Database, iso_ms, now_ms, to_ms
from smartmeter.server.detectors import Event, dur
from smartmeter.settings import AnalysisSettings, MeterSettings, Settings

log = logging.getLogger(__name__)

HOUR_MS = rollups.HOUR_MS
DAY_MS = 24 * HOUR_MS
MARGIN_MS = 2 * HOUR_MS
BASE_DAYS = 28  # the base load an hour is judged against: the median daily base load of the 4 weeks up to it


def _base_by_hour(days: pd.DataFrame, hr: pd.DataFrame, tz: str) -> pd.Series:
    if days.empty:
        return pd.Series(np.nan, index=hr.index)
    base = days["base_w"].rolling(BASE_DAYS, min_periods=1).median()
    day_of = local_index(hr.index, tz).tz_localize(None).normalize()
    return pd.Series(base.reindex(day_of).to_numpy(), index=hr.index).ffill()


def nanmedian_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median of each row ignoring NaN, and the count of values (median NaN where none); fast for many short rows."""
    cnt = np.sum(~np.isnan(x), axis=1)
    srt = np.sort(x, axis=1)  # NaN sort last
    lo = np.take_along_axis(srt, np.maximum((cnt - 1) // 2, 0)[:, None], axis=1)[:, 0]
    hi = np.take_along_axis(srt, np.maximum(cnt // 2, 0).clip(max=x.shape[1] - 1)[:, None], axis=1)[:, 0]
    med = np.where(cnt > 0, (lo + np.where(cnt % 2 == 1, lo, hi)) / 2, np.nan)
    return med, cnt


def _unusual(hr: pd.DataFrame, tz: str, cfg: AnalysisSettings, from_ms_: int) -> list[Event]:
    """Hours far above the same hour of the previous ``baseline_weeks`` weeks (168 h apart: across a DST change
    the baseline is an hour off for a week)."""
    kwh = hr["kwh"].where(hr["coverage"] >= 0.999).to_numpy()
    k, week = cfg.baseline_weeks, 168
    past = np.full((kwh.size, k), np.nan)
    for j in range(1, k + 1):
        past[j * week:, j - 1] = kwh[:-j * week] if kwh.size > j * week else past[j * week:, j - 1]
    med, cnt = nanmedian_rows(past)
    mad = nanmedian_rows(np.abs(past - med[:, None]))[0] * 1.4826
    with np.errstate(invalid="ignore"):
        flag = (cnt >= 3) & (kwh - med > np.maximum(cfg.unusual_mad * np.nan_to_num(mad), cfg.unusual_min_kwh))
    out: list[Event] = []
    starts = hr.index.to_numpy()
    d = np.diff(np.concatenate(([0], flag.astype(np.int8), [0])))
    for i, j in zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True):
        a, b = int(starts[i]), int(starts[j - 1]) + HOUR_MS
        if b < from_ms_:
            continue
        extra = float(np.nansum(kwh[i:j] - med[i:j]))
        out.append(Event("unusual", a, b, extra, f"{extra:.2f} kWh above the usual for these hours of the week "
                         f"over {dur(b - a)}"))
    return out


def _baseload_shifts(days: pd.DataFrame, tz: str, cfg: AnalysisSettings, from_ms_: int) -> list[Event]:
    base = days["base_w"]
    recent = base.rolling(7, min_periods=5).median()
    before = base.shift(7).rolling(28, min_periods=14).median()
    diff = (recent - before).to_numpy()
    flag = np.abs(np.nan_to_num(diff)) > cfg.baseload_shift_w
    out: list[Event] = []
    starts = _day_ms(days.index, tz)
    d = np.diff(np.concatenate(([0], flag.astype(np.int8), [0])))
    for i, j in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1), strict=True):
        a, b = int(starts[max(int(i) - 6, 0)]), int(starts[j - 1] + DAY_MS)
        if b < from_ms_:
            continue
        out.append(Event("baseload_shift", a, b, float(diff[i]), f"base load {before.iloc[i]:,.0f} W -> "
                         f"{recent.iloc[i]:,.0f} W (week's median vs the four weeks before)"))
    return out


def _day_ms(days: pd.DatetimeIndex, tz: str) -> np.ndarray:
    loc = days.tz_localize(tz, ambiguous=False, nonexistent="shift_forward")
    return np.asarray((loc - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1), np.int64)


def detect(db: Database, meter: MeterSettings, cfg: AnalysisSettings, from_ms_: int | None,
           now: int) -> tuple[list[Event], int | None]:
    """Events ending at or after ``from_ms_`` (None: all), and the meter's last reading (ms)."""
    lo = None if from_ms_ is None else from_ms_ - from_ms_ % HOUR_MS - (cfg.baseline_weeks * 7 + 1) * DAY_MS
    hours = rollups.load_hours(db, meter.id, lo)
    if hours.empty:
        return [], None
    last_ms = int(hours["last_ms"].iloc[-1])
    tz = meter.timezone
    hr = hourly(hours)
    days = daily(hr, tz)
    base = _base_by_hour(days, hr, tz)
    start = -(2**62) if from_ms_ is None else from_ms_
    h = det.Hours(hours)
    base_h = base.reindex(hours.index).to_numpy()
    found = det.sensor_events(h, meter, cfg, start) + det.camera_blackouts(h, meter, cfg, base_h)
    if int(hours["n_camera"].sum()):
        t, fine = det.fine_photos(db, meter, -(2**62) if from_ms_ is None else from_ms_ - det.FINE_LOOKBACK_MS)
        found += det.fine_blackouts(t, fine, meter, cfg, start)
        found = det.merge_blackouts(found)
    found += det.gap_events(h, cfg)
    found += det.fridge_stopped(h, start)
    found += det.long_loads(hr, base.to_numpy(), cfg, last_ms, start)
    found += det.register_power_high(db, meter, cfg, hr, h, start)
    cam = hours["last_cam_ms"].dropna()
    if len(cam) and now - int(cam.iloc[-1]) >= cfg.stale_camera_s * 1000:
        found.append(Event("camera_stale", int(cam.iloc[-1]), now, (now - int(cam.iloc[-1])) / 1000,
                           f"no photo for {dur(now - int(cam.iloc[-1]))} (until now)", True))
    day_ms = _day_ms(days.index, tz)
    over = np.flatnonzero(days["kwh"].to_numpy() > cfg.energy_threshold_kwh_day)
    for i in over.tolist():
        kwh, d0 = float(days["kwh"].iloc[i]), int(day_ms[i])
        d1 = int(d0 + days["length_h"].iloc[i] * HOUR_MS)
        found.append(Event("energy_day", d0, d1, kwh, f"{kwh:.1f} kWh in the day (threshold "
                           f"{cfg.energy_threshold_kwh_day:g} kWh)", last_ms < d1))
    found += _unusual(hr, tz, cfg, start)
    found += _baseload_shifts(days, tz, cfg, start)
    keep = {(e.kind, e.start_ms): e for e in sorted(found, key=lambda e: (e.start_ms, e.kind)) if e.end_ms >= start}
    return sorted(keep.values(), key=lambda e: (e.start_ms, e.kind)), last_ms


def _earliest_dirty(db: Database, meter_id: str) -> int | None:
    dirty = db.query("SELECT MIN(hour_ms) FROM rollup_dirty WHERE meter_id = ?", (meter_id,))[0][0]
    return None if dirty is None else int(dirty)


def _from(db: Database, meter_id: str, changed: int | None) -> int | None:
    """Where this pass must start so that every event it can change is re-detected whole (None: everything);
    ``changed``: the earliest hour whose readings changed since the last pass (its mark may be cleared by now)."""
    rows = db.query("SELECT state FROM analysis_state WHERE meter_id = ?", (meter_id,))
    last = json.loads(rows[0][0]).get("last_reading_ms") if rows else None
    if last is None:
        return None
    start = int(last) - MARGIN_MS
    for dirty in (changed, _earliest_dirty(db, meter_id)):
        if dirty is not None:
            start = min(start, dirty)
    for _ in range(4):  # events overlapping the start pull it back to their own start
        # (an open event ends at the last analysed reading or later, so end_ms >= start holds for every open one)
        (earliest,) = db.query("SELECT MIN(start_ms) FROM events WHERE meter_id = ? AND end_ms >= ?",
                               (meter_id, start))[0]
        if earliest is None or int(earliest) >= start:
            break
        start = int(earliest)
    return start


def analyse_meter(db: Database, settings: Settings, meter_id: str, now: datetime | None = None,
                  full: bool = False) -> dict[str, Any]:
    """One pass for one meter: refresh rollups, detect, replace stored events from the pass start, store the state."""
    meter = settings.meter(meter_id)
    now_ = now_ms() if now is None else to_ms(now)
    changed = _earliest_dirty(db, meter_id)  # before the refresh clears the marks
    (pending,) = db.query("SELECT COUNT(*) FROM rollup_dirty WHERE meter_id = ?", (meter_id,))[0]
    if int(pending) > rollups.CHUNK_HOURS:  # a long (first) build: in short transactions, before the pass's own
        rollups.refresh(db, meter_id, settings.analysis.power_threshold_w)
    with db.transaction():
        db.lock_meters((meter_id,))  # PostgreSQL: one pass per meter at a time (writers of other meters go on)
        start = None if full else _from(db, meter_id, changed)
        rollups.refresh(db, meter_id, settings.analysis.power_threshold_w)  # what changed since, under the lock
        found, last = detect(db, meter, settings.analysis, start, now_)
        if start is None:
            db.execute("DELETE FROM events WHERE meter_id = ?", (meter_id,))
        else:
            db.execute("DELETE FROM events WHERE meter_id = ? AND end_ms >= ?", (meter_id, start))
        db.executemany("INSERT INTO events (meter_id, kind, start_ms, end_ms, is_open, value, detail, updated_ms) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (meter_id, kind, start_ms) DO UPDATE SET "
                       "end_ms = excluded.end_ms, is_open = excluded.is_open, value = excluded.value, "
                       "detail = excluded.detail, updated_ms = excluded.updated_ms",
                       [(meter_id, e.kind, e.start_ms, e.end_ms, int(e.is_open), e.value, e.detail, now_)
                        for e in found])
        before = stored_state(db, meter_id)
        opened = [e for e in found if e.is_open]
        state = {"meter": meter_id, "blackout": any(e.kind == "blackout" for e in opened),
                 "superamento": any(e.kind == "power_high" for e in opened),
                 "camera_stale": any(e.kind == "camera_stale" for e in opened),
                 "analysed": iso_ms(now_), "last_reading": iso_ms(last), "last_reading_ms": last,
                 "open_events": [event_dict(e) for e in opened]}
        db.execute("INSERT INTO analysis_state (meter_id, analysed_ms, state, updated_ms) VALUES (?, ?, ?, ?) "
                   "ON CONFLICT (meter_id) DO UPDATE SET analysed_ms = excluded.analysed_ms, state = excluded.state, "
                   "updated_ms = excluded.updated_ms", (meter_id, now_, json.dumps(state), now_ms()))
        topic = settings.analysis.state_topic
        if topic and (before is None or any(before.get(k) != state[k] for k in ("blackout", "superamento"))):
            # in the pass's transaction: a change is never lost; the outbox keeps the order and retries
            flags = "".join("1" if state[k] else "0" for k in ("blackout", "superamento"))
            alerts_repo.enqueue(db, f"state/{meter_id}/{now_}/{flags}",
                                "mqtt_state", json.dumps({k: state[k] for k in ("meter", "blackout", "superamento")}),
                                now_ms())
    return state


def analyse_all(db: Database, settings: Settings, now: datetime | None = None,
                meter_ids: list[str] | None = None, full: bool = False) -> list[dict[str, Any]]:
    return [analyse_meter(db, settings, m, now, full) for m in (meter_ids or db.meters())]


def event_dict(e: Event) -> dict[str, Any]:
    d = asdict(e)
    d.update(start=iso_ms(e.start_ms), end=iso_ms(e.end_ms), value=round(e.value, 3))
    del d["start_ms"], d["end_ms"]
    return d


def stored_events(db: Database, meter_id: str, start_ms: int | None = None,
                  end_ms: int | None = None) -> list[Event]:
    """Stored events of a meter overlapping ``[start_ms, end_ms)``, in start order."""
    rows = db.query("SELECT kind, start_ms, end_ms, value, detail, is_open FROM events WHERE meter_id = ? AND "
                    "end_ms >= ? AND start_ms < ? ORDER BY start_ms, kind",
                    (meter_id, -(2**62) if start_ms is None else start_ms, 2**62 if end_ms is None else end_ms))
    return [Event(k, int(a), int(b), float(v), d, bool(o)) for k, a, b, v, d, o in rows]


def stored_state(db: Database, meter_id: str) -> dict[str, Any] | None:
    rows = db.query("SELECT state FROM analysis_state WHERE meter_id = ?", (meter_id,))
    return json.loads(rows[0][0]) if rows else None


class Scheduled:
    """The analysis inside a long-running loop (the worker): :meth:`maybe_run` analyses every meter when
    ``every_s`` has passed since the last run (0 = never). A failure is logged and retried at the next run."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self.next_at = 0.0

    def maybe_run(self, db: Database, settings: Settings) -> list[dict[str, Any]] | None:
        import time

        from smartmeter.errors import SmartMeterError

        now = time.monotonic()
        if self.every_s <= 0 or now < self.next_at:
            return None
        self.next_at = now + self.every_s
        try:
            states = analyse_all(db, settings)
        except SmartMeterError as exc:
            log.warning("scheduled analysis failed (retried in %.0f s): %s", self.every_s, exc)
            return None
        for s in states:
            if s["blackout"] or s["superamento"] or s["camera_stale"]:
                log.info("analysis %s: blackout %s, superamento %s, camera stale %s", s["meter"], s["blackout"],
                         s["superamento"], s["camera_stale"])
        return states
