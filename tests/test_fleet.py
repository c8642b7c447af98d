"""The worker fleet and per-meter locking, against the real PostgreSQL the suite starts (and SQLite where it applies):
claims never overlap, a meter's photos come oldest first, an expired lease passes to another worker and the first
one's page is rolled back, and a writer of one meter no longer waits for a writer of another."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import pg_empty

from smartmeter.server.database import Database, open_database
from smartmeter.server.fleet import FleetWorker, LeaseLost, queue_key
from smartmeter.server.ingest import ingest_readings
from smartmeter.server.worker import WorkerStats
from smartmeter.settings import MeterSettings, Settings, WorkerSettings
from smartmeter.store.local import LocalStore
from smartmeter.types import Reading, photo_name

PHOTOS = Path(__file__).parent / "resources" / "photos"
T0 = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)
METERS = ["ma", "mb", "mc"]


def settings(batch: int = 64) -> Settings:
    return Settings(meters=[MeterSettings(id=m, profile=PHOTOS / "meter.yaml") for m in METERS],
                    worker=WorkerSettings(batch_size=batch, read_threads=1))


def fill(store: LocalStore, per_meter: int, shuffle: bool = False) -> list[str]:
    """Photos of every meter; with ``shuffle`` the store lists them newest first (listing is in key order)."""
    keys = []
    for m in METERS:
        for i in range(per_meter):
            minutes = 10 * (per_meter - 1 - i) if shuffle else 10 * i
            key = f"{'z' if shuffle and i == 0 else 'a'}{i:03d}/{photo_name(m, T0 + timedelta(minutes=minutes))}"
            store.put(key, noisy(METERS.index(m) * 1000 + i))  # distinct content: no duplicates
            keys.append(key)
    return keys


def noisy(seed: int) -> bytes:
    img = cv2.imread(str(PHOTOS / "upright.jpg")).astype(np.int16)
    img += np.random.default_rng(seed).integers(-2, 3, img.shape, dtype=np.int16)
    ok, buf = cv2.imencode(".jpg", np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return buf.tobytes()


def second(db: Database) -> Database:
    return open_database(db.url, migrate=False) if db.dialect == "postgresql" else db


def test_queue_key_takes_the_meter_and_time_from_the_name() -> None:
    assert queue_key("x/20250501T080000Z_m1.jpg") == ("m1", 1746086400000)
    assert queue_key("m7/IMG_0001.jpg") == ("m7", None)
    assert queue_key("??.jpg") == ("", None)


@pytest.mark.fault("out-of-order photos", proves="fleet: photos listed newest first are claimed oldest first, one "
                   "worker per meter (two workers' claims on PostgreSQL and SQLite never share a meter)")
def test_claims_of_two_workers_never_share_a_meter_and_come_oldest_first(db: Database, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "images")
    fill(store, 5, shuffle=True)
    other = second(db)
    try:
        a = FleetWorker(settings(), db, store, "A", meters_per_claim=2)
        b = FleetWorker(settings(), other, store, "B", meters_per_claim=2)
        assert a.list_new() == 15 and b.list_new() == 0  # listed once
        ca, cb = a.claim(), b.claim()
        assert ca is not None and cb is not None
        assert not set(ca.meters) & set(cb.meters) and len(ca.meters) == 2 and len(cb.meters) == 1
        assert b.claim() is None  # every meter is leased
        for c in (ca, cb):
            for m in c.meters:
                times = [queue_key(r.key)[1] for r in c.refs if queue_key(r.key)[0] == m]
                assert times == sorted(times) and len(times) == 5  # oldest first though listed newest first
    finally:
        if other is not db:
            other.close()


def test_an_expired_lease_passes_on_and_the_late_page_is_rolled_back(db: Database, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "images")
    fill(store, 2)
    other = second(db)
    try:
        a = FleetWorker(settings(), db, store, "A", lease_s=1, meters_per_claim=3)
        b = FleetWorker(settings(), other, store, "B", lease_s=60, meters_per_claim=3)
        a.list_new()
        slow = a.claim()
        assert slow is not None and b.claim() is None
        time.sleep(1.1)  # A stalls past its lease
        taken = b.claim()
        assert taken is not None and sorted(taken.meters) == METERS
        late = WorkerStats()
        assert a.process(slow, late) is False  # A wakes up and reads its page: it must not commit
        with pytest.raises(LeaseLost), db.transaction():
            a._commit_claim(slow)
        assert int(db.query("SELECT COUNT(*) FROM fleet_queue")[0][0]) == 6  # nothing dequeued by A
        assert db.count_readings() == 0 and not db.query("SELECT 1 FROM photos")
        stats = WorkerStats()
        assert b.process(taken, stats) is True
        assert stats.read == 6 and db.count_readings() == 6
        assert int(db.query("SELECT COUNT(*) FROM fleet_queue")[0][0]) == 0
    finally:
        if other is not db:
            other.close()


def reading(meter: str, minute: int, value: float) -> Reading:
    return Reading(meter, T0 + timedelta(minutes=minute), value, "csv")


def test_postgresql_writers_of_different_meters_do_not_wait_for_each_other(pg_url: str) -> None:
    """A transaction holding meter a (a slow ingest) must not stop an ingest of meter b; one of a still waits.
    With the former single advisory lock the ingest of b waited the whole 1.5 s."""


    cfg = Settings(meters=[MeterSettings(id="a"), MeterSettings(id="b")])
    holder, writer = pg_empty(pg_url), open_database(pg_url, migrate=False)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with holder.transaction():
            holder.lock_meters(["a"])
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(10)
        timer = threading.Timer(1.5, release.set)
        timer.start()
        start = time.monotonic()
        assert ingest_readings(writer, cfg, [reading("b", 0, 1.0)]).accepted == 1
        other_meter = time.monotonic() - start
        assert ingest_readings(writer, cfg, [reading("a", 0, 1.0)]).accepted == 1
        same_meter = time.monotonic() - start
        assert other_meter < 0.5, f"meter b waited {other_meter:.2f} s for a lock on meter a"
        assert same_meter >= 1.4, f"meter a did not wait for its holder ({same_meter:.2f} s)"
    finally:
        release.set()
        t.join(10)
        holder.close()
        writer.close()


def test_postgresql_concurrent_ingests_of_one_meter_never_store_a_conflict(pg_url: str) -> None:
    """Two writers post different values of one meter at the same minute (CSV and JSON) at once, 12 times: the meter
    lock orders them, so the second sees the first's reading and refuses its own as a conflict. Without a lock
    both read 'nothing there yet' and both are stored."""


    cfg = Settings(meters=[MeterSettings(id="a", max_power_w=100_000)])
    dbs = [pg_empty(pg_url), open_database(pg_url, migrate=False)]
    barrier = threading.Barrier(2)
    results: list[int] = []

    def post(db: Database, source: str, extra: float) -> None:
        for minute in range(1, 13):
            barrier.wait()
            r = Reading("a", T0 + timedelta(minutes=minute), 100.0 + minute * 0.5 + extra, source)
            results.append(ingest_readings(db, cfg, [r]).accepted)

    try:
        ingest_readings(dbs[0], cfg, [reading("a", 0, 100.0)])
        threads = [threading.Thread(target=post, args=(d, s, x))
                   for d, s, x in zip(dbs, ("csv", "json"), (0.0, 0.2), strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sum(results) == 12 and len(results) == 24  # one of each pair
        stored = dbs[0].readings("a")
        assert len(stored) == 13 and len({r.timestamp for r in stored}) == 13
    finally:
        for d in dbs:
            d.close()
