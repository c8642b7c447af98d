"""Stored hourly rollups of each meter's readings, maintained incrementally (table ``rollup_hour``, migration 004).

Every change to ``readings`` (insert, correction, withdrawal, re-processing, delete — from any module) marks its UTC
hour in ``rollup_dirty`` through a database trigger; :func:`refresh` recomputes exactly those hours from the current
readings (accepted | corrected, one per timestamp: the most confident) and clears the marks, in one transaction.
Each rollup column depends on its own hour's readings only, so an incremental refresh gives what a full
recomputation (:func:`compute_hours` over every reading) gives — ``tests/test_rollups.py`` checks it after
corrections, withdrawals and re-processing.

Columns per (meter, hour): reading counts (all, from photos), first/last reading time and register, the highest
register, the longest gap between readings inside the hour, sensor power count/sum/min/max and zero samples
(< ``ZERO_W``), first/last photo time and the longest gap between photos inside the hour. What crosses an hour
boundary (energy, gaps) is derived from neighbouring rows when read (``smartmeter.server.analysis``).
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
COLUMNS = ("n", "n_camera", "first_ms", "first_kwh", "last_ms", "last_kwh", "max_kwh", "max_gap_ms", "n_power",
           "sum_power_w", "min_power_w", "max_power_w", "n_zero", "first_cam_ms", "last_cam_ms", "max_cam_gap_ms",
           "n_rises", "lead_flat_ms", "tail_flat_ms", "max_flat_ms")
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


def compute_hours(raw: pd.DataFrame) -> pd.DataFrame:
    """Hourly rollups (index ``hour_ms``, columns :data:`COLUMNS`) of a frame from :func:`raw_frame`."""
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
        "max_gap_ms": g["gap"].max(), "n_power": g["power"].count(), "sum_power_w": g["power"].sum(),
        "min_power_w": g["power"].min(), "max_power_w": g["power"].max(), "n_zero": g["zero"].sum(),
        "first_cam_ms": g["cam_ts"].min(), "last_cam_ms": g["cam_ts"].max()})
    if cam.any():
        cts, chour = ts[cam], hour[cam]
        cg = pd.Series(_gaps(cts, chour)).groupby(chour).max()
        out["max_cam_gap_ms"] = cg.reindex(out.index, fill_value=0).to_numpy()
    else:
        out["max_cam_gap_ms"] = 0
    out[["n_rises", "lead_flat_ms", "tail_flat_ms", "max_flat_ms"]] = _flats(df, out)
    out.index.name = "hour_ms"
    return out[list(COLUMNS)]


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
    inner = g["since"].max().reindex(out.index).to_numpy()
    f, la = out["first_ms"].to_numpy(), out["last_ms"].to_numpy()
    lead = np.where(n > 0, first_rise - f, la - f)
    tail = np.where(n > 0, la - last_rise, la - f)
    longest = np.fmax(np.nan_to_num(inner, nan=0.0), np.fmax(lead, tail))
    return np.column_stack([n, lead, tail, longest]).astype(np.int64)


def _runs(hours: np.ndarray) -> list[tuple[int, int]]:
    """Sorted hour starts -> [(first, last)] runs of consecutive hours."""
    if not hours.size:
        return []
    breaks = np.flatnonzero(np.diff(hours) != HOUR_MS)
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks, [hours.size - 1]))
    return [(int(hours[a]), int(hours[b])) for a, b in zip(starts, ends, strict=True)]


def _rows(meter_id: str, hours: pd.DataFrame) -> list[tuple[Any, ...]]:
    def val(v: Any) -> Any:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return None
        return v.item() if hasattr(v, "item") else v

    cols = [hours.index.to_numpy(), *(hours[c].to_numpy() for c in COLUMNS)]
    return [(meter_id, *(val(c[i]) for c in cols)) for i in range(len(hours))]


INSERT_SQL = (f"INSERT INTO rollup_hour (meter_id, hour_ms, {', '.join(COLUMNS)}) VALUES "
              f"({', '.join('?' * (len(COLUMNS) + 2))})")


def refresh(db: Database, meter_id: str | None = None) -> int:
    """Recompute the hours marked dirty (of one meter, or all); returns how many hours were recomputed."""
    done = 0
    with db.transaction():
        sql, params = "SELECT meter_id, hour_ms FROM rollup_dirty", ()
        if meter_id is not None:
            sql, params = sql + " WHERE meter_id = ?", (meter_id,)  # type: ignore[assignment]
        dirty: dict[str, list[int]] = {}
        for m, h in db.query(sql, params):
            dirty.setdefault(str(m), []).append(int(h))
        for m, hours in dirty.items():
            for lo, hi in _runs(np.sort(np.asarray(hours, np.int64))):
                fresh = compute_hours(load_raw(db, m, lo, hi + HOUR_MS))
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
    figures); index ``hour_ms``, columns :data:`COLUMNS`, time order."""
    lo = -(2**62) if start_ms is None else start_ms
    hi = 2**62 if end_ms is None else end_ms
    rows = db.query(f"SELECT hour_ms, {', '.join(COLUMNS)} FROM rollup_hour WHERE meter_id = ? AND hour_ms >= ? "
                    "AND hour_ms < ? ORDER BY hour_ms", (meter_id, lo, hi))
    if not rows:
        return compute_hours(raw_frame([]))
    arr = list(zip(*rows, strict=True))
    out = pd.DataFrame({c: np.asarray(arr[i + 1], dtype=np.float64) for i, c in enumerate(COLUMNS)},
                       index=pd.Index(np.asarray(arr[0], np.int64), name="hour_ms"))
    return out


def full_recompute(db: Database, meter_id: str) -> pd.DataFrame:
    """Rollups of every current reading of one meter computed from scratch (what :func:`refresh` must equal)."""
    return compute_hours(load_raw(db, meter_id))
