"""Benchmark: statistics and the anomaly pass over years of 1-minute readings, side by side with a plain pandas
resample of the same rows and with the previous code; precision and recall on the simulator's injected events.

1. Data: a simulated household (simulator/household.py, day-worker, 1 s resolution, sampled every minute) for
   ``--years`` years (10: 5.26 M readings), stored in SQLite with the rollup triggers on.
2. Ours: rollups built once (``rollups.refresh``: time shown), then the full statistics + anomaly pass
   (``events.analyse_meter(full=True)`` and ``analysis.statistics``) on the stored rollups; then an incremental
   pass after 5 minutes of new readings. Time and peak memory (tracemalloc: Python, numpy and pandas allocations).
3. Peer: a plain pandas pass over the same rows — read them (``pd.read_sql``), resample to hours and local days —
   which gives daily energy but no events.
4. Old code (``git show OLD:server/analysis.py`` and ``power.py``, the list-of-Reading analysis) on ``--old-years``.
5. Scoring: ``--score-weeks`` simulated weeks (seeds 1..N) with one event of each kind injected
   (simulator/events.py), stored twice: as a sensor meter (CSV: register + power) and as a camera meter (register
   only, photos every minute, none while the camera is stale), and again as a camera meter whose photos carry the
   last drum's fine position (``photos.fine_kwh``: the register + jitter of 1 % of a step, 5 % of photos with the
   mid-step estimate) — the camera rows without and with it are the before -> after of the fine-drum blackouts.
   ``fridge_failure`` is scored on the sensor meter only (a register cannot show a cycle). Per injected kind:
   recall = injected events
   overlapped by a detected event of the matching kind; precision = detected events of that kind that overlap an
   injected one (a household's own 3 kW kettle is a true superamento, but counts against precision here).

Usage: ``python bench/analysis.py [--years 10] [--old-years 1] [--score-weeks 12] [--skip-old]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from smartmeter.server import analysis, events, readings_repo, rollups  # noqa: E402
from smartmeter.server.database import Database, open_database  # noqa: E402
from smartmeter.settings import MeterSettings, Settings  # noqa: E402
from smartmeter.simulator.dataset import sample  # noqa: E402
from smartmeter.simulator.events import KINDS, plan_events  # noqa: E402
from smartmeter.simulator.household import generate  # noqa: E402

OLD = "3ff359b"  # the commit before the rollups
START = datetime(2015, 1, 1, tzinfo=UTC)
TZ = "Europe/Rome"
INCREMENTAL_RUNS = 9
MATCH = {"blackout": "blackout", "threshold_exceedance": "power_high", "heater_left_on": "long_load",
         "stale_camera": "camera_stale", "fridge_failure": "fridge_stopped"}
PHOTO = ("INSERT INTO photos (photo_key, content_hash, meter_id, ts_ms, status, value_kwh, published_kwh, fine_kwh, "
         "confidence, updated_ms) VALUES (?, ?, ?, ?, 'published', ?, ?, ?, 1.0, 0)")
FINE_JITTER = 0.01  # the reader's error on the last drum's fraction, share of a step (sd)
FINE_UNMATCHED = 0.05  # photos whose drum did not match: the reader's mid-step estimate instead
INSERT = ("INSERT INTO readings (meter_id, ts_ms, value_kwh, power_w, source, confidence, reader_version, status, "
          "created_ms) VALUES (?, ?, ?, ?, ?, 1.0, '', 'accepted', 0)")


def measure(fn: Callable[[], Any], memory: bool = True) -> tuple[float, float, Any]:
    """(seconds, peak MB allocated, result): timed on its own, then run again under tracemalloc (which slows
    allocation-heavy code several times) for the peak of Python, numpy and pandas allocations."""
    t = time.perf_counter()
    out = fn()
    secs = time.perf_counter() - t
    peak = float("nan")
    if memory:
        tracemalloc.start()
        fn()
        peak = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
    return secs, peak, out


def household_rows(days: float, seed: int, start: datetime, events_: list[Any] | None = None,
                   start_kwh: float = 1000.0, truth: bool = False) -> tuple[Any, ...]:
    """(ts_ms, register kWh rounded to 1 Wh, power W) every minute (and the 1 s power when ``truth``)."""
    hh = generate("day-worker", days, start, seed, components=False, start_kwh=start_kwh, events=events_ or ())
    idx, reg, kw = sample(hh, 60)
    out = (int(start.timestamp() * 1000) + idx * 1000), np.round(reg, 3), kw * 1000.0
    return (*out, hh.power_w) if truth else out


def fill(db: Database, years: float) -> int:
    n, kwh, t = 0, 1000.0, START
    chunk = 365.0
    left = years * 365.0
    db.register_meter("house")
    while left > 0:
        d = min(chunk, left)
        ts, reg, pw = household_rows(d, 1 + n, t, start_kwh=kwh)
        rows = [("house", int(a), float(b), float(c), "csv:bench") for a, b, c in zip(ts, reg, pw, strict=True)]
        db.executemany(INSERT, rows)
        readings_repo.mark_changed(db, ((r[0], r[1]) for r in rows))  # what insert_readings does
        n += len(rows)
        kwh, t, left = float(reg[-1]), t + timedelta(days=d), left - d
    return n


def peer(url: str) -> Any:
    import sqlite3

    with sqlite3.connect(url[len("sqlite:///"):]) as conn:
        df = pd.read_sql("SELECT ts_ms, value_kwh, power_w FROM readings WHERE meter_id = 'house' ORDER BY ts_ms",
                         conn)
    s = pd.Series(df["value_kwh"].to_numpy(), index=pd.to_datetime(df["ts_ms"], unit="ms", utc=True))
    hourly = s.resample("1h").last().ffill().diff()
    return hourly.tz_convert(TZ).resample("1D").sum()


def load_old() -> Any:
    tmp = Path(tempfile.mkdtemp(prefix="old-analysis-"))
    for name in ("analysis", "power"):
        src = subprocess.run(["git", "show", f"{OLD}:server/{name}.py"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout
        (tmp / f"old_{name}.py").write_text(src.replace("smartmeter.server.power", "old_power"))
    sys.path.insert(0, str(tmp))
    spec = importlib.util.spec_from_file_location("old_analysis", tmp / "old_analysis.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["old_analysis"] = mod
    spec.loader.exec_module(mod)
    return mod


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def score(weeks: int) -> dict[tuple[str, str], list[int]]:
    """(meter kind, injected kind) -> [injected, recalled, detected, detected overlapping an injected one,
    detected where the simulated 1 s power really was at/above the threshold (power_high only)]."""
    tally: dict[tuple[str, str], list[int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(f"sqlite:///{tmp}/score.db")
        for w in range(weeks):
            start = START + timedelta(days=7 * w)
            evs = plan_events(start, 7 * 86400, seed=w + 1, kinds=KINDS, power_threshold_w=3000.0)
            ts, reg, pw, true_w = household_rows(7.0, w + 1, start, evs, truth=True)
            t0 = int(start.timestamp() * 1000)
            stale = next(e for e in evs if e.kind == "stale_camera")
            a, b = stale.start.timestamp() * 1000, stale.end.timestamp() * 1000
            rng = np.random.default_rng(w)
            for kind in ("sensor", "camera", "cam+fine"):
                mid = f"{kind.replace('+', '')}{w}"
                db.register_meter(mid)
                if kind == "sensor":
                    rows = [(mid, int(t), float(r), float(p), "csv:s") for t, r, p in zip(ts, reg, pw, strict=True)]
                else:  # a 0.1 kWh register read from a photo every minute; none while the camera is stale
                    rows = [(mid, int(t), float(r), None, f"image:{mid}/{i}.jpg")
                            for i, (t, r) in enumerate(zip(ts, np.floor(reg * 10) / 10, strict=True))
                            if not a <= t < b]
                if kind == "cam+fine":
                    exact = {int(t): float(r) for t, r in zip(ts, reg, strict=True)}
                    photos = []
                    for m, t, v, _, src in rows:
                        f = min(max(exact[t] + rng.normal(0, FINE_JITTER * 0.1), v), v + 0.1)
                        f = v + 0.05 if rng.random() < FINE_UNMATCHED else f
                        photos.append((src[6:], src, m, t, v, v, f))
                    db.executemany(PHOTO, photos)
                db.executemany(INSERT, rows)
                readings_repo.mark_changed(db, ((r[0], r[1]) for r in rows))
                settings = Settings(meters=[MeterSettings(id=mid, resolution_kwh=0.001 if kind == "sensor" else 0.1,
                                                          timezone=TZ)])
                events.analyse_meter(db, settings, mid, now=datetime.fromtimestamp(rows[-1][1] / 1000 + 60, UTC))
                found = events.stored_events(db, mid)
                for inj_kind, det_kind in MATCH.items():
                    if inj_kind == ("stale_camera" if kind == "sensor" else "fridge_failure"):
                        continue
                    inj = [(int(e.start.timestamp() * 1000), int(e.end.timestamp() * 1000)) for e in evs
                           if e.kind == inj_kind]
                    det = [(e.start_ms, e.end_ms) for e in found if e.kind == det_kind]
                    t = tally.setdefault((kind, inj_kind), [0, 0, 0, 0, 0])
                    t[0] += len(inj)
                    t[1] += sum(any(overlaps(i, d) for d in det) for i in inj)
                    t[2] += len(det)
                    t[3] += sum(any(overlaps(i, d) for i in inj) for d in det)
                    if det_kind == "power_high":
                        t[4] += sum(float(true_w[max((d0 - t0) // 1000 - 60, 0):max((d1 - t0) // 1000 + 60, 1)]
                                          .max(initial=0)) >= 3000.0 for d0, d1 in det)  # a sample's minute
        db.close()
    return tally


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--years", type=float, default=10.0)
    ap.add_argument("--old-years", type=float, default=1.0)
    ap.add_argument("--score-weeks", type=int, default=12)
    ap.add_argument("--skip-old", action="store_true")
    args = ap.parse_args()
    settings = Settings(meters=[MeterSettings(id="house", resolution_kwh=0.001, timezone=TZ)])
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        db = open_database(url)
        t = time.perf_counter()
        n = fill(db, args.years)
        print(f"data: {n:,} readings ({args.years:g} years, 1 per minute), stored in {time.perf_counter() - t:.0f} s")
        t_build, m_build, hours = measure(lambda: rollups.refresh(db, "house"), memory=False)
        print(f"rollups built once: {hours:,} hours in {t_build:.1f} s; later passes only recompute the hours that "
              "changed")
        now = datetime.fromtimestamp(db.query("SELECT MAX(ts_ms) FROM readings")[0][0] / 1000, UTC)

        def ours() -> Any:
            state = events.analyse_meter(db, settings, "house", now=now, full=True)
            return state, analysis.statistics(db, settings.meter("house"))

        t_ours, m_ours, (state, st) = measure(ours)
        n_ev = db.query("SELECT kind, COUNT(*) FROM events GROUP BY kind ORDER BY kind")
        last = db.query("SELECT ts_ms, value_kwh FROM readings ORDER BY ts_ms DESC LIMIT 1")[0]
        new = [("house", last[0] + 60_000 * (i + 1), last[1] + 0.005 * (i + 1), 300.0, "csv:bench")
               for i in range(5)]
        incs = []
        for k in range(INCREMENTAL_RUNS):  # five more minutes of readings, then a pass; the median of these
            more = [(m, t + k * 300_000, v + k * 0.025, w, s) for m, t, v, w, s in new]
            db.executemany(INSERT, more)
            readings_repo.mark_changed(db, ((r[0], r[1]) for r in more))
            at = now + timedelta(minutes=5 * (k + 1))
            incs.append(measure(lambda at=at: events.analyse_meter(db, settings, "house", now=at), memory=False)[0])
        t_inc = float(np.median(incs))
        more = [(m, t + INCREMENTAL_RUNS * 300_000, v, w, s) for m, t, v, w, s in new]
        db.executemany(INSERT, more)
        readings_repo.mark_changed(db, ((r[0], r[1]) for r in more))
        _, m_inc, _ = measure(lambda: events.analyse_meter(db, settings, "house", now=now + timedelta(hours=1)))
        t_peer, m_peer, days = measure(lambda: peer(url))
        print(f"\n{'pass over ' + format(n, ',') + ' readings':<44} {'time':>9} {'peak memory':>12}")
        print(f"{'ours: statistics + anomaly pass (rollups)':<44} {t_ours:>8.2f}s {m_ours:>9.0f} MB   "
              f"targets <= 2 s, <= 1 GB")
        print(f"{'ours: incremental, after 5 new minutes':<44} {1000 * t_inc:>7.1f}ms {m_inc:>9.1f} MB   "
              f"target <= 50 ms (median of {INCREMENTAL_RUNS}; {min(incs) * 1000:.0f}-{max(incs) * 1000:.0f} ms)")
        print(f"{'plain pandas: read rows + resample to days':<44} {t_peer:>8.2f}s {m_peer:>9.0f} MB   "
              "(no events)")
        ours_days = st.days["kwh"]
        common = ours_days.index.intersection(days.index.tz_localize(None).normalize())
        diff = (ours_days.loc[common] - days.tz_localize(None).loc[common]).abs()
        print(f"daily energy, ours vs pandas: {len(common)} days, max difference {diff.max():.4f} kWh, "
              f"total {st.energy_kwh:,.1f} kWh; events stored: {dict(n_ev)}; state {state['blackout']=}, "
              f"{state['superamento']=}")
        if not args.skip_old:
            old = load_old()
            end = datetime.fromtimestamp(START.timestamp() + args.old_years * 365 * 86400, UTC)

            def previous() -> Any:
                from smartmeter.settings import AnalysisSettings

                return old.analyse(db.readings("house", START, end), settings.meter("house"), AnalysisSettings(), end)

            t_old, m_old, res = measure(previous)
            n_old = res.stats.readings
            t_o1, m_o1, _ = measure(lambda: (events.analyse_meter(db, settings, "house", now=now, full=True),
                                             analysis.statistics(db, settings.meter("house"), START, end)))
            print(f"\nprevious code ({OLD}) on {args.old_years:g} year ({n_old:,} readings): {t_old:.1f} s, peak "
                  f"{m_old:.0f} MB; ours on the same year (statistics) + the whole {args.years:g}-year anomaly "
                  f"pass: {t_o1:.2f} s, {m_o1:.0f} MB")
        db.close()
    if args.score_weeks:
        tally = score(args.score_weeks)
        print(f"\nscored on {args.score_weeks} simulated weeks, one event of each kind a week; 'precision' counts "
              "a detection overlapping an injected event, 'true' one where the simulated power really was >= 3 kW")
        print(f"{'meter':<7} {'injected kind':<21} {'detected as':<13} {'injected':>8} {'recall':>7} {'detected':>8} "
              f"{'precision':>9} {'true':>5}")
        for (meter, k), (inj, rec, det, tp, real) in tally.items():
            r = f"{rec / inj:.2f}" if inj else "-"
            p = f"{tp / det:.2f}" if det else "-"
            true = f"{real / det:.2f}" if det and MATCH[k] == "power_high" else ""
            print(f"{meter:<7} {k:<21} {MATCH[k]:<13} {inj:>8} {r:>7} {det:>8} {p:>9} {true:>5}")


if __name__ == "__main__":
    main()
