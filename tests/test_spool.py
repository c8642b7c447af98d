from __future__ import annotations

import errno
import logging
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from smartmeter.errors import StoreError
from smartmeter.raspi.spool import Photo, Spool, plan_thinning
from smartmeter.types import parse_photo_name

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def test_add_is_atomic_and_ordered(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000)
    spool.add("m1", T0 + timedelta(minutes=1), b"b")
    spool.add("m1", T0, b"a")
    names = [e.name for e in spool.entries()]
    assert names == ["20250301T120000Z_m1.jpg", "20250301T120100Z_m1.jpg"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert spool.count() == 2 and spool.size_bytes() == 2


def test_cap_thins_instead_of_dropping_the_oldest(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(tmp_path, max_bytes=30 * 100)
    for i in range(120):  # two hours, one photo a minute, 100 bytes each
        spool.add("m1", T0 + timedelta(minutes=i), b"x" * 100)
    names = [e.name for e in spool.entries()]
    assert names[0] == "20250301T120000Z_m1.jpg"  # the start of the backlog survives
    assert "20250301T125900Z_m1.jpg" in names  # the last photo of the first hour survives
    assert names[-1] == "20250301T135900Z_m1.jpg"  # and the newest
    assert spool.size_bytes() <= 30 * 100 and spool.thinned > 0
    assert "thinned" in caplog.text and "energy is kept" in caplog.text


def energy_photos(days: int, every_min: int = 1, kw: float = 0.75) -> list[tuple[datetime, float]]:
    """(time, register kWh) of a long outage: the register integrates a varying load."""
    out, reg = [], 1000.0
    for i in range(days * 24 * 60 // every_min):
        t = T0 + timedelta(minutes=i * every_min)
        out.append((t, round(reg, 4)))
        reg += (kw + 0.5 * ((t.hour // 6) % 2)) * every_min / 60
    return out


@pytest.mark.parametrize("cap_photos", [200, 40])  # thinning to hours only / to days as well
def test_energy_over_an_outage_is_recoverable_from_what_is_kept(tmp_path: Path, cap_photos: int) -> None:
    truth = energy_photos(days=5, every_min=5)
    spool = Spool(tmp_path, max_bytes=cap_photos * 24)
    for t, reg in truth:
        spool.add("m1", t, f"{reg:023.4f}".encode())  # 23 bytes: the register as the photo would show it
    kept = {parse_photo_name(e.name)[1]: float(e.path.read_bytes()) for e in spool.entries()}
    assert len(kept) <= cap_photos * 1.1 < len(truth)
    first, last = truth[0], truth[-1]
    assert kept[first[0]] == first[1] and kept[last[0]] == last[1]  # total energy over the outage
    by_day: dict[object, tuple[datetime, float]] = {}
    for t, reg in truth:
        by_day[t.date()] = (t, reg)
    for t, reg in by_day.values():  # every day's closing register is kept: daily energy is exact
        assert kept[t] == reg
    if cap_photos == 200:  # the newest backlog is still hourly or finer
        last_day = [t for t in kept if t.date() == last[0].date()]
        assert len({t.hour for t in last_day}) >= 12


def test_plan_never_takes_the_first_the_newest_or_a_day_end() -> None:
    photos = [Photo(f"p{i:03d}", T0 + timedelta(hours=6 * i), 10) for i in range(12)]  # 3 days, 4 a day
    doomed, freed = plan_thinning(photos, 10**6)
    left = [p.name for p in photos if p not in doomed]
    assert left == ["p000", "p001", "p005", "p009", "p011"]  # first, day ends (day 0 ends at p001), newest
    assert freed == 10 * len(doomed)


def test_last_resort_refuses_the_new_photo_and_keeps_the_backlog(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(tmp_path, max_bytes=250)
    for d in range(2):
        spool.add("m1", T0 + timedelta(days=d), b"x" * 100)
    with caplog.at_level(logging.ERROR), pytest.raises(StoreError, match="cannot be thinned"):
        spool.add("m1", T0 + timedelta(days=2), b"x" * 100)
    assert spool.count() == 2 and spool.refused == 1
    assert "CAPTURE STOPPED" in caplog.text


def test_low_free_disk_thins_like_the_cap(tmp_path: Path) -> None:
    disk = 8_000  # a small disk: free space shrinks as the spool grows, and comes back as it is thinned
    spool = Spool(tmp_path, max_bytes=10**9, min_free_bytes=5_000, free_bytes=lambda p: disk - spool.size_bytes())
    for i in range(60):
        spool.add("m1", T0 + timedelta(minutes=i), b"x" * 100)
    assert spool.thinned > 0 and spool.size_bytes() <= 3_000


@pytest.mark.fault("disk full", proves="photos lost: 0 (ENOSPC: a clear error, no partial file, the photos already "
                   "spooled stay)")
def test_disk_full_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(tmp_path, max_bytes=10_000)
    spool.add("m1", T0, b"keep")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StoreError, match="No space left"):
        spool.add("m1", T0 + timedelta(minutes=1), b"new")
    assert [p.name for p in tmp_path.iterdir()] == ["20250301T120000Z_m1.jpg"]
    assert spool.count() == 1


@pytest.mark.fault("power cut mid-write", proves="a half-written temp file left by a crash is never taken for a "
                   "photo, and is cleaned up later")
def test_leftover_temp_files_are_ignored_then_cleaned(tmp_path: Path) -> None:
    partial = tmp_path / ".tmp-abc"
    partial.write_bytes(b"half a jpeg")
    (tmp_path / "notes.txt").write_text("foreign file")
    spool = Spool(tmp_path, max_bytes=10_000, stale_tmp_s=3600)
    assert spool.entries() == [] and partial.exists()  # fresh temp: maybe being written, ignored
    old = time.time() - 7200
    os.utime(partial, (old, old))
    Spool(tmp_path, max_bytes=10_000, stale_tmp_s=3600)
    assert not partial.exists()
    assert (tmp_path / "notes.txt").exists()


def test_counts_come_from_the_index_not_a_listing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(tmp_path, max_bytes=10**9)
    for i in range(50):
        spool.add("m1", T0 + timedelta(minutes=i), b"x" * 10)

    def no_listing(self: Path) -> None:
        raise AssertionError("the spool folder was listed")

    monkeypatch.setattr(Path, "iterdir", no_listing)
    assert (spool.count(), spool.size_bytes(), spool.oldest()) == (50, 500, "20250301T120000Z_m1.jpg")
    spool.remove(spool.entries()[0])
    assert spool.count() == 49 and spool.oldest() == "20250301T120100Z_m1.jpg"
