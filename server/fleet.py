"""A worker fleet: several ``smartmeter worker --fleet`` processes (one machine or many) share one image store.

The single worker keeps one cursor and reads every page itself. In a fleet the work goes through two tables
(``server/migrations/008_fleet.sql``):

- listing: one worker at a time (``try_lock("list:<store>")``, PostgreSQL advisory lock; the others skip it)
  lists new photos from the saved cursor into ``fleet_queue`` and saves the cursor, up to ``LIST_PAGES`` pages
  in one transaction (what was uploaded together is claimed together, in capture order);
- claiming: a worker takes up to ``meters_per_claim`` meters that have queued photos and no live lease
  (``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL: two workers never wait for, nor take, the same meter)
  and leases them for ``lease_s`` with a fresh token;
- processing: the claimed meters' oldest photos (capture-time order, ``batch_size`` at most) go through
  :meth:`Worker.process`; inside its transaction the lease is checked (still ours: same token, row locked) and
  the photos leave the queue, so the outcome and the dequeue commit together. A worker killed mid-batch commits
  nothing: its photos stay queued and another worker claims the meters once the lease has expired. A worker
  whose lease was taken over rolls its page back (:class:`LeaseLost`); the new holder reads the photos.

One meter is judged by one worker at a time and oldest photo first, so a meter's readings are validated in time
order even when its photos are listed out of order (a late upload goes through ``load_validator`` like in the
single worker). SQLite works too (``BEGIN IMMEDIATE`` serialises the claims), for processes on one machine.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import PurePosixPath

from smartmeter.domain import is_meter_id
from smartmeter.errors import InputError, StoreError
from smartmeter.progress import Progress
from smartmeter.server import photos_repo
from smartmeter.server.database import Database, now_ms, to_ms
from smartmeter.server.worker import Readers, Worker, WorkerStats
from smartmeter.settings import Settings
from smartmeter.store.base import ImageStore
from smartmeter.types import ImageRef, parse_photo_name

log = logging.getLogger(__name__)

LIST_PAGES = 100  # store pages queued in one transaction


class LeaseLost(Exception):  # noqa: N818 - a signal between two methods, never shown
    """Another worker took over a meter of this page after the lease expired: the page is rolled back."""


def queue_key(key: str) -> tuple[str, int | None]:
    """(meter, capture ms or None) a photo is queued under: from its name, else its folder or ``_<meter>``
    suffix (the EXIF time is only known once the photo is fetched), else ''."""
    try:
        meter, ts = parse_photo_name(key)
        return meter, to_ms(ts)
    except InputError:
        path = PurePosixPath(key)
        meter = path.parent.name if path.parent.name else path.stem.rsplit("_", 1)[-1]
        return (meter if is_meter_id(meter) else ""), None


@dataclass
class Claim:
    token: str
    meters: list[str]
    refs: list[ImageRef]


class FleetWorker:
    """One member of the fleet; ``run()`` polls until ``stop()``, ``run_once()`` drains what is queued now."""

    def __init__(self, settings: Settings, db: Database, store: ImageStore, worker_id: str | None = None,
                 lease_s: float = 120.0, meters_per_claim: int = 8, readers: Readers | None = None,
                 progress: bool = False) -> None:
        self.settings, self.db, self.store = settings, db, store
        self.worker = Worker(settings, db, store, readers)  # checks the readers before any photo is touched
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.lease_ms = int(lease_s * 1000)
        self.meters_per_claim = meters_per_claim
        self.progress = progress
        self.store_id = photos_repo.store_id(store)
        self.stop_event: threading.Event = self.worker.stop_event

    def stop(self) -> None:
        self.stop_event.set()

    # ---- listing -----------------------------------------------------------------------------------------------
    def list_new(self) -> int:
        """Queue the photos listed since the saved cursor (every page); 0 when another worker is listing."""
        queued, more = 0, True
        while more and not self.stop_event.is_set():
            with self.db.transaction():  # up to LIST_PAGES pages at once: a meter's backlog is claimed whole
                if not self.db.try_lock("list:" + self.store_id):
                    return queued
                for _ in range(LIST_PAGES):
                    page = self.store.list_new(photos_repo.load_cursor(self.db, self.store_id),
                                               limit=self.settings.worker.batch_size)
                    queued += self.enqueue(page.refs)
                    if page.cursor is not None:
                        photos_repo.save_cursor(self.db, self.store_id, page.cursor)
                    more = page.has_more
                    if not more:
                        break
        return queued

    def enqueue(self, refs: Sequence[ImageRef]) -> int:
        """Queue photos not processed yet (call inside a transaction); returns how many are new in the queue."""
        done = photos_repo.known(self.db, [r.key for r in refs], "photo_key")
        listed, rows, meters = now_ms(), [], set()
        for r in refs:
            if r.key in done:
                continue
            meter, ts = queue_key(r.key)
            rows.append((r.key, r.content_hash, r.size, meter, ts, listed))
            meters.add(meter)
        if not rows:
            return 0
        n = self.db.executemany("INSERT INTO fleet_queue (photo_key, content_hash, size_bytes, meter_id, ts_ms, "
                                "listed_ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", rows)
        self.db.executemany("INSERT INTO fleet_leases (meter_id) VALUES (?) ON CONFLICT DO NOTHING",
                            [(m,) for m in sorted(meters)])
        return n

    # ---- claiming ----------------------------------------------------------------------------------------------
    def claim(self) -> Claim | None:
        """Lease meters with queued photos and no live lease; their oldest photos, or None when there are none."""
        token, now = uuid.uuid4().hex, now_ms()
        with self.db.transaction():
            rows = self.db.query(
                "SELECT meter_id FROM fleet_leases l WHERE lease_until_ms < ? AND EXISTS (SELECT 1 FROM fleet_queue q"
                " WHERE q.meter_id = l.meter_id) ORDER BY lease_until_ms, meter_id LIMIT ?" + self.db.skip_locked,
                (now, self.meters_per_claim))
            meters = [str(m) for (m,) in rows]
            if not meters:
                return None
            marks = ",".join("?" * len(meters))
            self.db.execute(f"UPDATE fleet_leases SET worker = ?, token = ?, lease_until_ms = ? WHERE meter_id IN "
                            f"({marks})", (self.id, token, now + self.lease_ms, *meters))
        refs = [ImageRef(str(k), int(s), str(h)) for k, h, s in self.db.query(
            f"SELECT photo_key, content_hash, size_bytes FROM fleet_queue WHERE meter_id IN ({marks}) "
            "ORDER BY meter_id, ts_ms, photo_key", meters)]
        refs = self._oldest(refs, meters)
        log.debug("%s claimed %s: %d photos", self.id, ",".join(meters), len(refs))
        return Claim(token, meters, refs)

    def _oldest(self, refs: list[ImageRef], meters: list[str]) -> list[ImageRef]:
        """At most ``batch_size`` photos, shared fairly between the meters, each meter's oldest first."""
        by_meter: dict[str, list[ImageRef]] = {m: [] for m in meters}
        for r in refs:
            by_meter[queue_key(r.key)[0]].append(r)
        out: list[ImageRef] = []
        share = max(1, self.settings.worker.batch_size // len(meters))
        for m in meters:
            out.extend(by_meter[m][:share])
        return out

    def _commit_claim(self, claim: Claim) -> None:
        """Inside the page's transaction: the lease is still ours (else LeaseLost); the photos leave the queue and
        the meters are free again (their lease time is now: the least recently served come first)."""
        marks = ",".join("?" * len(claim.meters))
        held = self.db.query(f"SELECT meter_id FROM fleet_leases WHERE meter_id IN ({marks}) AND token = ?"
                             + (" FOR UPDATE" if self.db.dialect == "postgresql" else ""), (*claim.meters, claim.token))
        if len(held) != len(claim.meters):
            raise LeaseLost(f"{len(claim.meters) - len(held)} of {len(claim.meters)} meters taken over")
        self.db.executemany("DELETE FROM fleet_queue WHERE photo_key = ?", [(r.key,) for r in claim.refs])
        self.db.execute(f"UPDATE fleet_leases SET worker = NULL, token = NULL, lease_until_ms = ? WHERE meter_id IN "
                        f"({marks})", (now_ms(), *claim.meters))

    def release(self, claim: Claim) -> None:
        """Give the meters back now (the page failed before its transaction): no waiting for the lease."""
        marks = ",".join("?" * len(claim.meters))
        with self.db.transaction():
            self.db.execute(f"UPDATE fleet_leases SET worker = NULL, token = NULL, lease_until_ms = 0 WHERE meter_id "
                            f"IN ({marks}) AND token = ?", (*claim.meters, claim.token))

    # ---- the loop ----------------------------------------------------------------------------------------------
    def run_once(self) -> WorkerStats:
        """List, then claim and process until nothing claimable is queued."""
        stats = WorkerStats()
        self.list_new()
        with Progress("photos", enabled=self.progress) as bar:
            while not self.stop_event.is_set():
                claim = self.claim()
                if claim is None:
                    break
                self.process(claim, stats)
                bar.advance(len(claim.refs))
        return stats

    def process(self, claim: Claim, stats: WorkerStats) -> bool:
        """Read, judge and store the claimed photos; False when the lease was lost (the page rolled back)."""
        try:
            self.worker.process(claim.refs, stats, None, inside=lambda: self._commit_claim(claim))
        except LeaseLost as exc:
            log.warning("%s: page of %s rolled back, another worker has it: %s", self.id, ",".join(claim.meters), exc)
            return False
        except BaseException:
            with suppress(Exception):  # the database itself may be what failed: the lease then expires
                self.release(claim)
            raise
        return True

    def run(self) -> None:
        from smartmeter.server.events import Scheduled  # pandas: only when the loop runs

        analysis = Scheduled(self.settings.worker.analyse_every_s)  # as the single worker (per-meter locked)
        while not self.stop_event.is_set():
            try:
                stats = self.run_once()
            except StoreError as exc:  # the store is down: nothing was committed, the next poll retries
                log.warning("fleet worker %s: image store failed, retrying: %s", self.id, exc)
            else:
                if stats.listed:
                    log.info("fleet worker %s: %s", self.id, stats.summary())
            analysis.maybe_run(self.db, self.settings)
            self.stop_event.wait(self.settings.worker.poll_interval_s)
