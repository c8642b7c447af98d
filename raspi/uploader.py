"""The uploader: moves spooled photos into the image store, oldest first, in its own thread.

A photo leaves the spool only after the store confirmed its content hash (``ImageStore.put`` verifies), so a
crash or a store outage at any point loses nothing; at worst a photo is uploaded twice, which the store overwrites
and the worker de-duplicates by content hash.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from smartmeter.errors import SmartMeterError
from smartmeter.raspi.spool import Spool
from smartmeter.store.base import ImageStore
from smartmeter.types import parse_photo_name

log = logging.getLogger(__name__)


@dataclass
class UploadStats:
    uploaded: int = 0
    failures: int = 0
    last_upload: float | None = None
    last_error: str | None = None


class Uploader:
    """Drains the spool into the store; backs off exponentially while the store fails."""

    def __init__(self, spool: Spool, store: ImageStore, *, idle_s: float = 2.0, backoff_s: float = 1.0,
                 max_backoff_s: float = 300.0, stop: threading.Event | None = None) -> None:
        self.spool, self.store = spool, store
        self.idle_s, self.backoff_s, self.max_backoff_s = idle_s, backoff_s, max_backoff_s
        self.stop_event = stop or threading.Event()
        self.stats = UploadStats()

    @staticmethod
    def key_for(name: str) -> str:
        meter, _ = parse_photo_name(name)
        return f"{meter}/{name}"

    def upload_once(self) -> int:
        """Upload everything in the spool now; stop at the first failure (order is kept). Returns count."""
        done = 0
        for entry in self.spool.entries():
            if self.stop_event.is_set():
                break
            try:
                data = entry.path.read_bytes()
            except FileNotFoundError:
                self.spool.remove(entry)  # thinned meanwhile (or removed by hand): forget it
                continue
            self.store.put(self.key_for(entry.name), data)  # raises unless the stored bytes' hash matches
            self.spool.remove(entry)
            done += 1
            self.stats.uploaded += 1
            self.stats.last_upload = time.time()
        return done

    def run(self) -> None:
        """Loop until stopped."""
        delay = self.backoff_s
        while not self.stop_event.is_set():
            try:
                self.upload_once()
                delay = self.backoff_s
                self.stats.last_error = None
                self.stop_event.wait(self.idle_s)
            except Exception as exc:  # noqa: BLE001 - the loop must outlive any store failure
                self.stats.failures += 1
                self.stats.last_error = str(exc)
                log.warning("upload failed, retrying in %.0fs: %s", delay, exc,
                            exc_info=not isinstance(exc, SmartMeterError))
                self.stop_event.wait(delay)
                delay = min(delay * 2, self.max_backoff_s)

    def stop(self) -> None:
        self.stop_event.set()
