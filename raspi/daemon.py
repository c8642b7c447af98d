"""The camera daemon: a capture loop on a wall-clock schedule and the uploader, each in its own thread.

Slots are aligned to the wall clock (every ``interval_s`` since the epoch), so photos of many meters line up and
restarts do not drift; a slot that was missed (camera slow, machine asleep) is skipped rather than made up in a
burst. A heartbeat file tells ``smartmeter camera status`` what the daemon last did.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from smartmeter.raspi.camera import Camera
from smartmeter.raspi.spool import Spool
from smartmeter.raspi.uploader import Uploader

log = logging.getLogger(__name__)


def next_slot(now: float, interval_s: float) -> float:
    """The next wall-clock slot strictly after ``now``."""
    return (math.floor(now / interval_s) + 1) * interval_s


@dataclass
class CaptureStats:
    captured: int = 0
    failures: int = 0
    skipped_slots: int = 0
    last_capture: float | None = None
    last_error: str | None = None


class CaptureLoop:
    """Takes one photo per slot and puts it in the spool. Never waits on upload."""

    def __init__(self, camera: Camera, spool: Spool, meter_id: str, interval_s: float, *,
                 clock: Callable[[], float] = time.time, stop: threading.Event | None = None) -> None:
        self.camera, self.spool, self.meter_id, self.interval_s = camera, spool, meter_id, interval_s
        self.clock = clock
        self.stop_event = stop or threading.Event()
        self.stats = CaptureStats()

    def capture_once(self, at: float | None = None) -> Path | None:
        ts = datetime.fromtimestamp(self.clock() if at is None else at, UTC).replace(microsecond=0)
        try:
            jpeg = self.camera.capture(ts)
            path = self.spool.add(self.meter_id, ts, jpeg)
        except Exception as exc:  # noqa: BLE001 - a failed capture must not end the loop
            self.stats.failures += 1
            self.stats.last_error = str(exc)
            log.warning("capture at %s failed: %s", ts.isoformat(), exc)
            return None
        self.stats.captured += 1
        self.stats.last_capture = self.clock()
        return path

    def run(self) -> None:
        slot = next_slot(self.clock(), self.interval_s)
        while not self.stop_event.is_set():
            wait = slot - self.clock()
            if wait > 0 and self.stop_event.wait(wait):
                break
            now = self.clock()
            if now - slot > self.interval_s / 2:  # woke up too late: skip, don't burst
                missed = int((now - slot) // self.interval_s) + 1
                self.stats.skipped_slots += missed
                log.warning("skipped %d capture slot(s)", missed)
            else:
                self.capture_once(slot)
            slot = next_slot(max(now, slot), self.interval_s)


class CameraDaemon:
    """Runs the capture loop and the uploader; SIGTERM/SIGINT stop both cleanly."""

    def __init__(self, capture: CaptureLoop, uploader: Uploader, health_file: Path, heartbeat_s: float = 10.0):
        self.capture, self.uploader, self.health_file = capture, uploader, Path(health_file)
        self.heartbeat_s = heartbeat_s
        self.stop_event = threading.Event()
        capture.stop_event = uploader.stop_event = self.stop_event

    def health(self) -> dict[str, object]:
        return {
            "time": time.time(),
            "capture": asdict(self.capture.stats),
            "upload": asdict(self.uploader.stats),
            "spool_photos": len(self.capture.spool.entries()),
            "spool_bytes": self.capture.spool.size_bytes(),
            "spool_dropped": self.capture.spool.dropped,
        }

    def write_health(self) -> None:
        self.health_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".health-", dir=self.health_file.parent)
        with os.fdopen(fd, "w") as fh:
            json.dump(self.health(), fh)
        os.replace(tmp, self.health_file)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        self.stop()

    def stop(self) -> None:
        self.stop_event.set()

    def run(self, install_signals: bool = True) -> None:
        if install_signals:
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        threads = [threading.Thread(target=self.capture.run, name="capture", daemon=True),
                   threading.Thread(target=self.uploader.run, name="uploader", daemon=True)]
        for t in threads:
            t.start()
        try:
            while not self.stop_event.wait(self.heartbeat_s):
                self.write_health()
        finally:
            self.stop_event.set()
            for t in threads:
                t.join(timeout=30)
            self.write_health()
            self.capture.camera.close()
