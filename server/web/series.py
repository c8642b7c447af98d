"""Power per bucket and quick statistics from stored register readings (what the charts and the stream show).

The register is read between its STEPS (``smartmeter.server.power``): linear between two steps, held before the
first observed step, unknown outside the readings. A bucket's energy is the register's change across it and its
power that energy over its length; a bucket whose edges fall outside the readings has no value (None), never a
guess. Where a sensor reported power, the bucket also carries the mean reported power of the readings inside.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from smartmeter.server import readings_repo
from smartmeter.server.database import Database
from smartmeter.settings import MeterSettings


@dataclass(frozen=True)
class Curve:
    """The register as a function of time: step times/values (ms, kWh), the readings' span and reported power."""

    step_ms: np.ndarray
    step_kwh: np.ndarray
    first_ms: int
    last_ms: int
    power_ms: np.ndarray  # times of readings with sensor power
    power_w: np.ndarray

    @classmethod
    def of(cls, rows: Sequence[tuple[Any, ...]], resolution_kwh: float) -> Curve:
        """From ``readings_repo.curve_rows`` rows (ts_ms, kWh, W, confidence), any order: one per timestamp
        (the most confident), the register's running maximum, its steps (``power.step_points``' rule)."""
        if not rows:
            empty = np.array([], dtype=np.int64)
            return cls(empty, np.array([]), 0, -1, empty, np.array([]))
        table = np.array(rows, dtype=float)  # None -> NaN
        ts, kwh, watts, conf = table[:, 0].astype(np.int64), table[:, 1], table[:, 2], table[:, 3]
        order = np.lexsort((-conf, ts))
        ts, kwh, watts = ts[order], kwh[order], watts[order]
        first = np.concatenate([[True], ts[1:] != ts[:-1]])
        ts, kwh, watts = ts[first], kwh[first], watts[first]
        steps = [0]
        level, half = kwh[0], resolution_kwh / 2
        for i, v in enumerate(kwh.tolist()):
            if v - level >= half:
                level = v
                steps.append(i)
        idx = np.array(steps)
        sensor = ~np.isnan(watts)
        return cls(ts[idx], kwh[idx], int(ts[0]), int(ts[-1]), ts[sensor], watts[sensor])

    def register(self, at_ms: np.ndarray) -> np.ndarray:
        """Register at each time (NaN outside the readings' span)."""
        out = np.full(at_ms.shape, np.nan)
        if len(self.step_ms) == 0:
            return out
        inside = (at_ms >= self.first_ms) & (at_ms <= self.last_ms)
        if len(self.step_ms) == 1:
            out[inside] = self.step_kwh[0]
            return out
        # hold the first value until the first observed step, then linear between steps, hold after the last
        lin = np.interp(at_ms.astype(float), self.step_ms[1:].astype(float), self.step_kwh[1:])
        out[inside] = np.where(at_ms[inside] < self.step_ms[1], self.step_kwh[0], lin[inside])
        return out

    def buckets(self, edges_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(energy kWh, mean power W, mean reported W) of each bucket between consecutive edges (NaN: unknown)."""
        reg = self.register(edges_ms)
        energy = np.diff(reg)
        seconds = np.diff(edges_ms) / 1000.0
        power = energy * 3.6e6 / seconds
        reported = np.full(len(energy), np.nan)
        if len(self.power_ms):
            idx = np.searchsorted(self.power_ms, edges_ms)
            sums = np.concatenate([[0.0], np.cumsum(self.power_w)])
            n = np.diff(idx)
            tot = sums[idx[1:]] - sums[idx[:-1]]
            reported = np.where(n > 0, tot / np.maximum(n, 1), np.nan)
        return energy, power, reported

    def latest_power(self, now_ms: int, max_age_ms: float) -> float | None:
        """An estimate of the power now: the last reported sample, else the last step interval's mean, if the
        last reading is at most ``max_age_ms`` old."""
        if self.last_ms < 0 or now_ms - self.last_ms > max_age_ms:
            return None
        if len(self.power_ms):
            return float(self.power_w[-1])
        if len(self.step_ms) >= 3:
            dt = (self.step_ms[-1] - self.step_ms[-2]) / 1000.0
            return float((self.step_kwh[-1] - self.step_kwh[-2]) * 3.6e6 / dt)
        return None


class AnswerCache:
    """Encoded answers (bytes) of reads that depend on the stored data only, e.g. one day's power series: a closed
    day answers the same until something is written. At most ``entries`` answers, least recently used out first.

    Validity: every answer is stamped with a generation. Before a lookup the route hands its database handle to
    :meth:`generation`, which compares the handle's ``Database.change_mark()`` with the one it saw last on that
    handle; any commit since (a reading stored, a correction, by this server or any other process) starts a new
    generation and drops every answer. An answer computed while a new generation began is not kept. Where the
    backend gives no mark (PostgreSQL) nothing is cached.
    """

    def __init__(self, entries: int = 512) -> None:
        self.entries = entries
        self.lock = threading.Lock()
        self.answers: OrderedDict[Hashable, bytes] = OrderedDict()
        self.marks: weakref.WeakKeyDictionary[Database, tuple[int, int]] = weakref.WeakKeyDictionary()
        self.current = 0
        self.hits = self.misses = 0

    def generation(self, db: Database) -> int | None:
        """The current generation as seen through ``db`` (None: this backend cannot tell, do not cache)."""
        mark = db.change_mark()
        if mark is None:
            return None
        with self.lock:
            if self.marks.get(db) != mark:  # a commit since this handle last looked (or a new handle)
                self.marks[db] = mark
                self.current += 1
                self.answers.clear()
            return self.current

    def get(self, key: Hashable, generation: int | None) -> bytes | None:
        with self.lock:
            body = self.answers.get(key) if generation == self.current else None
            if body is None:
                self.misses += 1
                return None
            self.answers.move_to_end(key)
            self.hits += 1
            return body

    def put(self, key: Hashable, generation: int | None, body: bytes) -> None:
        with self.lock:
            if generation is None or generation != self.current:
                return  # the data changed while this answer was computed
            self.answers[key] = body
            self.answers.move_to_end(key)
            while len(self.answers) > self.entries:
                self.answers.popitem(last=False)


def load_curve(db: Database, meter: MeterSettings, lo_ms: int, hi_ms: int, margin_ms: int) -> Curve:
    """The register curve around [lo_ms, hi_ms) (readings ``margin_ms`` either side, so edge buckets have both
    ends)."""
    return Curve.of(readings_repo.curve_rows(db, meter.id, lo_ms - margin_ms, hi_ms + margin_ms),
                    meter.resolution_kwh)


def clean(x: float | None) -> float | None:
    """JSON-safe: None for NaN/inf, else 9 significant digits (a kWh register keeps its 0.001, a W its 0.01)."""
    return None if x is None or not math.isfinite(x) else float(f"{float(x):.9g}")


def clean_all(values: np.ndarray) -> list[float | None]:
    """:func:`clean` of each value (a series, in one pass)."""
    return [float(f"{x:.9g}") if math.isfinite(x) else None for x in values.tolist()]


def quick_stats(values: np.ndarray) -> dict[str, float | int | None]:
    """mean, std, quartiles, IQR outlier bounds (1.5 IQR) and the share of values outside them."""
    v = values[np.isfinite(values)]
    if len(v) == 0:
        return {"n": 0, "mean": None, "std": None, "min": None, "q1": None, "median": None, "q3": None,
                "max": None, "iqr": None, "lower": None, "upper": None, "outliers": 0, "outlier_share": None}
    q1, med, q3 = (float(x) for x in np.percentile(v, [25, 50, 75]))
    iqr = q3 - q1
    lower, upper = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    out = int(np.count_nonzero((v < lower) | (v > upper)))
    return {"n": int(len(v)), "mean": clean(float(v.mean())), "std": clean(float(v.std())),
            "min": clean(float(v.min())), "q1": clean(q1), "median": clean(med), "q3": clean(q3),
            "max": clean(float(v.max())), "iqr": clean(iqr), "lower": clean(lower), "upper": clean(upper),
            "outliers": out, "outlier_share": clean(out / len(v))}
