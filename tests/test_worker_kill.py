"""The worker process killed (SIGKILL: no handler, no rollback code runs) in the middle of its photos, then started
again: each page is one SQLite transaction with its cursor, so the kill leaves whole pages or nothing, and the
restart reads every remaining photo exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from smartmeter.server.database import open_database
from smartmeter.server.worker import Worker
from smartmeter.settings import load_settings
from smartmeter.store.local import LocalStore
from smartmeter.types import photo_name

PHOTOS = Path(__file__).parent / "resources" / "photos"
T0 = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)
N, BATCH = 96, 8


def noisy(i: int) -> bytes:
    img = cv2.imread(str(PHOTOS / "upright.jpg")).astype(np.int16)
    img += np.random.default_rng(i).integers(-2, 3, img.shape, dtype=np.int16)
    ok, buf = cv2.imencode(".jpg", np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return buf.tobytes()


def count(url: str, sql: str) -> int:
    db = open_database(url, migrate=False)
    try:
        return int(db.query(sql)[0][0])
    except Exception:  # noqa: BLE001 - the worker has not created its tables yet
        return 0
    finally:
        db.close()


@pytest.mark.fault("worker killed mid-batch", proves="photos lost: 0, readings twice: 0 (SIGKILL between commits "
                   "leaves whole pages; the restart reads the rest once)")
def test_worker_killed_mid_run_loses_nothing_and_reads_nothing_twice(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    cfg = tmp_path / "smartmeter.yaml"
    cfg.write_text(f"""
store: {{local: {{root: {tmp_path / 'images'}}}}}
database: {{url: "{url}"}}
meters: [{{id: meter, profile: {PHOTOS / 'meter.yaml'}}}]
worker: {{poll_interval_s: 0.05, batch_size: {BATCH}, read_threads: 1}}
""")
    store = LocalStore(tmp_path / "images")
    keys = [photo_name("meter", T0 + timedelta(minutes=10 * i)) for i in range(N)]
    for i, key in enumerate(keys):
        store.put(key, noisy(i))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTMETER_")}
    proc = subprocess.Popen([sys.executable, "-m", "smartmeter.cli", "-c", str(cfg), "worker"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while count(url, "SELECT COUNT(*) FROM worker_cursor") == 0:  # the first page is committed...
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the worker committed nothing in 60 s"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)  # ...and the worker is killed while it reads the next one
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    done = count(url, "SELECT COUNT(*) FROM photos")
    assert done % BATCH == 0 and 0 < done < N, f"{done} photo rows after the kill: not whole pages, or not mid-run"
    assert count(url, "SELECT COUNT(*) FROM readings") == done
    settings = load_settings(cfg)
    db = open_database(url)
    try:
        stats = Worker(settings, db, store).run_once()
        assert stats.listed == N - done and stats.read == N - done  # resumes after the last committed page
        readings = db.readings("meter")
        assert sorted(r.source for r in readings) == sorted(f"image:{k}" for k in keys)  # each photo once
        assert {r.value_kwh for r in readings} == {48127.3}
        assert Worker(settings, db, store).run_once().listed == 0
    finally:
        db.close()
