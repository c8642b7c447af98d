"""Load on the HTTP API with a year of 1-minute readings: the previous code and this tree, side by side, in one run.

A bounded open-loop generator: requests are scheduled at ``--rate`` per second for ``--seconds`` and each latency
is measured from its scheduled time, so a server that falls behind shows its queue (no coordinated omission).
Non-200 answers and transport errors are counted. The generator is cheap (raw asyncio HTTP/1.1 on a few keep-alive
connections, uvloop when installed) so that on a small machine it leaves the CPU to the server it measures.
Scenarios: the latest reading (an ``--old`` tree without that endpoint is asked its nearest, the last hour of
readings), one day's power on a random day of the year (without the endpoint: the day's readings, 170 KB, the
client derives power; with it: ``/power?step=15m``), and one request for the whole history without bounds (old:
every row; new: one page). Then ``--sse-clients`` live streams for ``--sse-seconds`` at a 5 s interval: events
received against the intervals expected, gaps in the event ids, and the server's RSS before and after.

Both servers run ``smartmeter serve`` in their own process (the old one from ``git archive REV``) on a copy of the
same SQLite file; each scenario runs on the old one, then at once on the new one (a busy machine changes both
alike). Run: ``.venv/bin/python bench/api.py`` (about 5 minutes); ``--old HEAD~3 --sse-clients 0`` compares
with a recent commit in under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from local_servers import clean_env, smartmeter_serve  # noqa: E402

OLD_REV = "b52274ad6344b7d83c3d58a16dceb61d4f10e5be"  # the tree before issue 17's first commit
TOKEN = "bench-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T = TypeVar("T")

MAKE_DB = """
import sys
from datetime import UTC, datetime, timedelta
import numpy as np
from smartmeter.server.database import open_database
from smartmeter.types import Reading
url, n = sys.argv[1], int(sys.argv[2])
end = datetime.now(UTC).replace(second=0, microsecond=0)
start = end - timedelta(minutes=n - 1)
rng = np.random.default_rng(17)
minute = np.arange(n)
watts = 250 + 400 * (1 + np.sin(2 * np.pi * (minute % 1440) / 1440 - 2)) + rng.gamma(1.5, 120, n)
kwh = 12000 + np.cumsum(watts) / 60000
with open_database(url) as db:
    db.register_meter("m")
    for lo in range(0, n, 50000):
        db.insert_readings([Reading("m", start + timedelta(minutes=int(i)), round(float(kwh[i]), 4), "csv:bench",
                                    power_w=round(float(watts[i]), 1)) for i in range(lo, min(n, lo + 50000))])
print(start.isoformat())
"""


def extract(rev: str, into: Path) -> Path:
    """The tree of ``rev`` as files (no checkout, no change to the repository)."""
    data = subprocess.run(["git", "-C", str(REPO), "archive", rev], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="tar")
    return into


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def server(tree: Path, db: Path, port: int, extra: str = "") -> Iterator[subprocess.Popen[bytes]]:
    """``smartmeter serve`` of ``tree`` on ``db`` (its own process, the code of ``tree`` only)."""
    cfg = db.parent / f"serve-{port}.yaml"
    cfg.write_text(f"database:\n  url: sqlite:///{db}\napi:\n  host: 127.0.0.1\n  port: {port}\n{extra}")
    env = clean_env(PYTHONPATH=str(tree), SMARTMETER_API_TOKEN=TOKEN)
    with smartmeter_serve(cfg, port, env, db.parent / f"serve-{port}.log", cwd=db.parent) as proc:
        yield proc


async def _answer(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 answer (headers, then Content-Length bytes of body); returns its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    at = head.lower().find(b"\r\ncontent-length:")
    if at < 0:
        raise ConnectionError("answer without Content-Length")
    await reader.readexactly(int(head[at + 17:head.index(b"\r\n", at + 2)]))
    return status


async def load(port: int, path: Callable[[], str], rate: float, seconds: float,
               connections: int = 16) -> dict[str, Any]:
    """``rate`` GET requests/s for ``seconds``, open loop: request i is due at ``t0 + i / rate`` and its latency
    runs from then to the last byte of its answer, so time spent queued behind a slow server counts. A cheap
    client, so that it leaves the CPU to the server: ``connections`` keep-alive HTTP/1.1 connections on raw
    asyncio streams, one request at a time each, the request bytes built by hand and the answer's body read by
    its Content-Length. Bounded: a request not answered 30 s after the last one was due counts as an error
    (unanswered), as does a status other than 200 or a broken connection."""
    lat: list[float] = []
    errors = 0
    n = int(rate * seconds)
    due: asyncio.Queue[float | None] = asyncio.Queue()

    def request() -> bytes:
        return (f"GET {path()} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n"
                "\r\n").encode()

    async def connection() -> None:
        nonlocal errors
        streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        streams = await asyncio.open_connection("127.0.0.1", port)
        streams[1].write(request())  # warm: the connection and a database handle
        await _answer(streams[0])
        while (when := await due.get()) is not None:
            ok = False
            try:
                if streams is None:  # the last one broke: a new connection
                    streams = await asyncio.open_connection("127.0.0.1", port)
                streams[1].write(request())
                ok = await _answer(streams[0]) == 200
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                if streams is not None:
                    streams[1].close()
                streams = None
            lat.append(time.perf_counter() - when)
            errors += not ok
        if streams is not None:
            streams[1].close()

    workers = [asyncio.ensure_future(connection()) for _ in range(connections)]
    await asyncio.sleep(0.5)  # connected and warm
    t0 = time.perf_counter()  # not loop.time(): uvloop's counts whole milliseconds
    for i in range(n):
        when = t0 + i / rate
        if when > time.perf_counter():
            await asyncio.sleep(when - time.perf_counter())
        due.put_nowait(when)
    for _ in workers:
        due.put_nowait(None)
    _, late = await asyncio.wait(workers, timeout=30)
    for t in late:
        t.cancel()
    took = time.perf_counter() - t0
    unanswered = n - len(lat)
    ms = np.array(lat or [float("nan")]) * 1000
    return {"n": n, "rate": len(lat) / took, "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99)) if not unanswered else float("inf"), "errors": errors + unanswered}


async def sse(base: str, clients: int, seconds: float, interval: int = 5) -> dict[str, Any]:
    counts: list[int] = []
    gaps = 0

    async def follow(client: httpx.AsyncClient) -> None:
        nonlocal gaps
        ids: list[int] = []
        try:
            async with asyncio.timeout(seconds):
                async with client.stream("GET", "/api/stream", params={"meter": "m", "interval": interval}) as r:
                    async for line in r.aiter_lines():
                        if line.startswith("id: "):
                            ids.append(int(line[4:]))
        except TimeoutError:
            pass
        gaps += sum(1 for a, b in zip(ids, ids[1:], strict=False) if b - a != interval * 1000)
        counts.append(len(ids))

    limits = httpx.Limits(max_connections=clients + 10)
    async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=seconds + 30, limits=limits) as client:
        await asyncio.gather(*(follow(client) for _ in range(clients)))
    expected = int(seconds // interval)
    return {"clients": clients, "expected": expected, "min": min(counts), "max": max(counts), "gaps": gaps,
            "missed": sum(max(0, expected - 1 - c) for c in counts)}  # the first interval may end after the cut


def run(main: Coroutine[Any, Any, T]) -> T:
    """``main`` on a fresh event loop (uvloop's when installed: the generator's own cost is less)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def row(name: str, old: dict[str, Any], new: dict[str, Any]) -> str:
    def cell(r: dict[str, Any]) -> str:
        return f"p50 {r['p50']:7.1f} p99 {r['p99']:7.1f} ms {r['rate']:5.0f}/s err {r['errors']:4d}"
    return f"{name:<30} | {cell(old):>40} | {cell(new):>40}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--sse-clients", type=int, default=100)
    ap.add_argument("--sse-seconds", type=float, default=60.0)
    ap.add_argument("--days", type=int, default=365, help="days of 1-minute readings (a year by default)")
    ap.add_argument("--pool", type=int, default=None, help="web.db_connections of the new server (default: its "
                                                              "setting's default)")
    ap.add_argument("--old", default=OLD_REV, help="revision of the previous code")
    ap.add_argument("--connections", type=int, default=16, help="keep-alive connections of the load generator")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-api-"))
    try:
        old_tree = extract(args.old, work / "old")
        db_old, db_new = work / "old.db", work / "new.db"
        t = time.monotonic()
        first = subprocess.run([sys.executable, "-c", MAKE_DB, f"sqlite:///{db_old}", str(args.days * 1440)],
                               check=True, capture_output=True, text=True, cwd=work,  # not this tree: the old one
                               env=dict(os.environ, PYTHONPATH=str(old_tree)))
        start = datetime.fromisoformat(first.stdout.strip())
        shutil.copy(db_old, db_new)
        print(f"{args.days * 1440:,} readings (1 minute, {args.days} days) in {time.monotonic() - t:.0f} s; load "
              f"{args.rate:g} req/s for {args.seconds:g} s per scenario; load avg {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} CPUs")

        def day() -> tuple[str, str]:
            d = start + timedelta(days=random.randrange(1, max(2, args.days - 1)))
            return d.strftime("%Y-%m-%dT00:00:00Z"), (d + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z")

        def last_hour() -> str:
            return (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

        scenarios: dict[str, tuple[Callable[[], str], Callable[[], str]]] = {
            "latest reading": (lambda: "/api/meters/m/readings?start=" + last_hour(),
                               lambda: "/api/meters/m/latest"),
            "one-day power": (lambda: "/api/meters/m/readings?start={}&end={}".format(*day()),
                              lambda: "/api/meters/m/power?step=15m&start={}&end={}".format(*day())),
        }
        results: dict[str, dict[str, Any]] = {"old": {}, "new": {}}
        extra: dict[str, dict[str, Any]] = {"old": {}, "new": {}}
        pool = f"web:\n  db_connections: {args.pool}\n" if args.pool else ""
        ports = {"old": 18171, "new": 18172}
        with server(old_tree, db_old, ports["old"]) as old_proc, server(REPO, db_new, ports["new"], pool) as new_proc:
            procs = {"old": old_proc, "new": new_proc}
            # a previous tree that has the latest-reading and power endpoints is asked the same as this one
            same = httpx.get(f"http://127.0.0.1:{ports['old']}/api/meters/m/latest", headers=AUTH).status_code == 200
            for side, proc in procs.items():
                extra[side]["rss0"] = rss_mb(proc.pid)
            for name, (old_path, new_path) in scenarios.items():  # old and new one after the other, per scenario
                for side in ("old", "new"):
                    path = old_path if side == "old" and not same else new_path
                    results[side][name] = run(load(ports[side], path, args.rate, args.seconds, args.connections))
            for side, proc in procs.items():
                base = f"http://127.0.0.1:{ports[side]}"
                t = time.monotonic()
                r = httpx.get(base + "/api/meters/m/readings", headers=AUTH, timeout=300)
                extra[side]["full"] = (time.monotonic() - t, len(r.content) / 1e6, r.json()["count"],
                                       rss_mb(proc.pid))
            if args.sse_clients:
                before = rss_mb(new_proc.pid)
                s = run(sse(f"http://127.0.0.1:{ports['new']}", args.sse_clients, args.sse_seconds))
                extra["new"]["sse"] = (s, before, rss_mb(new_proc.pid))
        print(f"\n{'':<30} | {'before (' + args.old[:7] + ')':>40} | {'now':>40}")
        for name in scenarios:
            print(row(name, results["old"][name], results["new"][name]))
        for side in ("old", "new"):
            took, mb, count, rss = extra[side]["full"]
            print(f"GET /readings, no bounds, {side}: {count:,} readings, {mb:.1f} MB in {took:.2f} s; server RSS "
                  f"{extra[side]['rss0']:.0f} -> {rss:.0f} MB")
        if "sse" in extra["new"]:
            s, before, after = extra["new"]["sse"]
            print(textwrap.dedent(f"""\
                SSE (now; the old API has none): {s['clients']} clients x {args.sse_seconds:g} s at 5 s: events per
                client {s['min']}..{s['max']} of {s['expected']} intervals, missed {s['missed']}, id gaps
                {s['gaps']}; server RSS {before:.0f} -> {after:.0f} MB"""))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
