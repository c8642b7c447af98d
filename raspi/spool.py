"""The on-disk spool: captured photos wait here until the uploader has them safely in the image store.

Capture never waits on upload. Writes are atomic (hidden temp file, fsync, rename), so the uploader never sees
half a photo; leftover temp files from a crash are cleaned at start. When the spool grows past its cap the OLDEST
photos are dropped (with a warning): a recent photo is worth more than an old one on a full SD card.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from smartmeter.errors import StoreError
from smartmeter.fileio import TMP_PREFIX, atomic_write
from smartmeter.types import PHOTO_NAME, photo_name

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class SpoolEntry:
    path: Path
    size: int

    @property
    def name(self) -> str:
        return self.path.name


class Spool:
    """A folder of photos named ``YYYYmmddTHHMMSSZ_<meter>.jpg``, oldest first by name (= capture time)."""

    def __init__(self, root: Path, max_bytes: int, stale_tmp_s: float = 300.0) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        self.dropped = 0
        self._clean_tmp(stale_tmp_s)

    def _clean_tmp(self, older_than_s: float) -> None:
        now = time.time()
        for p in self.root.glob(TMP_PREFIX + "*"):
            try:
                if now - p.stat().st_mtime >= older_than_s:
                    p.unlink()
                    log.info("removed leftover partial photo %s", p.name)
            except FileNotFoundError:
                pass

    def add(self, meter_id: str, ts: datetime, jpeg: bytes) -> Path:
        """Write one photo atomically; raises StoreError (e.g. disk full) leaving no partial file behind."""
        final = self.root / photo_name(meter_id, ts)
        try:
            atomic_write(final, jpeg)
        except OSError as exc:
            raise StoreError(f"cannot spool {final.name}: {exc.strerror or exc}") from exc
        self.enforce_cap()
        return final

    def entries(self) -> list[SpoolEntry]:
        """Complete photos, oldest first. Temp files and foreign files are ignored."""
        out = []
        for p in self.root.iterdir():
            if p.name.startswith(".") or not PHOTO_NAME.match(p.name):
                continue
            try:
                out.append(SpoolEntry(p, p.stat().st_size))
            except FileNotFoundError:
                continue
        out.sort(key=lambda e: e.name)
        return out

    def size_bytes(self) -> int:
        return sum(e.size for e in self.entries())

    def enforce_cap(self) -> int:
        """Drop the oldest photos until the spool fits its cap; return how many were dropped."""
        entries = self.entries()
        total = sum(e.size for e in entries)
        dropped = 0
        for e in entries:
            if total <= self.max_bytes:
                break
            e.path.unlink(missing_ok=True)
            total -= e.size
            dropped += 1
        if dropped:
            self.dropped += dropped
            log.warning("spool over its cap of %.1f MB: dropped the %d oldest photos", self.max_bytes / 1e6, dropped)
        return dropped

    def remove(self, entry: SpoolEntry) -> None:
        entry.path.unlink(missing_ok=True)
