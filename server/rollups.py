"""Stored hourly rollups of each meter's readings, maintained incrementally (table ``rollup_hour``, migration 004).

Every change to ``readings`` (insert, correction, withdrawal, re-processing, delete — from any module) marks its UTC
hour in ``rollup_dirty`` through a database trigger; :func:`refresh` recomputes exactly those hours from the current
readings (accepted | corrected, one per timestamp: the most confident) and clears the marks, in one transaction.
Each rollup column depends on its own hour's readings only, so an incremental refresh gives what a full
recomputation (:func:`compute_hours` over every reading) gives — ``tests/test_rollups.py`` checks it after
corrections, withdrawals and re-processing.

Columns per (meter, hour), stored packed (one float64 array per row in :data:`COLUMNS` order, so ten years load
in a tenth of a second): reading counts (all, from photos), first/last reading time and register, the highest
register, the longest gap between readings and between photos inside the hour and where it ends, sensor power
count/sum/min/max, runs of samples at or above the power threshold and below ``ZERO_W`` (migration 004 describes
them), and the register's rises and flat spans. What crosses an hour boundary (energy, gaps, runs) is joined from
neighbouring rows when read (``smartmeter.server.analysis``, ``smartmeter.server.detectors``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from smartmeter.server.storage import Database

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
ZERO_W = 1.0  # a sensor sample below this is "no power"
DEFAULT_HIGH_W = 3000.0  # the power threshold the high-power columns describe (analysis.power_threshold_w)
COLUMNS = ("n", "n_camera", "first_ms", "first_kwh", "last_ms", "last_kwh", "max_kwh", "max_gap_ms", "n_power",
           "sum_power_w", "min_power_w", "max_power_w", "n_zero", "first_cam_ms", "last_cam_ms", "max_cam_gap_ms",
           "n_rises", "lead_flat_ms", "tail_flat_ms", "max_flat_ms", "max_flat_end_ms", "max_gap_end_ms",
           "max_cam_gap_end_ms", "high_w", "n_high", "first_high_ms", "end_high_ms", "high_at_start",
           "first_zero_ms", "end_zero_ms", "zero_at_start", "zero_first_kwh", "zero_end_kwh")
RUN_COLUMNS = ("n", "first_ms", "end_ms", "at_start", "first_kwh", "end_kwh")
RAW_SQL = ("SELECT ts_ms, value_kwh, power_w, confidence, source FROM readings WHERE meter_id = ? AND status IN "
           "('accepted', 'corrected') AND ts_ms >= ? AND ts_ms < ?")


def raw_frame(rows: Sequence[tuple[Any, ...]]) -> pd.DataFrame:
    """(ts_ms, value_kwh, power_w, confidence, source) rows -> time-ordered frame, one row per timestamp (the most
    confident; on a tie the first source in name order), with a boolean ``camera`` column (source ``image:``)."""
    if not rows:
        return pd.DataFrame({"ts_ms": np.zeros(0, np.int64), "value_kwh": np.zeros(0), "power_w": np.zeros(0),
                             "confidence": np.zeros(0), "camera": np.zeros(0, bool)})
    ts, kwh, power, conf, source = zip(*rows, strict=True)
    df = pd.DataFrame({"ts_ms": np.fromiter(ts, np.int64, len(ts)), "value_kwh": np.asarray(kwh, np.float64),
                       "power_w": np.asarray([np.nan if p is None else p for p in power], np.float64),
                       "confidence": np.asarray(conf, np.float64),
                       "camera": np.fromiter((s.startswith("image:") for s in source), bool, len(source)),
                       "source": np.asarray(source, dtype=object)})
    df = df.sort_values(["ts_ms", "confidence", "source"], ascending=[True, False, True], kind="stable")
    df = df.drop_duplicates("ts_ms", keep="first").drop(columns="source")
    return df.reset_index(drop=True)


def load_raw(db: Database, meter_id: str, start_ms: int | None = None, end_ms: int | None = None) -> pd.DataFrame:
    """Current readings of one meter with ``start_ms <= ts < end_ms`` as a frame (see :func:`raw_frame`)."""
    lo = -(2**62) if start_ms is None else start_ms
    hi = 2**62 if end_ms is None else end_ms
    return raw_frame(db.query(RAW_SQL, (meter_id, lo, hi)))


def _gaps(ts: np.ndarray, hour: np.ndarray) -> np.ndarray:
    """Gap before each reading inside its hour (0 for the hour's first reading)."""
    gap = np.zeros(ts.shape[0], np.int64)
    if ts.shape[0] > 1:
        gap[1:] = np.where(hour[1:] == hour[:-1], np.diff(ts), 0)
    return gap


def compute_hours(raw: pd.DataFrame, high_w: float = DEFAULT_HIGH_W) -> pd.DataFrame:
    """Hourly rollups (index ``hour_ms``, columns :data:`COLUMNS`) of a frame from :func:`raw_frame`; ``high_w`` is
    the power threshold whose samples the ``*_high`` columns describe."""
    if raw.empty:
        return pd.DataFrame(columns=list(COLUMNS), index=pd.Index([], name="hour_ms", dtype=np.int64))
    ts = raw["ts_ms"].to_numpy()
    hour = ts - ts % HOUR_MS
    power = raw["power_w"].to_numpy()
    cam = raw["camera"].to_numpy()
    df = pd.DataFrame({"hour_ms": hour, "ts": ts, "kwh": raw["value_kwh"].to_numpy(), "power": power,
                       "zero": (power < ZERO_W), "cam": cam.astype(np.int64), "gap": _gaps(ts, hour),
                       "cam_ts": np.where(cam, ts.astype(np.float64), np.nan)})
    g = df.groupby("hour_ms", sort=True)
    out = pd.DataFrame({
        "n": g.size(), "n_camera": g["cam"].sum(), "first_ms": g["ts"].first(), "first_kwh": g["kwh"].first(),
        "last_ms": g["ts"].last(), "last_kwh": g["kwh"].last(), "max_kwh": g["kwh"].max(),
        "n_power": g["power"].count(), "sum_power_w": g["power"].sum(),
        "min_power_w": g["power"].min(), "max_power_w": g["power"].max(), "n_zero": g["zero"].sum(),
        "first_cam_ms": g["cam_ts"].min(), "last_cam_ms": g["cam_ts"].max()})
    out["max_gap_ms"], out["max_gap_end_ms"] = _longest(ts, hour, out.index)
    out["max_cam_gap_ms"], out["max_cam_gap_end_ms"] = _longest(ts[cam], hour[cam], out.index)
    out[["n_rises", "lead_flat_ms", "tail_flat_ms", "max_flat_ms", "max_flat_end_ms"]] = _flats(df, out)
    kwh = raw["value_kwh"].to_numpy()
    sensor = ~np.isnan(power)
    sts, shour, spow, skwh = ts[sensor], hour[sensor], power[sensor], kwh[sensor]
    out["high_w"] = float(high_w)
    for name, mask in (("high", spow >= high_w), ("zero", spow < ZERO_W)):
        runs = _run_summary(sts, shour, skwh, mask, out.index)
        out[f"first_{name}_ms"], out[f"end_{name}_ms"] = runs["first_ms"], runs["end_ms"]
        out[f"{name}_at_start"] = runs["at_start"]
        if name == "high":
            out["n_high"] = runs["n"]
        else:
            out["zero_first_kwh"], out["zero_end_kwh"] = runs["first_kwh"], runs["end_kwh"]
    out.index.name = "hour_ms"
    return out[list(COLUMNS)]


def _longest(ts: np.ndarray, hour: np.ndarray, index: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """Per hour: the longest gap between consecutive readings inside it, and the reading that ends it."""
    if not ts.size:
        return np.zeros(len(index), np.int64), np.full(len(index), np.nan)
    gap = _gaps(ts, hour)
    g = pd.DataFrame({"h": hour, "gap": gap, "ts": ts}).sort_values(["h", "gap", "ts"], kind="stable")
    top = g.groupby("h").last()  # the longest, the latest of equal ones
    longest = top["gap"].reindex(index, fill_value=0).to_numpy()
    end = top["ts"].where(top["gap"] > 0).reindex(index).to_numpy(np.float64)
    return longest, end


def _run_summary(ts: np.ndarray, hour: np.ndarray, kwh: np.ndarray, mask: np.ndarray,
                 index: pd.Index) -> pd.DataFrame:
    """Per hour, the samples where ``mask`` holds: count, first time, the first sample after the last one (NaN when
    the hour ends inside the condition), whether the hour starts inside it, the register at both ends."""
    out = pd.DataFrame({"n": 0, "first_ms": np.nan, "end_ms": np.nan, "at_start": 0, "first_kwh": np.nan,
                        "end_kwh": np.nan}, index=index)
    idx = np.flatnonzero(mask)
    if not idx.size:
        return out
    g = pd.Series(idx).groupby(hour[idx])
    first, last = g.min(), g.max()
    nxt = (last + 1).to_numpy()
    inside = nxt < ts.size
    inside[inside] &= hour[nxt[inside]] == last.index.to_numpy()[inside]
    safe = np.minimum(nxt, ts.size - 1)
    starts = np.searchsorted(hour, first.index.to_numpy())  # each hour's first sample
    out.loc[first.index, "n"] = g.size().to_numpy()
    out.loc[first.index, "first_ms"] = ts[first.to_numpy()]
    out.loc[first.index, "first_kwh"] = kwh[first.to_numpy()]
    out.loc[first.index, "end_ms"] = np.where(inside, ts[safe], np.nan)
    out.loc[first.index, "end_kwh"] = np.where(inside, kwh[safe], np.nan)
    out.loc[first.index, "at_start"] = mask[starts].astype(np.int64)
    return out


def _flats(df: pd.DataFrame, out: pd.DataFrame) -> np.ndarray:
    """Per hour: rises of the running maximum of the register, and the flat spans before, after and between them."""
    prev_max = df.groupby("hour_ms", sort=False)["kwh"].cummax().groupby(df["hour_ms"]).shift(1)
    rise = (df["kwh"] > prev_max + 1e-9).to_numpy()
    ts, hour = df["ts"].to_numpy(), df["hour_ms"].to_numpy()
    first = out["first_ms"].reindex(hour).to_numpy()
    rises = pd.DataFrame({"hour_ms": hour[rise], "ts": ts[rise]})
    rises["since"] = np.where(rises["hour_ms"] == rises["hour_ms"].shift(1), rises["ts"] - rises["ts"].shift(1),
                              rises["ts"] - first[rise])
    g = rises.groupby("hour_ms")
    n = g.size().reindex(out.index, fill_value=0).to_numpy()
    first_rise = g["ts"].min().reindex(out.index).to_numpy()
    last_rise = g["ts"].max().reindex(out.index).to_numpy()
    top = rises.sort_values(["hour_ms", "since", "ts"], kind="stable").groupby("hour_ms").last()
    inner = top["since"].reindex(out.index).to_numpy()
    inner_end = top["ts"].reindex(out.index).to_numpy()
    f, la = out["first_ms"].to_numpy(), out["last_ms"].to_numpy()
    lead = np.where(n > 0, first_rise - f, la - f)
    tail = np.where(n > 0, la - last_rise, la - f)
    inner = np.nan_to_num(inner, nan=0.0)
    longest = np.fmax(inner, np.fmax(lead, tail))
    # where the longest flat span ends: the rise closing it, or the hour's last reading for the tail
    end = np.where(longest == tail, la, np.where(longest == inner, np.nan_to_num(inner_end, nan=0.0), first_rise))
    return np.column_stack([n, lead, tail, longest, np.nan_to_num(end, nan=la)]).astype(np.int64)


def _runs(hours: np.ndarray) -> list[tuple[int, int]]:
    """Sorted hour starts -> [(first, last)] runs of consecutive hours."""
    if not hours.size:
        return []
    breaks = np.flatnonzero(np.diff(hours) != HOUR_MS)
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks, [hours.size - 1]))
    return [(int(hours[a]), int(hours[b])) for a, b in zip(starts, ends, strict=True)]


def _rows(meter_id: str, hours: pd.DataFrame) -> list[tuple[Any, ...]]:
    data = hours[list(COLUMNS)].to_numpy(np.float64).astype("<f8")
    return [(meter_id, int(h), int(n), data[i].tobytes())
            for i, (h, n) in enumerate(zip(hours.index.tolist(), hours["n"].tolist(), strict=True))]


INSERT_SQL = "INSERT INTO rollup_hour (meter_id, hour_ms, n, data) VALUES (?, ?, ?, ?)"


def _threshold(db: Database, meter_id: str | None, high_w: float) -> None:
    """Mark every hour of a meter whose rollups were computed with another power threshold."""
    meters = [meter_id] if meter_id is not None else [m for (m,) in db.query("SELECT DISTINCT meter_id FROM "
                                                                              "rollup_dirty")]
    for m in meters:
        had = db.query("SELECT high_w FROM rollup_meter WHERE meter_id = ?", (m,))
        if had and float(had[0][0]) == high_w:
            continue
        if had:
            db.execute("INSERT INTO rollup_dirty (meter_id, hour_ms) SELECT r.meter_id, r.hour_ms FROM rollup_hour r "
                       "WHERE r.meter_id = ? AND NOT EXISTS (SELECT 1 FROM rollup_dirty d WHERE d.meter_id = "
                       "r.meter_id AND d.hour_ms = r.hour_ms)", (m,))
        db.execute("INSERT INTO rollup_meter (meter_id, high_w) VALUES (?, ?) ON CONFLICT (meter_id) DO UPDATE SET "
                   "high_w = excluded.high_w", (m, high_w))


def refresh(db: Database, meter_id: str | None = None, high_w: float = DEFAULT_HIGH_W) -> int:
    """Recompute the hours marked dirty (of one meter, or all) with the power threshold ``high_w``; returns how
    many hours were recomputed. Hours computed with another threshold are recomputed too."""
    done = 0
    with db.transaction():
        _threshold(db, meter_id, high_w)
        sql, params = "SELECT meter_id, hour_ms FROM rollup_dirty", ()
        if meter_id is not None:
            sql, params = sql + " WHERE meter_id = ?", (meter_id,)  # type: ignore[assignment]
        dirty: dict[str, list[int]] = {}
        for m, h in db.query(sql, params):
            dirty.setdefault(str(m), []).append(int(h))
        for m, hours in dirty.items():
            for lo, hi in _runs(np.sort(np.asarray(hours, np.int64))):
                fresh = compute_hours(load_raw(db, m, lo, hi + HOUR_MS), high_w)
                db.execute("DELETE FROM rollup_hour WHERE meter_id = ? AND hour_ms >= ? AND hour_ms <= ?", (m, lo, hi))
                if len(fresh):
                    db.executemany(INSERT_SQL, _rows(m, fresh))
                db.execute("DELETE FROM rollup_dirty WHERE meter_id = ? AND hour_ms >= ? AND hour_ms <= ?",
                           (m, lo, hi))
                done += (hi - lo) // HOUR_MS + 1
    if done:
        log.debug("rollups: %d hours recomputed", done)
    return done


def load_hours(db: Database, meter_id: str, start_ms: int | None = None, end_ms: int | None = None) -> pd.DataFrame:
    """Stored rollups of one meter for the hours starting in ``[start_ms, end_ms)`` (refresh first for current
    figures); index ``hour_ms``, columns :data:`COLUMNS` (float64, NaN for none), time order."""
    lo = -(2**62) if start_ms is None else start_ms
    hi = 2**62 if end_ms is None else end_ms
    rows = db.query("SELECT hour_ms, data FROM rollup_hour WHERE meter_id = ? AND hour_ms >= ? AND hour_ms < ? "
                    "ORDER BY hour_ms", (meter_id, lo, hi))
    if not rows:
        return compute_hours(raw_frame([])).astype(np.float64)
    data = np.frombuffer(b"".join(bytes(r[1]) for r in rows), dtype="<f8").reshape(len(rows), len(COLUMNS))
    index = pd.Index(np.fromiter((r[0] for r in rows), np.int64, len(rows)), name="hour_ms")
    return pd.DataFrame(data.astype(np.float64), index=index, columns=list(COLUMNS))


def full_recompute(db: Database, meter_id: str, high_w: float = DEFAULT_HIGH_W) -> pd.DataFrame:
    """Rollups of every current reading of one meter computed from scratch (what :func:`refresh` must equal)."""
    return compute_hours(load_raw(db, meter_id), high_w)
