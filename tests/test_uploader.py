from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from store_doubles import FlakyStore

from smartmeter.raspi.spool import Spool
from smartmeter.raspi.uploader import Uploader
from smartmeter.store.local import LocalStore

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def fill(spool: Spool, n: int) -> None:
    for i in range(n):
        spool.add("m1", T0 + timedelta(minutes=i), b"photo%d" % i)


def test_upload_moves_photos_in_order(tmp_path: Path) -> None:
    spool, store = Spool(tmp_path / "spool", 10**6), LocalStore(tmp_path / "store")
    fill(spool, 3)
    assert Uploader(spool, store).upload_once() == 3
    assert spool.entries() == []
    keys = [r.key for r in store.list_new().refs]
    assert sorted(keys) == [f"m1/20250301T12{i:02d}00Z_m1.jpg" for i in range(3)]
    assert store.get("m1/20250301T120100Z_m1.jpg") == b"photo1"


@pytest.mark.fault("network cut mid-upload", proves="photos lost: 0 (the spool keeps every photo, also those taken "
                   "during the outage, until uploaded)")
def test_store_outage_loses_nothing_and_resumes(tmp_path: Path) -> None:
    spool, store = Spool(tmp_path / "spool", 10**6), FlakyStore(tmp_path / "store")
    fill(spool, 3)
    store.down = True
    stop = threading.Event()
    up = Uploader(spool, store, idle_s=0.01, backoff_s=0.01, max_backoff_s=0.02, stop=stop)
    t = threading.Thread(target=up.run)
    t.start()
    try:
        for _ in range(200):
            if up.stats.failures >= 3:
                break
            stop.wait(0.01)
        assert up.stats.failures >= 3 and len(spool.entries()) == 3
        spool.add("m1", T0 + timedelta(hours=1), b"captured during outage")
        store.down = False
        for _ in range(500):
            if not spool.entries():
                break
            stop.wait(0.01)
    finally:
        stop.set()
        t.join(5)
    assert spool.entries() == []
    assert len(store.list_new().refs) == 4


@pytest.mark.fault("duplicate delivery", proves="photos lost: 0, duplicates: 0 (stopped mid-upload, the next run "
                   "uploads each photo once)")
def test_stop_mid_upload_no_loss_no_duplicate(tmp_path: Path) -> None:
    spool, store = Spool(tmp_path / "spool", 10**6), FlakyStore(tmp_path / "store")
    fill(spool, 5)
    stop = threading.Event()
    up = Uploader(spool, store, stop=stop)
    store.before = lambda op, key: stop.set() if store.calls["put"] == 2 else None  # SIGTERM in the 2nd upload
    assert up.upload_once() == 2
    assert len(spool.entries()) == 3 and len(store.list_new().refs) == 2
    stop.clear()
    store.before = None
    assert up.upload_once() == 3
    refs = store.list_new().refs
    assert len(refs) == 5 and len({r.key for r in refs}) == 5


def test_photo_dropped_by_cap_during_upload_is_skipped(tmp_path: Path) -> None:
    spool, store = Spool(tmp_path / "spool", 10**6), FlakyStore(tmp_path / "store")
    fill(spool, 2)
    first = spool.entries()[1]
    store.before = lambda op, key: first.path.unlink(missing_ok=True)
    assert Uploader(spool, store).upload_once() == 1
