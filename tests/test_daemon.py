from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from pathlib import Path

from smartmeter.raspi.camera import Camera
from smartmeter.raspi.daemon import CameraDaemon, CaptureLoop, next_slot
from smartmeter.raspi.spool import Spool
from smartmeter.raspi.uploader import Uploader
from smartmeter.store.local import LocalStore


class FakeCamera(Camera):
    """Camera hardware cannot run here: a fake that fails on request."""

    def __init__(self, fail_on: set[int] | None = None) -> None:
        self.n = 0
        self.fail_on = fail_on or set()
        self.closed = False

    def capture(self, ts: datetime) -> bytes:
        self.n += 1
        if self.n in self.fail_on:
            raise RuntimeError("camera timeout")
        return b"\xff\xd8jpeg%d" % self.n

    def close(self) -> None:
        self.closed = True


def test_next_slot_is_wall_clock_aligned() -> None:
    assert next_slot(119.0, 60) == 120
    assert next_slot(120.0, 60) == 180


def test_capture_failure_does_not_stop_the_loop(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10**6)
    clock = [1_700_000_000.0]
    loop = CaptureLoop(FakeCamera(fail_on={2}), spool, "m1", 60, clock=lambda: clock[0])
    for i in range(4):
        loop.capture_once(clock[0] + 60 * i)
    assert loop.stats.captured == 3 and loop.stats.failures == 1
    assert len(spool.entries()) == 3


def test_missed_slots_are_skipped_not_burst(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10**6)
    t = [1_000_000.0]
    stop = threading.Event()

    def clock() -> float:
        return t[0]

    loop = CaptureLoop(FakeCamera(), spool, "m1", 10, clock=clock, stop=stop)
    real_wait = stop.wait
    calls = [0]

    def fake_wait(timeout: float | None = None) -> bool:
        calls[0] += 1
        t[0] += (timeout or 0) + (35 if calls[0] == 2 else 0)  # the machine sleeps 35 s once
        if calls[0] >= 5:
            stop.set()
        return real_wait(0)

    stop.wait = fake_wait  # type: ignore[method-assign]
    loop.run()
    assert loop.stats.skipped_slots >= 3
    assert loop.stats.captured == 3  # one photo per attended slot, no burst


def test_daemon_runs_and_stops_cleanly(tmp_path: Path) -> None:
    spool, store = Spool(tmp_path / "spool", 10**6), LocalStore(tmp_path / "store")
    cam = FakeCamera()
    capture = CaptureLoop(cam, spool, "m1", 0.05)
    daemon = CameraDaemon(capture, Uploader(spool, store, idle_s=0.02), tmp_path / "health.json", heartbeat_s=0.05)
    th = threading.Thread(target=daemon.run, kwargs={"install_signals": False})
    th.start()
    deadline = time.time() + 10
    while time.time() < deadline and len(store.list_new().refs) < 3:
        time.sleep(0.05)
    daemon.stop()
    th.join(10)
    assert not th.is_alive() and cam.closed
    assert len(store.list_new().refs) >= 3
    health = json.loads((tmp_path / "health.json").read_text())
    assert health["capture"]["captured"] >= 3 and "spool_photos" in health
