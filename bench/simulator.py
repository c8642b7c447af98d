"""Benchmark: the household generator and the meter-photo renderer, beside naive peers, in one run.

- Generation: one year of one household at 1 s resolution, in memory (total + register; then with components).
  Peer: a plain per-second Python loop over the same day plans (fridge and water-heater state machines, air
  conditioning, lighting, cooking), run on a shorter span and extrapolated to a year.
- CSV: writing the year as ``timestamp,contatore,potenza`` at 60 s steps (separate from generation).
- Photos: rendering simulated meter photos (JPEG in memory), and rendering + putting them into a local store.

Usage: ``python bench/simulator.py [--days 365] [--peer-days 2] [--photos 1000]``.
Targets: a year of 1 s data <= 10 s; >= 200 photos/s rendered.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from smartmeter.simulator.dataset import write_csv  # noqa: E402
from smartmeter.simulator.household import generate  # noqa: E402
from smartmeter.simulator.meter_render import MeterRenderer  # noqa: E402
from smartmeter.simulator.schedule import plan_day  # noqa: E402
from smartmeter.store.local import LocalStore  # noqa: E402
from smartmeter.types import photo_name  # noqa: E402

START = datetime(2024, 1, 1, tzinfo=UTC)


def naive_household(days: float, seed: int = 1) -> tuple[list[float], list[float]]:
    """The peer: one Python iteration per second, appliances as explicit state machines."""
    rng = np.random.default_rng(seed)
    zone = ZoneInfo("Europe/Rome")
    n = int(days * 86400)
    plans = []
    for d in range(int(math.ceil(days)) + 1):
        day = (START + timedelta(days=d)).astimezone(zone).date()
        midnight = int(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp() - START.timestamp())
        plans.append((midnight, plan_day("day-worker", day, rng)))
    spec = plans[0][1].spec
    awake = [(m + a, m + b) for m, p in plans for a, b in p.awake]
    home = [(m + a, m + b) for m, p in plans for a, b in p.home]
    cooking = [(m + a, m + b, w) for m, p in plans for a, b, w in p.cooking]
    draws = {m + t: wh for m, p in plans for t, wh in p.hot_water}
    power, register = [], []
    reg, fridge_on, fridge_t, deficit, heater_on = 1000.0, False, 0, 100.0, False
    for s in range(n):
        hour = (s / 3600.0 + 1) % 24
        temp = 15.5 - 10 * math.cos(2 * math.pi * (s / 86400.0 + 1) / 365.25) - 5 * math.cos(
            2 * math.pi * (hour - 15) / 24)
        is_awake = any(a <= s < b for a, b in awake)
        is_home = any(a <= s < b for a, b in home)
        w = spec.standby_w + (spec.awake_w if is_awake else 0.0)
        fridge_t += 1
        if fridge_on and fridge_t >= 900 or not fridge_on and fridge_t >= 1800:
            fridge_on, fridge_t = not fridge_on, 0
        w += spec.fridge_w if fridge_on else 0.0
        deficit += draws.get(s, 0.0) + spec.heater_loss_w / 3600.0
        if not heater_on and deficit >= spec.hysteresis_wh:
            heater_on = True
        if heater_on:
            deficit -= spec.heater_w / 3600.0
            w += spec.heater_w
            if deficit <= 0:
                heater_on = False
        if is_home and temp > 25:
            w += min((temp - 25) * 320, spec.ac_w)
        w += sum(c for a, b, c in cooking if a <= s < b)
        if is_awake and abs(hour - 12.5) > 6:
            w += spec.light_w
        w += rng.normal(0, 2 + 0.01 * w)
        power.append(w)
        register.append(reg)
        reg += w / 3.6e6
    return power, register


def timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=float, default=365.0)
    ap.add_argument("--peer-days", type=float, default=2.0)
    ap.add_argument("--photos", type=int, default=1000)
    args = ap.parse_args()
    year = args.days / 365.0

    hh, t_lean = timed(lambda: generate("day-worker", args.days, START, 1, components=False).register_kwh)
    samples = int(args.days * 86400)
    full, t_full = timed(lambda: generate("day-worker", args.days, START, 1, components=True))
    _, t_peer = timed(naive_household, args.peer_days)
    t_peer_year = t_peer * args.days / args.peer_days
    print(f"generation, {args.days:g} days at 1 s ({samples:,} samples), day-worker:")
    print(f"  ours, total + register          {t_lean:7.2f} s  ({samples / t_lean / 1e6:6.2f} M samples/s)")
    print(f"  ours, with 6+ components         {t_full:7.2f} s")
    print(f"  naive per-second Python loop    {t_peer_year:7.1f} s  (measured {t_peer:.2f} s on "
          f"{args.peer_days:g} days, extrapolated; {t_peer_year / t_lean:,.0f}x slower)")
    print(f"  target: one year <= 10 s -> {'met' if t_lean / year <= 10 else 'MISSED'}")

    with tempfile.TemporaryDirectory() as tmp:
        rows, t_csv = timed(write_csv, full, Path(tmp) / "year.csv", 60)
        size = (Path(tmp) / "year.csv").stat().st_size
    print(f"CSV at 60 s: {rows:,} rows, {size / 1e6:.1f} MB in {t_csv:.2f} s ({rows / t_csv:,.0f} rows/s)")

    r = MeterRenderer(seed=1)
    regs = 1000 + np.cumsum(np.random.default_rng(2).uniform(0, 0.05, args.photos))
    times = [START + timedelta(minutes=5 * i) for i in range(args.photos)]
    r.render(1000.0, START)
    _, t_render = timed(lambda: [r.render(float(v), t) for v, t in zip(regs, times, strict=True)])
    size = sum(len(r.render(float(v), START)[0]) for v in regs[:50]) / 50
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(tmp)
        n_put = min(args.photos, 300)
        _, t_put = timed(lambda: [store.put(photo_name("sim1", t), r.render(float(v), t)[0])
                                  for v, t in zip(regs[:n_put], times[:n_put], strict=True)])
    print(f"photos 320x240 JPEG (~{size / 1000:.1f} kB): rendered {args.photos / t_render:,.0f}/s; "
          f"rendered + put into a local store (fsync) {n_put / t_put:,.0f}/s")
    print(f"  target: >= 200 photos/s rendered -> {'met' if args.photos / t_render >= 200 else 'MISSED'}")


if __name__ == "__main__":
    main()
