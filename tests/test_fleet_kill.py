"""Three ``smartmeter worker --fleet`` processes share six meters' photos on one PostgreSQL; one is killed with
SIGKILL (no handler, no rollback code runs) while it holds leased meters mid-batch. The other two read its photos
once its lease has expired: every photo is read exactly once, none is lost, each meter oldest photo first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import fresh_pg
from test_fleet import noisy

from smartmeter.server.database import open_database
from smartmeter.store.local import LocalStore
from smartmeter.types import photo_name

PHOTOS = Path(__file__).parent / "resources" / "photos"
T0 = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)
METERS = [f"fm{i}" for i in range(6)]
PER_METER, BATCH, LEASE_S = 16, 8, 3


def scalar(url: str, sql: str) -> int:
    db = open_database(url, migrate=False)
    try:
        return int(db.query(sql)[0][0] or 0)
    finally:
        db.close()


@pytest.mark.fault("worker killed mid-batch", proves="photos lost: 0, read twice: 0 (3 fleet workers on PostgreSQL, "
                   "one SIGKILLed holding leased meters: the others take them over after the lease)")
def test_fleet_worker_killed_mid_batch_loses_nothing(pg_server: str, tmp_path: Path) -> None:
    url = fresh_pg(pg_server)
    open_database(url).close()
    store = LocalStore(tmp_path / "images")
    keys = []
    for j, m in enumerate(METERS):
        for i in range(PER_METER):
            # listed out of capture order: the key's folder sorts the later half of each meter first
            key = f"{'a' if i >= PER_METER // 2 else 'b'}/{photo_name(m, T0 + timedelta(minutes=10 * i))}"
            store.put(key, noisy(100 * j + i))
            keys.append(key)
    cfg = tmp_path / "smartmeter.yaml"
    meters = ", ".join(f"{{id: {m}, profile: {PHOTOS / 'meter.yaml'}}}" for m in METERS)
    cfg.write_text(f"""
store: {{local: {{root: {tmp_path / 'images'}}}}}
database: {{url: "{url}"}}
meters: [{meters}]
worker: {{poll_interval_s: 0.1, batch_size: {BATCH}, read_threads: 1}}
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTMETER_")}

    def start(name: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "smartmeter.cli", "-c", str(cfg), "worker", "--fleet",
                                 "--lease-s", str(LEASE_S), "--worker-id", name, "--meters-per-claim", "2"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    procs = {name: start(name) for name in ("w0", "w1", "w2")}
    try:
        deadline = time.monotonic() + 90
        while not (scalar(url, "SELECT COUNT(*) FROM photos") > 0 and scalar(
                url, "SELECT COUNT(*) FROM fleet_leases WHERE worker = 'w0' AND token IS NOT NULL") > 0):
            for p in procs.values():
                assert p.poll() is None, p.stderr.read().decode() if p.stderr else ""
            assert time.monotonic() < deadline, "w0 never held a lease after a first page was committed"
            time.sleep(0.01)
        procs["w0"].send_signal(signal.SIGKILL)  # mid-batch: it holds meters and has not committed their page
        procs["w0"].wait(10)
        killed_at = time.monotonic()
        db = open_database(url, migrate=False)
        held = [str(m) for (m,) in db.query("SELECT meter_id FROM fleet_leases WHERE worker = 'w0'")]
        queued_then = int(db.query("SELECT COUNT(*) FROM fleet_queue")[0][0])
        db.close()
        assert held and queued_then > 0
        while scalar(url, "SELECT COUNT(*) FROM photos") < len(keys) or scalar(
                url, "SELECT COUNT(*) FROM fleet_queue") > 0:
            for name in ("w1", "w2"):
                assert procs[name].poll() is None, procs[name].stderr.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < killed_at + 120, "the survivors did not finish the photos in 120 s"
            time.sleep(0.1)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
    db = open_database(url, migrate=False)
    try:
        assert sorted(k for (k,) in db.query("SELECT photo_key FROM photos")) == sorted(keys)  # lost: 0
        rows = db.query("SELECT meter_id, ts_ms, source, created_ms FROM readings")
        assert sorted(s for _, _, s, _ in rows) == sorted(f"image:{k}" for k in keys)  # each photo once
        assert {r.value_kwh for m in METERS for r in db.readings(m)} == {48127.3}
        assert not db.query("SELECT 1 FROM fleet_leases WHERE worker = 'w0' AND lease_until_ms > 0 AND token "
                            "IS NOT NULL")  # w0's meters were taken over, and released
        for m in METERS:  # one meter's readings were stored oldest first: judged in time order
            created = [c for _, _, _, c in sorted(r for r in rows if r[0] == m)]
            assert created == sorted(created), f"{m}: readings stored out of capture order"
    finally:
        db.close()
