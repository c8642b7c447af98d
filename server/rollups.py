"""Stored hourly rollups of each meter's readings, maintained incrementally (table ``rollup_hour``, migration 004).

Every change to ``readings`` marks its UTC hour in ``rollup_dirty``: inserts through ``readings_repo.mark_changed``
(the only module that inserts readings), corrections, withdrawals, re-processing and deletes — from any module —
through database triggers; :func:`refresh` recomputes exactly those hours from the current
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

from smartmeter.server import readings_repo
from smartmeter.server.database import Database

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
ZERO_W = 1.0  # a sensor sample below this is "no power"
CHUNK_HOURS = 31 * 24  # hours recomputed per transaction
DEFAULT_HIGH_W = 3000.0  # the power threshold the high-power columns describe (analysis.power_threshold_w)
COLUMNS = ("n", "n_camera", "first_ms", "first_kwh", "last_ms", "last_kwh", "max_kwh", "max_gap_ms", "n_power",
           "sum_power_w", "min_power_w", "max_power_w", "n_zero", "first_cam_ms", "last_cam_ms", "max_cam_gap_ms",
           "n_rises", "lead_flat_ms", "tail_flat_ms", "max_flat_ms", "max_flat_end_ms", "max_gap_end_ms",
           "max_cam_gap_end_ms", "high_w", "n_high", "first_high_ms", "end_high_ms", "high_at_start",
           "first_zero_ms", "end_zero_ms", "zero_at_start", "zero_first_kwh", "zero_last_kwh")


def raw_frame(rows: Sequence[tuple[Any, ...]]) -> pd.DataFrame:
    """(ts_ms, value_kwh, power_w, confidence, source) rows -> time-ordered frame, one row per timestamp (the most
    confident; on a tie the first source in name order), with a boolean ``camera`` column (source ``image:``)."""
    if not rows:
        return pd.DataFrame({"ts_ms": np.zeros(0, np.int64), "value_kwh": np.zeros(0), "power_w": np.zeros(0),
                             "confidence": np.zeros(0), "camera": np.zeros(0, bool)})
    ts, kwh, power, conf, source = zip(*rows, strict=True)
    t = np.fromiter(ts, np.int64, len(ts))
    c = np.asarray(conf, np.float64)
    src = np.asarray(source, dtype=object)
    order = np.lexsort((src, -c, t))  # time, then the most confident, then the first source in name order
    t = t[order]
    keep = np.concatenate(([True], t[1:] != t[:-1]))
    pick = order[keep]
    p = np.asarray([np.nan if v is None else v for v in power], np.float64)
    return pd.DataFrame({"ts_ms": t[keep], "value_kwh": np.asarray(kwh, np.float64)[pick], "power_w": p[pick],
                         "confidence": c[pick],
                         "camera": np.fromiter((s.startswith("image:") for s in src[pick]), bool, int(keep.sum()))})


def load_raw(db: Database, meter_id: str, start_ms: int | None = None, end_ms: int | None = None) -> pd.DataFrame:
    """Current readings of one meter with ``start_ms <= ts < end_ms`` as a frame (see :func:`raw_frame`)."""
    lo = -(2**62) if start_ms is None else start_ms
    hi = 2**62 if end_ms is None else end_ms
    return raw_frame(readings_repo.raw_rows(db, meter_id, lo, hi))


class _Seg:
    """Contiguous groups (hours) of a time-ordered array: reductions per group with numpy's ``reduceat``."""

    def __init__(self, hour: np.ndarray) -> None:
        self.size = hour.size
        self.starts = np.flatnonzero(np.concatenate(([True], hour[1:] != hour[:-1]))) if hour.size else \
            np.zeros(0, np.int64)
        self.ends = np.append(self.starts[1:], hour.size)
        self.keys = hour[self.starts]
        self.group = np.repeat(np.arange(self.starts.size), self.ends - self.starts)

    def sum(self, x: np.ndarray) -> np.ndarray:
        return np.add.reduceat(x, self.starts) if self.size else np.zeros(0)

    def max(self, x: np.ndarray, empty: float = np.nan) -> np.ndarray:
        if not self.size:
            return np.zeros(0)
        v = np.maximum.reduceat(np.where(np.isnan(x), -np.inf, x), self.starts)
        return np.where(np.isneginf(v), empty, v)

    def min(self, x: np.ndarray) -> np.ndarray:
        return -self.max(-x)

    def within(self, x: np.ndarray) -> np.ndarray:
        """Difference to the previous element of the same group (0 for each group's first)."""
        d = np.zeros(self.size, np.float64)
        if self.size > 1:
            d[1:] = np.diff(x)
        d[self.starts] = 0
        return d

    def spread(self, per_group: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Values per group of this segmentation -> per key of another (NaN where absent)."""
        out = np.full(keys.size, np.nan)
        pos = np.searchsorted(keys, self.keys)
        out[pos] = per_group
        return out


def _longest(ts: np.ndarray, hour: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per hour (``keys``): the longest gap between consecutive readings inside it, and the reading ending it."""
    seg = _Seg(hour)
    if not seg.size:
        return np.zeros(keys.size), np.full(keys.size, np.nan)
    gap = seg.within(ts.astype(np.float64))
    longest = seg.max(gap)
    idx = np.where((gap == longest[seg.group]) & (gap > 0), np.arange(seg.size), -1)
    last = np.maximum.reduceat(idx, seg.starts)
    end = np.where(last >= 0, ts[np.maximum(last, 0)], np.nan)
    return np.nan_to_num(seg.spread(longest, keys), nan=0.0), seg.spread(end, keys)


def _run_summary(ts: np.ndarray, hour: np.ndarray, kwh: np.ndarray, mask: np.ndarray,
                 keys: np.ndarray) -> dict[str, np.ndarray]:
    """Per hour, the samples where ``mask`` holds: count, first time, the first sample after the last one (NaN when
    the hour ends inside the condition), whether the hour starts inside it, the register at its first and last
    sample (the sample after a run may already hold energy of the minute it closes)."""
    seg = _Seg(hour)
    nan = np.full(keys.size, np.nan)
    if not seg.size or not mask.any():
        return {"n": np.zeros(keys.size), "first_ms": nan, "end_ms": nan, "at_start": np.zeros(keys.size),
                "first_kwh": nan, "last_kwh": nan}
    idx = np.arange(seg.size)
    n = seg.sum(mask.astype(np.int64))
    first = np.minimum.reduceat(np.where(mask, idx, seg.size), seg.starts)
    last = np.maximum.reduceat(np.where(mask, idx, -1), seg.starts)
    has = n > 0
    nxt = last + 1
    inside = has & (nxt < seg.ends)
    safe_first, safe_next = np.minimum(first, seg.size - 1), np.minimum(nxt, seg.size - 1)
    return {"n": np.nan_to_num(seg.spread(n, keys)),
            "first_ms": seg.spread(np.where(has, ts[safe_first], np.nan), keys),
            "end_ms": seg.spread(np.where(inside, ts[safe_next], np.nan), keys),
            "at_start": np.nan_to_num(seg.spread(mask[seg.starts].astype(np.float64), keys)),
            "first_kwh": seg.spread(np.where(has, kwh[safe_first], np.nan), keys),
            "last_kwh": seg.spread(np.where(has, kwh[np.maximum(last, 0)], np.nan), keys)}


def _flats(seg: _Seg, ts: np.ndarray, kwh: np.ndarray, first: np.ndarray, last: np.ndarray) -> list[np.ndarray]:
    """Per hour: rises of the register's running maximum (within the hour) and the flat spans before, after and
    between them, and where the longest ends."""
    rank = np.unique(kwh, return_inverse=True)[1].astype(np.int64)
    key = seg.group * (int(rank.max()) + 2) + rank
    runmax = np.maximum.accumulate(key)
    rise = np.zeros(seg.size, bool)
    rise[1:] = key[1:] > runmax[:-1]
    rise[seg.starts] = False
    rts = np.where(rise, ts, np.nan).astype(np.float64)
    n = seg.sum(rise.astype(np.int64)).astype(np.float64)
    first_rise = seg.min(rts)
    last_rise = seg.max(rts)
    # time since the previous rise (or the hour's first reading) at each rise
    prev = pd.Series(rts).groupby(seg.group).ffill().shift(1).to_numpy(copy=True)
    prev[seg.starts] = np.nan
    since = np.where(rise, ts - np.where(np.isnan(prev), first[seg.group], prev), np.nan)
    inner = np.nan_to_num(seg.max(since), nan=0.0)
    idx = np.where(rise & (since == inner[seg.group]), np.arange(seg.size), -1)
    inner_end = ts[np.maximum(np.maximum.reduceat(idx, seg.starts), 0)].astype(np.float64)
    lead = np.where(n > 0, first_rise - first, last - first)
    tail = np.where(n > 0, last - last_rise, last - first)
    longest = np.fmax(inner, np.fmax(lead, tail))
    end = np.where(longest == tail, last, np.where(longest == inner, inner_end, first_rise))
    return [n, lead, tail, longest, end]


def compute_hours(raw: pd.DataFrame, high_w: float = DEFAULT_HIGH_W) -> pd.DataFrame:
    """Hourly rollups (index ``hour_ms``, columns :data:`COLUMNS`, float64) of a frame from :func:`raw_frame`;
    ``high_w`` is the power threshold whose samples the ``*_high`` columns describe."""
    if raw.empty:
        return pd.DataFrame({c: np.zeros(0) for c in COLUMNS}, index=pd.Index([], name="hour_ms", dtype=np.int64))
    ts = raw["ts_ms"].to_numpy().astype(np.int64)
    tsf = ts.astype(np.float64)
    hour = ts - ts % HOUR_MS
    kwh = raw["value_kwh"].to_numpy(np.float64)
    power = raw["power_w"].to_numpy(np.float64)
    cam = raw["camera"].to_numpy().astype(bool)
    seg = _Seg(hour)
    keys = seg.keys
    sensor = ~np.isnan(power)
    c: dict[str, np.ndarray] = {
        "n": (seg.ends - seg.starts).astype(np.float64), "n_camera": seg.sum(cam.astype(np.int64)),
        "first_ms": tsf[seg.starts], "first_kwh": kwh[seg.starts], "last_ms": tsf[seg.ends - 1],
        "last_kwh": kwh[seg.ends - 1], "max_kwh": seg.max(kwh), "n_power": seg.sum(sensor.astype(np.int64)),
        "sum_power_w": seg.sum(np.nan_to_num(power)), "min_power_w": seg.min(power), "max_power_w": seg.max(power),
        "n_zero": seg.sum((power < ZERO_W).astype(np.int64)),
        "first_cam_ms": seg.min(np.where(cam, tsf, np.nan)), "last_cam_ms": seg.max(np.where(cam, tsf, np.nan))}
    c["max_gap_ms"], c["max_gap_end_ms"] = _longest(ts, hour, keys)
    c["max_cam_gap_ms"], c["max_cam_gap_end_ms"] = _longest(ts[cam], hour[cam], keys)
    c["n_rises"], c["lead_flat_ms"], c["tail_flat_ms"], c["max_flat_ms"], c["max_flat_end_ms"] = _flats(
        seg, tsf, kwh, c["first_ms"], c["last_ms"])
    c["high_w"] = np.full(keys.size, float(high_w))
    sts, shour, spow, skwh = tsf[sensor], hour[sensor], power[sensor], kwh[sensor]
    for name, mask in (("high", spow >= high_w), ("zero", spow < ZERO_W)):
        runs = _run_summary(sts, shour, skwh, mask, keys)
        c[f"first_{name}_ms"], c[f"end_{name}_ms"], c[f"{name}_at_start"] = (runs["first_ms"], runs["end_ms"],
                                                                              runs["at_start"])
        if name == "high":
            c["n_high"] = runs["n"]
        else:
            c["zero_first_kwh"], c["zero_last_kwh"] = runs["first_kwh"], runs["last_kwh"]
    return pd.DataFrame({k: np.asarray(c[k], np.float64) for k in COLUMNS},
                        index=pd.Index(keys.astype(np.int64), name="hour_ms"))


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
    many hours were recomputed. Hours computed with another threshold are recomputed too. Each piece of at most
    ``CHUNK_HOURS`` consecutive hours is one transaction (its rollups and the cleared marks together), so a first
    build over years never holds the write lock for long; a change that lands meanwhile marks its hour again."""
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
        for first, last in _runs(np.sort(np.asarray(hours, np.int64))):
            for lo in range(first, last + 1, CHUNK_HOURS * HOUR_MS):
                hi = min(last, lo + (CHUNK_HOURS - 1) * HOUR_MS)
                with db.transaction():
                    db.lock_meters((m,))  # PostgreSQL: two refreshes of one meter must not interleave
                    fresh = compute_hours(load_raw(db, m, lo, hi + HOUR_MS), high_w)
                    db.execute("DELETE FROM rollup_hour WHERE meter_id = ? AND hour_ms >= ? AND hour_ms <= ?",
                               (m, lo, hi))
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
