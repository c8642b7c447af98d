"""Benchmark: CSV import into SQLite, readings/s — ours (parse + validate + store) beside plain peers.

Peers, same file, fresh database each:
- ``sqlite3 .import``: the sqlite3 command-line tool loading the CSV straight into a table (no parsing of times,
  no validation, no conversion) — the floor of what "loading a CSV into SQLite" costs;
- ``csv + executemany``: Python's csv module and one executemany into an equivalent table (no validation).

Usage: ``python bench/ingest.py [--rows 200000]``. Target: ours >= 20,000 readings/s.
"""

from __future__ import annotations

import argparse
import csv
import logging
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from smartmeter.server.csv_import import import_csv  # noqa: E402
from smartmeter.server.storage import open_database  # noqa: E402
from smartmeter.settings import Settings  # noqa: E402

log = logging.getLogger(__name__)


def make_csv(path: Path, rows: int) -> None:
    """A plausible one-minute series: base load with a daily bump, register integrating the power."""
    t0 = datetime(2014, 1, 1, tzinfo=UTC)
    reg = 10_000.0
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "contatore", "potenza"])
        for i in range(rows):
            kw = 0.2 + (1.5 if (i // 60) % 24 in (7, 19, 20) else 0.0) + (i % 7) * 0.01
            w.writerow([(t0 + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ"), f"{reg:.3f}", f"{kw:.3f}"])
            reg += kw / 60


def ours(path: Path, work: Path) -> tuple[float, int]:
    db = open_database(f"sqlite:///{work}/ours.db")
    try:
        start = time.perf_counter()
        res = import_csv(db, Settings(), path, "bench", progress=False)
        seconds = time.perf_counter() - start
        assert not res.ingest.rejected, res.ingest.rejected[:3]
        return seconds, db.count_readings("bench")
    finally:
        db.close()


def sqlite_cli(path: Path, work: Path) -> tuple[float, int] | None:
    exe = shutil.which("sqlite3")
    if exe is None:
        return None
    db = work / "cli.db"
    script = (f"PRAGMA journal_mode=WAL;\nCREATE TABLE r (timestamp TEXT, contatore REAL, potenza REAL);\n"
              f".import --csv --skip 1 {path} r\n")
    start = time.perf_counter()
    subprocess.run([exe, str(db)], input=script, text=True, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    n = sqlite3.connect(db).execute("SELECT COUNT(*) FROM r").fetchone()[0]
    return seconds, n


def python_executemany(path: Path, work: Path) -> tuple[float, int]:
    conn = sqlite3.connect(work / "plain.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE r (meter_id TEXT, ts TEXT, value_kwh REAL, power_w REAL, source TEXT, "
                 "PRIMARY KEY (meter_id, ts, source))")
    start = time.perf_counter()
    with path.open(newline="") as f:
        rows = csv.reader(f)
        next(rows)
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO r VALUES (?, ?, ?, ?, ?)",
                         (("bench", t, float(v), float(p) * 1000, "csv") for t, v, p in rows))
        conn.execute("COMMIT")
    seconds = time.perf_counter() - start
    n = conn.execute("SELECT COUNT(*) FROM r").fetchone()[0]
    conn.close()
    return seconds, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = work / "readings.csv"
        make_csv(path, args.rows)
        print(f"CSV import into SQLite, {args.rows:,} rows ({path.stat().st_size / 1e6:.1f} MB)")
        results = {
            "smartmeter import (parse+validate+store)": ours(path, work),
            "sqlite3 CLI .import (no validation)": sqlite_cli(path, work),
            "csv + executemany (no validation)": python_executemany(path, work),
        }
        for name, res in results.items():
            if res is None:
                print(f"  {name:44s} skipped (sqlite3 CLI not installed)")
                continue
            seconds, n = res
            print(f"  {name:44s} {n / seconds:>12,.0f} readings/s  ({n:,} rows in {seconds:.2f} s)")
        s, n = results["smartmeter import (parse+validate+store)"]  # type: ignore[misc]
        verdict = "meets" if n / s >= 20_000 else "MISSES"
        print(f"target >= 20,000 readings/s: ours {verdict} it")


if __name__ == "__main__":
    main()
