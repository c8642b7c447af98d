"""Benchmark: one month's invoice of a meter with 1-minute readings (44,640), as `alerts run` computes it for bill
rules and the Home Assistant cost every 5 minutes: from the readings as arrays (``invoice_for`` now) beside the
first version's path (every reading built as a ``Reading`` object, ``db.readings`` + ``compute``), same database.

Usage: ``python bench/invoice.py [--days 31] [--repeat 5]``. Both must give the same total.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from smartmeter.server.database import open_database  # noqa: E402
from smartmeter.server.invoice import compute, invoice_for  # noqa: E402
from smartmeter.settings import Settings  # noqa: E402
from smartmeter.types import Reading  # noqa: E402

TOU = {"name": "tou", "start": "2020-01-01", "energy": [{"name": "peak", "tiers": [{"price": 0.3}]},
                                                       {"name": "off", "tiers": [{"max_kwh": 100, "price": 0.18},
                                                                                 {"price": 0.22}]}],
       "weekday_schedule": [1] * 8 + [0] * 11 + [1] * 5, "weekend_schedule": [1] * 24,
       "fixed": [{"amount": 9.5, "per": "month"}], "taxes": [{"name": "excise", "per_kwh": 0.0227}],
       "vat_percent": 10}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--days", type=int, default=31)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    s = Settings.model_validate({"meters": [{"id": "m1", "timezone": "Europe/Rome"}], "billing": {"tariffs": [TOU]}})
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(f"sqlite:///{tmp}/b.db")
        db.register_meter("m1")
        t0 = datetime(2026, 9, 30, 21, tzinfo=UTC)
        db.insert_readings([Reading("m1", t0 + timedelta(minutes=i), round(1000 + i * 0.01, 3), "csv:b")
                            for i in range((args.days + 1) * 1440)])

        def objects() -> object:
            start, end = datetime(2026, 9, 30, 22, tzinfo=UTC), datetime(2026, 10, 31, 23, tzinfo=UTC)
            rows = list(db.readings("m1", start, end + timedelta(milliseconds=1)))
            rows += [r for r in (db.last_reading("m1", start), db.first_reading_after("m1", end)) if r]
            return compute(s, "m1", "2026-10", rows)

        def arrays() -> object:
            return invoice_for(db, s, "m1", "2026-10")

        out = {}
        for name, fn in (("Reading objects (first version)", objects), ("arrays (now)", arrays)):
            times, inv = [], None
            for _ in range(args.repeat):
                a = time.perf_counter()
                inv = fn()
                times.append(time.perf_counter() - a)
            out[name] = (statistics.median(times), min(times), inv)
        db.close()
    print(f"invoice of 2026-10 (Europe/Rome, 745 h), 1-minute readings, median / best of {args.repeat}:")
    for name, (med, best, inv) in out.items():
        print(f"  {name:<34} {med:6.3f} s / {best:6.3f} s   total {inv.total} ({inv.readings} readings)")  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
