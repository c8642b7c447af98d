"""The camera daemon: a capture loop on a clock schedule and the uploader, each in its own thread.

Slots come from ``raspi.schedule`` (clock-aligned intervals or cron); a slot that was missed (camera slow, machine
asleep, clock stepped) is skipped rather than made up in a burst, and one lock makes sure two captures never run at
once. No photo is taken before the clock is synchronised (a Pi has no real-time clock: until NTP syncs, photo
names would carry a wrong time). Under systemd (``Type=notify``) the daemon says READY=1 once running and pings the
watchdog only while shots succeed and none hangs; ``max_failed`` failed shots in a row end it with one clear error
(exit code 69) so systemd restarts it. SIGTERM/SIGINT stop it through ``smartmeter.lifecycle.stop_on_signals``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from smartmeter.errors import ExternalToolError
from smartmeter.lifecycle import stop_on_signals
from smartmeter.raspi.camera import Camera
from smartmeter.raspi.health import HealthServer, cpu_temperature_c, free_disk_bytes, write_heartbeat
from smartmeter.raspi.schedule import Every, Schedule, clock_synchronised
from smartmeter.raspi.sdnotify import Notifier
from smartmeter.raspi.spool import Spool
from smartmeter.raspi.uploader import Uploader

log = logging.getLogger(__name__)

MAX_WAIT_S = 60.0  # waits are cut into pieces this long, so a clock step is noticed
M_MMAP_THRESHOLD = -3  # mallopt(3)
BIG_BUFFER = 256 * 1024


def return_big_buffers_to_the_os() -> bool:
    """Fix glibc's mmap threshold at 256 KiB: each photo's frame and JPEG (MBs, one a minute) is mmapped and given
    back when freed. By default glibc raises the threshold after the first big free and keeps later frames on the
    heap, which never shrinks: +14 MB resident for a 1640x1232 camera (bench/camera.py)."""
    name = ctypes.util.find_library("c")
    try:
        return name is not None and bool(ctypes.CDLL(name).mallopt(M_MMAP_THRESHOLD, BIG_BUFFER))
    except (OSError, AttributeError):  # not glibc
        return False


def next_slot(now: float, interval_s: float) -> float:
    """The next clock-aligned slot strictly after ``now``."""
    return Every(interval_s).next_after(now)


@dataclass
class CaptureStats:
    captured: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    skipped_slots: int = 0
    last_capture: float | None = None
    last_error: str | None = None
    waiting_for_clock: bool = False


class CaptureLoop:
    """Takes one photo per slot and puts it in the spool. Never waits on upload."""

    def __init__(self, camera: Camera, spool: Spool, meter_id: str, schedule: Schedule | float, *,
                 clock: Callable[[], float] = time.time, stop: threading.Event | None = None,
                 max_failed: int = 10, capture_timeout_s: float = 120.0, require_clock_sync: bool = False,
                 clock_synced: Callable[[], bool] = clock_synchronised, sync_poll_s: float = 5.0) -> None:
        self.camera, self.spool, self.meter_id = camera, spool, meter_id
        self.schedule = Every(schedule) if isinstance(schedule, int | float) else schedule
        self.clock = clock
        self.stop_event = stop or threading.Event()
        self.max_failed, self.capture_timeout_s = max_failed, capture_timeout_s
        self.require_clock_sync, self.clock_synced, self.sync_poll_s = require_clock_sync, clock_synced, sync_poll_s
        self.stats = CaptureStats()
        self.fatal: str | None = None
        self.lock = threading.Lock()  # one capture at a time
        self.capture_started: float | None = None  # monotonic time of the shot in progress

    def capture_once(self, at: float | None = None) -> Path | None:
        ts = datetime.fromtimestamp(self.clock() if at is None else at, UTC).replace(microsecond=0)
        if not self.lock.acquire(blocking=False):
            self.stats.skipped_slots += 1
            log.warning("capture at %s skipped: the previous one is still running", ts.isoformat())
            return None
        self.capture_started = time.monotonic()
        try:
            jpeg = self.camera.capture(ts)
            path = self.spool.add(self.meter_id, ts, jpeg)
        except Exception as exc:  # noqa: BLE001 - a failed capture must not end the loop (max_failed does)
            self._failed(ts, exc)
            return None
        finally:
            self.capture_started = None
            self.lock.release()
        self.stats.captured += 1
        self.stats.consecutive_failures = 0
        self.stats.last_capture = self.clock()
        return path

    def _failed(self, ts: datetime, exc: Exception) -> None:
        s = self.stats
        s.failures += 1
        s.consecutive_failures += 1
        s.last_error = str(exc)
        if s.consecutive_failures >= self.max_failed:
            self.fatal = f"camera daemon giving up: {s.consecutive_failures} shots in a row failed (last: {exc})"
            self.stop_event.set()
        else:
            log.warning("capture at %s failed (%d in a row): %s", ts.isoformat(), s.consecutive_failures, exc)

    def healthy(self) -> bool:
        """What the watchdog is pinged on: the last shot succeeded (or none is due yet) and none hangs."""
        started = self.capture_started
        if self.fatal or self.stats.consecutive_failures:
            return False
        return started is None or time.monotonic() - started < self.capture_timeout_s

    def _sleep_until(self, t: float) -> bool:
        """Wait for wall-clock time ``t``; True when stopped meanwhile."""
        while (wait := t - self.clock()) > 0:
            if self.stop_event.wait(min(wait, MAX_WAIT_S)):
                return True
        return self.stop_event.is_set()

    def wait_for_clock(self) -> bool:
        """Hold until the clock is synchronised; True when stopped meanwhile."""
        if not self.require_clock_sync or self.clock_synced():
            return self.stop_event.is_set()
        self.stats.waiting_for_clock = True
        log.warning("the system clock is not synchronised yet (no NTP): holding captures until it is")
        start = time.monotonic()
        while not self.clock_synced():
            if self.stop_event.wait(self.sync_poll_s):
                return True
        self.stats.waiting_for_clock = False
        log.info("clock synchronised after %.0f s: capturing", time.monotonic() - start)
        return self.stop_event.is_set()

    def run(self) -> None:
        if self.wait_for_clock():
            return
        slot = self.schedule.next_after(self.clock())
        while not self.stop_event.is_set():
            if self._sleep_until(slot):
                break
            now = self.clock()
            following = self.schedule.next_after(slot)
            if now - slot > min(30.0, (following - slot) / 2):  # woke up too late: skip, don't burst
                missed = 1
                while following <= now:
                    missed, following = missed + 1, self.schedule.next_after(following)
                self.stats.skipped_slots += missed
                log.warning("skipped %d capture slot(s)", missed)
            else:
                self.capture_once(slot)
            slot = self.schedule.next_after(max(self.clock(), slot))


class CameraDaemon:
    """Runs the capture loop and the uploader; writes the heartbeat, serves /health, talks to systemd."""

    def __init__(self, capture: CaptureLoop, uploader: Uploader, health_file: Path, heartbeat_s: float = 10.0, *,
                 health_port: int | None = None, health_host: str = "127.0.0.1",
                 notifier: Notifier | None = None) -> None:
        self.capture, self.uploader, self.health_file = capture, uploader, Path(health_file)
        self.heartbeat_s = heartbeat_s
        self.health_port, self.health_host = health_port, health_host
        self.notifier = notifier or Notifier()
        self.stop_event = threading.Event()
        capture.stop_event = uploader.stop_event = self.stop_event
        self.server: HealthServer | None = None
        self.state = "starting"
        self.watchdog_pings = 0

    def health(self) -> dict[str, object]:
        spool = self.capture.spool
        state = "waiting for clock sync" if self.capture.stats.waiting_for_clock else self.state
        if state == "capturing" and not self.capture.healthy():
            state = "failing"
        return {
            "time": time.time(),
            "pid": os.getpid(),
            "state": state,
            "capture": asdict(self.capture.stats),
            "upload": asdict(self.uploader.stats),
            "spool_photos": spool.count(),
            "spool_bytes": spool.size_bytes(),
            "spool_thinned": spool.thinned,
            "spool_refused": spool.refused,
            "spool_oldest": spool.oldest(),
            "cpu_temp_c": cpu_temperature_c(),
            "disk_free_bytes": free_disk_bytes(spool.root),
            "health_port": self.server.port if self.server else None,
        }

    def write_health(self) -> None:
        write_heartbeat(self.health_file, self.health())

    def stop(self) -> None:
        self.stop_event.set()

    def _tick(self) -> None:
        if self.capture.healthy() and self.notifier.watchdog():
            self.watchdog_pings += 1
        h = self.health()
        self.notifier.status(f"{h['state']}: {self.capture.stats.captured} photos, {h['spool_photos']} waiting")

    def run(self) -> None:
        """Until stopped (signal or ``stop()``); raises ExternalToolError after too many failed shots."""
        return_big_buffers_to_the_os()
        tick = self.heartbeat_s
        if self.notifier.watchdog_s:
            tick = min(tick, self.notifier.watchdog_s / 3)
        with stop_on_signals(self.stop_event, "stopping the camera daemon"):
            threads = [threading.Thread(target=self.capture.run, name="capture", daemon=True),
                       threading.Thread(target=self.uploader.run, name="uploader", daemon=True)]
            if self.health_port is not None:
                try:
                    self.server = HealthServer(self.health, self.health_host, self.health_port).start()
                except OSError as exc:  # the port is taken: the heartbeat file still tells
                    log.warning("health endpoint %s:%d off: %s", self.health_host, self.health_port, exc)
            for t in threads:
                t.start()
            self.state = "capturing"
            self.write_health()
            self.notifier.ready("capturing")
            last_beat = time.monotonic()
            try:
                while not self.stop_event.wait(tick):
                    self._tick()
                    if time.monotonic() - last_beat >= self.heartbeat_s:
                        self.write_health()
                        last_beat = time.monotonic()
            finally:
                self.state = "stopping"
                self.notifier.stopping()
                self.stop_event.set()
                for t in threads:
                    t.join(timeout=30)
                self.write_health()
                self.capture.camera.close()
                if self.server is not None:
                    self.server.stop()
        if self.capture.fatal:
            raise ExternalToolError(self.capture.fatal, hint="check the camera (rpicam-hello); systemd restarts "
                                                             "the daemon")
