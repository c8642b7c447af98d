from __future__ import annotations

import json
import logging
import socket
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from smartmeter.cli import cli
from smartmeter.errors import ExternalToolError
from smartmeter.raspi.camera import Camera
from smartmeter.raspi.daemon import CameraDaemon, CaptureLoop, next_slot
from smartmeter.raspi.sdnotify import Notifier
from smartmeter.raspi.spool import Spool
from smartmeter.raspi.uploader import Uploader
from smartmeter.store.local import LocalStore


class FakeCamera(Camera):
    """Camera hardware cannot run here: a fake that fails on request (the picamera2 stand-in is in test_camera)."""

    def __init__(self, fail_on: set[int] | None = None, fail_all: bool = False, delay_s: float = 0.0) -> None:
        self.n = 0
        self.fail_on, self.fail_all, self.delay_s = fail_on or set(), fail_all, delay_s
        self.closed = False

    def capture(self, ts: datetime) -> bytes:
        self.n += 1
        time.sleep(self.delay_s)
        if self.fail_all or self.n in self.fail_on:
            raise RuntimeError("camera timeout")
        return b"\xff\xd8jpeg%d" % self.n

    def close(self) -> None:
        self.closed = True


def test_next_slot_is_wall_clock_aligned() -> None:
    assert next_slot(119.0, 60) == 120
    assert next_slot(120.0, 60) == 180


@pytest.mark.fault("camera failure", proves="a failed shot is counted and the daemon goes on; the other photos are "
                   "spooled")
def test_capture_failure_does_not_stop_the_loop(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10**6)
    clock = [1_700_000_000.0]
    loop = CaptureLoop(FakeCamera(fail_on={2}), spool, "m1", 60, clock=lambda: clock[0])
    for i in range(4):
        loop.capture_once(clock[0] + 60 * i)
    assert loop.stats.captured == 3 and loop.stats.failures == 1 and loop.stats.consecutive_failures == 0
    assert len(spool.entries()) == 3 and loop.fatal is None


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


def test_never_two_captures_at_once(tmp_path: Path) -> None:
    loop = CaptureLoop(FakeCamera(delay_s=0.3), Spool(tmp_path, 10**6), "m1", 60)
    threads = [threading.Thread(target=loop.capture_once, args=(1_700_000_000.0 + 60 * i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert loop.stats.captured == 1 and loop.stats.skipped_slots == 1


def test_no_capture_before_the_clock_is_synchronised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    synced = threading.Event()
    stop = threading.Event()
    loop = CaptureLoop(FakeCamera(), Spool(tmp_path, 10**6), "m1", 0.05, stop=stop, require_clock_sync=True,
                       clock_synced=synced.is_set, sync_poll_s=0.02)
    th = threading.Thread(target=loop.run)
    th.start()
    time.sleep(0.4)
    assert loop.stats.captured == 0 and loop.stats.waiting_for_clock and loop.healthy()
    synced.set()
    deadline = time.time() + 5
    while loop.stats.captured < 2 and time.time() < deadline:
        time.sleep(0.02)
    stop.set()
    th.join(5)
    assert loop.stats.captured >= 2 and not loop.stats.waiting_for_clock
    assert "not synchronised" in caplog.text


class NotifySocket:
    """A real AF_UNIX datagram socket standing where systemd's notify socket would."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.messages: list[str] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.done.is_set():
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue

    def drain(self) -> list[str]:
        time.sleep(0.1)
        self.done.set()
        self.thread.join(5)
        return self.messages


def run_daemon(daemon: CameraDaemon, until: object, timeout_s: float = 10.0) -> threading.Thread:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            daemon.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    th = threading.Thread(target=target)
    th.errors = errors  # type: ignore[attr-defined]
    th.start()
    deadline = time.time() + timeout_s
    while time.time() < deadline and not until() and th.is_alive():  # type: ignore[operator]
        time.sleep(0.02)
    return th


def test_daemon_runs_notifies_systemd_and_stops_cleanly(tmp_path: Path) -> None:
    notify = NotifySocket(tmp_path / "notify")
    spool, store = Spool(tmp_path / "spool", 10**6), LocalStore(tmp_path / "store")
    cam = FakeCamera()
    capture = CaptureLoop(cam, spool, "m1", 0.05)
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "300000"})
    daemon = CameraDaemon(capture, Uploader(spool, store, idle_s=0.02), tmp_path / "health.json", heartbeat_s=0.05,
                          notifier=notifier, health_port=0)
    th = run_daemon(daemon, lambda: len(store.list_new().refs) >= 3 and daemon.watchdog_pings >= 3)
    with urllib.request.urlopen(f"http://127.0.0.1:{daemon.server.port}/health", timeout=5) as resp:  # type: ignore[union-attr]
        live = json.loads(resp.read())
    daemon.stop()
    th.join(10)
    assert not th.is_alive() and cam.closed and not th.errors  # type: ignore[attr-defined]
    assert len(store.list_new().refs) >= 3
    assert live["state"] == "capturing" and live["capture"]["captured"] >= 1 and "disk_free_bytes" in live
    assert {"cpu_temp_c", "spool_photos", "spool_bytes", "upload"} <= set(live)
    health = json.loads((tmp_path / "health.json").read_text())
    assert health["capture"]["captured"] >= 3 and health["state"] == "stopping"
    msgs = notify.drain()
    assert msgs[0].startswith("READY=1") and "WATCHDOG=1" in msgs and "STOPPING=1" in msgs


def test_failing_camera_stops_watchdog_pings_then_exits_non_zero(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    notify = NotifySocket(tmp_path / "notify")
    spool = Spool(tmp_path / "spool", 10**6)
    capture = CaptureLoop(FakeCamera(fail_all=True), spool, "m1", 0.1, max_failed=4)
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "150000"})
    daemon = CameraDaemon(capture, Uploader(spool, LocalStore(tmp_path / "store"), idle_s=0.02),
                          tmp_path / "health.json", heartbeat_s=0.05, notifier=notifier)
    with caplog.at_level(logging.WARNING):
        th = run_daemon(daemon, lambda: False, timeout_s=10)
        th.join(10)
    assert not th.is_alive()
    errors = th.errors  # type: ignore[attr-defined]
    assert len(errors) == 1 and isinstance(errors[0], ExternalToolError)
    assert "4 shots in a row failed (last: camera timeout)" in str(errors[0]) and errors[0].exit_code != 0
    pings_after_first_failure = [m for m in notify.drain()[1:] if m == "WATCHDOG=1"]
    assert len(pings_after_first_failure) <= 3  # at most the ticks before the first shot (0.1 s / 0.05 s)
    assert caplog.text.count("failed (") == 3  # three warnings, then the one fatal error


def test_hung_capture_is_unhealthy(tmp_path: Path) -> None:
    loop = CaptureLoop(FakeCamera(delay_s=0.5), Spool(tmp_path, 10**6), "m1", 60, capture_timeout_s=0.1)
    th = threading.Thread(target=loop.capture_once, args=(1_700_000_000.0,))
    th.start()
    time.sleep(0.3)
    assert not loop.healthy()
    th.join()
    assert loop.healthy()


def test_status_reads_the_health_endpoint_then_the_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", 10**6)
    capture = CaptureLoop(FakeCamera(), spool, "m1", 3600)
    daemon = CameraDaemon(capture, Uploader(spool, LocalStore(tmp_path / "store")), tmp_path / "h.json",
                          health_port=0, notifier=Notifier({}))
    th = run_daemon(daemon, lambda: daemon.server is not None and daemon.state == "capturing")
    cfg = tmp_path / "s.yaml"
    cfg.write_text(f"camera:\n  health:\n    port: {daemon.server.port}\n    file: {tmp_path / 'h.json'}\n")  # type: ignore[union-attr]
    live = CliRunner().invoke(cli, ["-c", str(cfg), "camera", "status"])
    daemon.stop()
    th.join(10)
    assert live.exit_code == 0 and "/health" in live.output and '"state": "capturing"' in live.output
    after = CliRunner().invoke(cli, ["-c", str(cfg), "camera", "status"])  # endpoint gone: the heartbeat file
    assert after.exit_code == 0 and "h.json" in after.output and '"state": "stopping"' in after.output


def test_a_busy_health_port_does_not_stop_the_daemon(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    spool = Spool(tmp_path / "spool", 10**6)
    daemon = CameraDaemon(CaptureLoop(FakeCamera(), spool, "m1", 3600), Uploader(spool, LocalStore(tmp_path / "s")),
                          tmp_path / "h.json", health_port=busy.getsockname()[1], notifier=Notifier({}))
    th = run_daemon(daemon, lambda: daemon.state == "capturing")
    daemon.stop()
    th.join(10)
    busy.close()
    assert not th.errors and daemon.server is None and "health endpoint" in caplog.text  # type: ignore[attr-defined]
