from __future__ import annotations

import errno
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from smartmeter.errors import StoreError
from smartmeter.raspi.spool import Spool

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def test_add_is_atomic_and_ordered(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000)
    spool.add("m1", T0 + timedelta(minutes=1), b"b")
    spool.add("m1", T0, b"a")
    names = [e.name for e in spool.entries()]
    assert names == ["20250301T120000Z_m1.jpg", "20250301T120100Z_m1.jpg"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cap_drops_oldest(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=250)
    for i in range(5):
        spool.add("m1", T0 + timedelta(minutes=i), b"x" * 100)
    names = [e.name for e in spool.entries()]
    assert names == ["20250301T120300Z_m1.jpg", "20250301T120400Z_m1.jpg"]
    assert spool.dropped == 3


def test_disk_full_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(tmp_path, max_bytes=10_000)
    spool.add("m1", T0, b"keep")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StoreError, match="No space left"):
        spool.add("m1", T0 + timedelta(minutes=1), b"new")
    assert [p.name for p in tmp_path.iterdir()] == ["20250301T120000Z_m1.jpg"]


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
