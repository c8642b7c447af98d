"""The on-disk spool: captured photos wait here until the uploader has them safely in the image store.

Capture never waits on upload. Writes are atomic (hidden temp file, fsync, rename), so the uploader never sees
half a photo; leftover temp files from a crash are cleaned at start. The folder is listed once, at start: after
that an index kept in memory answers "what is waiting, how much" (a heartbeat with 10,000 photos waiting must not
list the folder). When the spool would pass its cap, or the disk would fall below ``min_free_bytes``, the backlog
is THINNED (``plan_thinning``: one photo an hour, then a day, never the last of a day), with a warning; only when
nothing more can be thinned is the new photo refused (capture stops until the uploader catches up).

Thinning, not cutting: the register is cumulative, so a photo read later still gives the energy up to its time;
dropping photos in the middle of an outage loses time resolution, not energy. Dropping the oldest photos wholesale
(what a plain cap did) loses the readings for good. So, oldest backlog first:

1. keep one photo per hour (the last of each hour);
2. then one per day (the last of each day);
3. never the first photo of the backlog, the newest photo, or the last photo of a day: past that, nothing more
   can go, and the caller stops capturing (the last resort).
"""

from __future__ import annotations

import bisect
import errno
import logging
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from smartmeter.errors import StoreError
from smartmeter.fileio import TMP_PREFIX, atomic_write
from smartmeter.types import PHOTO_NAME, parse_photo_name, photo_name

log = logging.getLogger(__name__)

PERIODS_S = (3600, 86400)  # one photo an hour, then one a day


@dataclass(frozen=True)
class Photo:
    name: str
    ts: datetime
    size: int


def plan_thinning(photos: Sequence[Photo], excess_bytes: int) -> tuple[list[Photo], int]:
    """Photos to delete (oldest backlog first) to free ``excess_bytes``, and the bytes they free.

    ``photos`` are sorted oldest first. Frees less than asked when only protected photos are left.
    """
    if excess_bytes <= 0 or len(photos) <= 2:
        return [], 0
    gone: set[str] = set()
    out: list[Photo] = []
    freed = 0
    protected = {photos[0].name, photos[-1].name}
    for period in PERIODS_S:
        alive = [p for p in photos if p.name not in gone]
        for i, p in enumerate(alive[:-1]):
            last_of_period = int(alive[i + 1].ts.timestamp()) // period != int(p.ts.timestamp()) // period
            if last_of_period or p.name in protected:
                continue
            gone.add(p.name)
            out.append(p)
            freed += p.size
            if freed >= excess_bytes:
                return out, freed
    return out, freed


LOW_WATER = 0.9  # thinning frees down to this share of the budget, so it runs rarely, not on every photo


@dataclass(frozen=True)
class SpoolEntry:
    path: Path
    size: int

    @property
    def name(self) -> str:
        return self.path.name


class Spool:
    """A folder of photos named ``YYYYmmddTHHMMSSZ_<meter>.jpg``, oldest first by name (= capture time)."""

    def __init__(self, root: Path, max_bytes: int, stale_tmp_s: float = 300.0, *, min_free_bytes: int = 0,
                 free_bytes: Callable[[Path], int] | None = None) -> None:
        self.root = Path(root)
        self.max_bytes, self.min_free_bytes = max_bytes, min_free_bytes
        self.free_bytes = free_bytes or (lambda p: shutil.disk_usage(p).free)
        self.root.mkdir(parents=True, exist_ok=True)
        self.thinned = 0
        self.refused = 0
        self.lock = threading.Lock()
        self._names: list[str] = []
        self._sizes: dict[str, int] = {}
        self._total = 0
        self._clean_tmp(stale_tmp_s)
        self.rescan()

    def _clean_tmp(self, older_than_s: float) -> None:
        now = time.time()
        for p in self.root.glob(TMP_PREFIX + "*"):
            try:
                if now - p.stat().st_mtime >= older_than_s:
                    p.unlink()
                    log.info("removed leftover partial photo %s", p.name)
            except FileNotFoundError:
                pass

    def rescan(self) -> None:
        """List the folder (once at start): complete photos only; temp and foreign files are ignored."""
        sizes: dict[str, int] = {}
        for p in self.root.iterdir():
            if p.name.startswith(".") or not PHOTO_NAME.match(p.name):
                continue
            try:
                sizes[p.name] = p.stat().st_size
            except FileNotFoundError:
                continue
        with self.lock:
            self._sizes, self._names, self._total = sizes, sorted(sizes), sum(sizes.values())

    # -- the index -----------------------------------------------------------------------------------------

    def _index_add(self, name: str, size: int) -> None:
        with self.lock:
            if name in self._sizes:
                self._total -= self._sizes[name]
            else:
                bisect.insort(self._names, name)
            self._sizes[name] = size
            self._total += size

    def _index_remove(self, name: str) -> None:
        with self.lock:
            size = self._sizes.pop(name, None)
            if size is None:
                return
            self._total -= size
            i = bisect.bisect_left(self._names, name)
            if i < len(self._names) and self._names[i] == name:
                del self._names[i]

    def entries(self) -> list[SpoolEntry]:
        """Complete photos, oldest first."""
        with self.lock:
            return [SpoolEntry(self.root / n, self._sizes[n]) for n in self._names]

    def count(self) -> int:
        return len(self._names)

    def size_bytes(self) -> int:
        return self._total

    def oldest(self) -> str | None:
        with self.lock:
            return self._names[0] if self._names else None

    # -- writing and thinning ------------------------------------------------------------------------------

    def budget_bytes(self) -> int:
        """How many bytes the spool may hold now: its cap, or less when the disk runs out of room."""
        try:
            free = self.free_bytes(self.root)
        except OSError:
            return self.max_bytes
        return max(0, min(self.max_bytes, self._total + free - self.min_free_bytes))

    def add(self, meter_id: str, ts: datetime, jpeg: bytes) -> Path:
        """Write one photo atomically, thinning the backlog first when it would not fit.

        Raises StoreError (nothing partial left behind) when even a thinned backlog leaves no room: capture stops.
        """
        final = self.root / photo_name(meter_id, ts)
        budget = self.budget_bytes()
        if self._total + len(jpeg) > budget:
            self.thin(self._total + len(jpeg) - int(budget * LOW_WATER))
            if self._total + len(jpeg) > self.budget_bytes():
                self._refuse(final.name, "the spool is full of photos that cannot be thinned further")
        for attempt in (1, 2):
            try:
                atomic_write(final, jpeg)
                break
            except OSError as exc:
                if exc.errno != errno.ENOSPC or attempt == 2 or not self.thin(max(4 * len(jpeg), 1 << 20)):
                    raise StoreError(f"cannot spool {final.name}: {exc.strerror or exc}") from exc
                log.warning("disk full writing %s: backlog thinned, trying again", final.name)
        self._index_add(final.name, len(jpeg))
        return final

    def _refuse(self, name: str, why: str) -> None:
        self.refused += 1
        log.error("CAPTURE STOPPED: %s (%d photos, %.1f MB waiting for upload); %s not taken", why, self.count(),
                  self._total / 1e6, name)
        raise StoreError(f"cannot spool {name}: {why}", hint="the uploader must catch up (network, store)")

    def thin(self, excess_bytes: int) -> int:
        """Delete thinned-out photos of the oldest backlog to free ``excess_bytes``; return how many went."""
        with self.lock:
            photos = [Photo(n, parse_photo_name(n)[1], self._sizes[n]) for n in self._names]
        doomed, freed = plan_thinning(photos, excess_bytes)
        for p in doomed:
            (self.root / p.name).unlink(missing_ok=True)
            self._index_remove(p.name)
        if doomed:
            self.thinned += len(doomed)
            log.warning("SPOOL OVER ITS BUDGET (cap %.1f MB, %.1f MB free on disk): thinned %d photos between %s and "
                        "%s to one an hour / a day (energy is kept, time resolution lost); %d photos left",
                        self.max_bytes / 1e6, self.free_bytes(self.root) / 1e6, len(doomed), doomed[0].name,
                        doomed[-1].name, self.count())
        return len(doomed)

    def remove(self, entry: SpoolEntry) -> None:
        entry.path.unlink(missing_ok=True)
        self._index_remove(entry.name)
