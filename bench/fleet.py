"""Benchmark: many meters on PostgreSQL, and re-processing on Dask — each beside its peer, in one run.

Part 1, ingest. ``--meters`` simulated meters each post one reading a minute (10,000 meters = 167 readings/s),
open loop: reading i is due at ``start + i / rate`` and its latency is measured from that due time to the end of its
commit (queueing included), through ``ingest_readings`` (the validation and transaction every HTTP/MQTT post runs)
on ``--connections`` connections, against a throw-away PostgreSQL server (initdb + pg_ctl, as the tests start it).
1 % of the posts are delivered twice. Run twice, side by side: with the per-meter locks of now, and with the
former single advisory lock every write transaction took (``storage_postgres`` before issue 19); then a third
time end to end, each reading one HTTP POST to ``smartmeter serve`` (its own process, ``web.db_connections`` =
``--connections``; as many client threads with a keep-alive httpx connection each, latency to the answer).
Afterwards:
readings stored = readings sent (nothing lost), none twice, every second delivery counted a duplicate.
Target (issue 19): 167 readings/s sustained for 10 minutes with p99 <= 100 ms; ``--seconds`` sets the length.

Part 2, re-processing. ``--photos`` photos of 4 meters read once by the worker into SQLite, then
``reprocess`` with a Dask LocalCluster of 1 and of 2 worker processes (cluster start-up not counted), photos/s
each and the ratio (target >= 1.7x; it cannot exceed the free cores: this script prints how many there are).

Usage: ``python bench/fleet.py [--meters 10000] [--seconds 60] [--connections 8] [--photos 96]``
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from local_servers import clean_env, free_port, smartmeter_serve  # noqa: E402

from smartmeter.server import storage_postgres  # noqa: E402
from smartmeter.server.database import Database, open_database  # noqa: E402
from smartmeter.server.ingest import ingest_readings  # noqa: E402
from smartmeter.settings import Settings  # noqa: E402
from smartmeter.types import Reading  # noqa: E402

T0 = datetime(2025, 6, 1, tzinfo=UTC)
TOKEN = "bench-token-0123456789"


class GlobalLock(storage_postgres.PostgresDatabase):
    """The PostgreSQL backend as it was: every outermost transaction took one advisory lock."""

    def _begin(self) -> None:
        super()._begin()
        self._conn.execute(f"SELECT pg_advisory_xact_lock({storage_postgres.MIGRATE_LOCK})")


@contextmanager
def postgres() -> Iterator[str]:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        sys.exit("PostgreSQL server binaries are not installed (apt-get install postgresql)")
    bindir = found[-1].parent
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    work = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    work.chmod(0o777)
    port = free_port()
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(work / "data"), "-U", "smartmeter", "--auth=trust",
                    "-E", "UTF8"], check=True, capture_output=True)
    opts = f"-p {port} -k {work} -c listen_addresses=127.0.0.1 -c max_connections=100"
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(work / "data"), "-o", opts, "-l", str(work / "log"),
                    "-w", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://smartmeter@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(work / "data"), "-m", "fast", "stop"],
                       capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def fresh(base: str, name: str) -> str:
    import psycopg

    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = f"{base}/{name}"
    open_database(url).close()
    return url


def ingest_run(url: str, meters: int, seconds: float, connections: int, old_lock: bool) -> dict[str, float]:
    rate = meters / 60.0
    total = int(rate * seconds)
    settings = Settings()
    local = threading.local()
    opened: list[Database] = []
    lock = threading.Lock()
    latencies: list[float] = []
    accepted = duplicates = 0

    def conn() -> Database:
        if not hasattr(local, "db"):
            local.db = open_database(url, migrate=False)
            if old_lock:
                local.db.__class__ = GlobalLock
            with lock:
                opened.append(local.db)
        return local.db  # type: ignore[no-any-return]

    def post(i: int, due: float) -> None:
        nonlocal accepted, duplicates
        meter, minute = f"m{i % meters:05d}", i // meters
        r = Reading(meter, T0 + timedelta(minutes=minute), 1000.0 + 0.01 * minute + (i % meters), "bench")
        rep = ingest_readings(conn(), settings, [r], now=T0 + timedelta(days=1))
        if i % 100 == 7:  # duplicate delivery
            rep = ingest_readings(conn(), settings, [r], now=T0 + timedelta(days=1), report=rep)
        done = time.perf_counter()
        with lock:
            latencies.append(done - due)
            accepted += rep.accepted
            duplicates += rep.duplicates

    with ThreadPoolExecutor(connections) as pool:
        for _ in range(connections):
            pool.submit(conn)
        elapsed = paced(pool, total, rate, post)
    check = open_database(url, migrate=False)
    stored, distinct = check.query("SELECT COUNT(*), COUNT(DISTINCT (meter_id, ts_ms)) FROM readings")[0]
    check.close()
    for d in opened:
        d.close()
    latencies.sort()
    return {"sent": total, "rate": total / elapsed, "p50": latencies[len(latencies) // 2] * 1000,
            "p99": latencies[int(len(latencies) * 0.99)] * 1000, "max": latencies[-1] * 1000,
            "accepted": accepted, "stored": int(stored), "distinct": int(distinct), "duplicates": duplicates,
            "expected_duplicates": sum(1 for i in range(total) if i % 100 == 7)}


def paced(pool: ThreadPoolExecutor, total: int, rate: float, work: Callable[[int, float], None]) -> float:
    """Open loop: ``work(i, due)`` is handed to ``pool`` at its due time ``start + i / rate`` (never later because
    an earlier one is slow: each measures its latency from ``due``); returns the seconds until all had finished."""
    start = time.perf_counter()
    for i in range(total):
        due = start + i / rate
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        pool.submit(work, i, due)
    pool.shutdown(wait=True)
    return time.perf_counter() - start


def http_run(url: str, meters: int, seconds: float, connections: int) -> dict[str, float]:
    """The same posts as ``ingest_run``, each one HTTP POST /api/meters/{id}/readings to ``smartmeter serve``,
    from ``connections`` client threads with one keep-alive connection each."""
    import httpx

    with open_database(url, migrate=False) as db:
        db.executemany("INSERT INTO meters (id, name, created_ms) VALUES (?, '', 0)",
                       [(f"m{i:05d}",) for i in range(meters)])
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    port = free_port()
    rate, total = meters / 60.0, int(meters / 60.0 * seconds)
    local = threading.local()
    lock = threading.Lock()
    lat: list[float] = []
    codes: dict[int, int] = {}
    counts = {"accepted": 0, "duplicates": 0}
    clients: list[httpx.Client] = []

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                        headers={"Authorization": f"Bearer {TOKEN}"})
            with lock:
                clients.append(local.client)
        return local.client  # type: ignore[no-any-return]

    def post(i: int, due: float) -> None:
        meter, minute = f"m{i % meters:05d}", i // meters
        body = {"timestamp": (T0 + timedelta(minutes=minute)).isoformat(),
                "contatore": 1000.0 + 0.01 * minute + (i % meters)}
        for _ in range(2 if i % 100 == 7 else 1):  # 1 %: delivered twice
            r = client().post(f"/api/meters/{meter}/readings", json=body)
            with lock:
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
                if r.status_code == 201:
                    counts["accepted"] += r.json()["accepted"]
                    counts["duplicates"] += r.json()["duplicates"]
        done = time.perf_counter()
        with lock:
            lat.append(done - due)

    cfg = work / "serve.yaml"
    cfg.write_text(f'database: {{url: "{url}"}}\napi: {{host: 127.0.0.1, port: {port}}}\n'
                   f"web: {{db_connections: {connections}}}\n")
    env = clean_env(SMARTMETER_API_TOKEN=TOKEN)
    with smartmeter_serve(cfg, port, env, work / "serve.log"), ThreadPoolExecutor(connections) as pool:
        for _ in range(connections):
            pool.submit(client)
        elapsed = paced(pool, total, rate, post)
        for c in clients:
            c.close()
    shutil.rmtree(work, ignore_errors=True)
    with open_database(url, migrate=False) as db:
        stored, distinct = db.query("SELECT COUNT(*), COUNT(DISTINCT (meter_id, ts_ms)) FROM readings")[0]
    lat.sort()
    return {"sent": total, "rate": total / elapsed, "p50": lat[len(lat) // 2] * 1000,
            "p99": lat[int(len(lat) * 0.99)] * 1000, "max": lat[-1] * 1000, "accepted": counts["accepted"],
            "stored": int(stored), "distinct": int(distinct), "duplicates": counts["duplicates"],
            "expected_duplicates": sum(1 for i in range(total) if i % 100 == 7),
            "not_201": sum(n for c, n in codes.items() if c != 201)}


def part_ingest(args: argparse.Namespace) -> None:
    print(f"== ingest: {args.meters} meters x 1 reading/min = {args.meters / 60:.0f} readings/s for "
          f"{args.seconds:g} s (target: 600 s), {args.connections} connections, PostgreSQL")
    with postgres() as base:
        rows = {}
        for name, old in (("per-meter locks (now)", False), ("one global lock (before)", True)):
            if args.http_only:
                continue
            rows[name] = ingest_run(fresh(base, "b" + str(int(old))), args.meters, args.seconds, args.connections, old)
        if not args.no_http:
            rows["HTTP, smartmeter serve"] = http_run(fresh(base, "bh"), args.meters, args.seconds, args.connections)
    print(f"{'':26} {'sent':>7} {'rate/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'stored':>7} "
          f"{'twice':>6} {'dups':>9}")
    for name, r in rows.items():
        dups = f"{r['duplicates']:.0f}/{r['expected_duplicates']:.0f}"
        print(f"{name:26} {r['sent']:7.0f} {r['rate']:7.1f} {r['p50']:7.1f} {r['p99']:7.1f} {r['max']:7.1f} "
              f"{r['stored']:7.0f} {r['stored'] - r['distinct']:6.0f} {dups:>9}")
        assert r["stored"] == r["sent"] == r["accepted"], "readings lost"
        assert r["stored"] == r["distinct"] and r["duplicates"] == r["expected_duplicates"], "readings twice"
        assert not r.get("not_201"), f"{r['not_201']} posts were not answered 201"
    print("latency: from the time a post was due to its commit (queueing included); HTTP: to the answer")


def part_reprocess(args: argparse.Namespace) -> None:
    from test_fleet import noisy

    from smartmeter.server.reprocess import reprocess
    from smartmeter.server.reprocess_dask import dask_reads
    from smartmeter.server.worker import Worker
    from smartmeter.settings import parse_settings
    from smartmeter.store.local import LocalStore
    from smartmeter.types import photo_name

    photos = Path(__file__).resolve().parents[1] / "tests" / "resources" / "photos"
    work = Path(tempfile.mkdtemp(prefix="bench-reprocess-"))
    meters = [f"r{i}" for i in range(4)]
    settings = parse_settings(f"""
store: {{local: {{root: {work / 'images'}}}}}
database: {{url: "sqlite:///{work / 'db.sqlite'}"}}
meters: [{', '.join(f'{{id: {m}, profile: {photos / "meter.yaml"}}}' for m in meters)}]
worker: {{batch_size: 24, read_threads: 1}}
""")
    store = LocalStore(work / "images")
    for i in range(args.photos):
        store.put(photo_name(meters[i % 4], T0 + timedelta(minutes=10 * (i // 4))), noisy(i))
    with open_database(settings.database.url) as db:
        Worker(settings, db, store).run_once()
    print(f"\n== reprocess: {args.photos} photos, 4 meters, chunks of 24; CPUs usable by this process: "
          f"{len(os.sched_getaffinity(0))}, load average {os.getloadavg()[0]:.1f}; each timed pass follows an "
          "untimed one on the same cluster (model loading and imports not counted)")
    with open_database(settings.database.url) as db:
        start = time.perf_counter()
        stats = reprocess(db, settings, store)
        before = stats.photos / (time.perf_counter() - start)
    print(f"in one process (reprocess before issue 19): {before:6.1f} photos/s")
    rates: dict[int, float] = {}
    for workers in (1, 2):
        with dask_reads(settings, None, workers=workers) as reads, open_database(settings.database.url) as db:
            reprocess(db, settings, store, reads=reads)  # warm-up: each worker loads the model
            start = time.perf_counter()
            stats = reprocess(db, settings, store, reads=reads)
            rates[workers] = stats.photos / (time.perf_counter() - start)
        print(f"Dask LocalCluster, {workers} worker(s):     {rates[workers]:6.1f} photos/s "
              f"({rates[workers] / workers:.1f} per worker)")
    print(f"speed-up 1 -> 2 workers: {rates[2] / rates[1]:.2f}x (target >= 1.7x); load average now "
          f"{os.getloadavg()[0]:.1f}")
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--meters", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--photos", type=int, default=480)
    ap.add_argument("--skip", choices=["ingest", "reprocess"], default=None)
    ap.add_argument("--no-http", action="store_true", help="Skip the run through smartmeter serve.")
    ap.add_argument("--http-only", action="store_true", help="Only the run through smartmeter serve.")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    if args.skip != "ingest":
        part_ingest(args)
    if args.skip != "reprocess":
        part_reprocess(args)


if __name__ == "__main__":
    main()
