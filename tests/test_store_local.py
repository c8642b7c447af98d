from __future__ import annotations

import os
from pathlib import Path

import pytest

from smartmeter.errors import InputError, IntegrityError, NotFoundError
from smartmeter.hashing import content_hash
from smartmeter.store.local import LocalStore


def test_put_get_delete(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    ref = store.put("m1/20250101T000000Z_m1.jpg", b"abc")
    assert ref.content_hash == content_hash(b"abc") and ref.size == 3
    assert store.get("m1/20250101T000000Z_m1.jpg") == b"abc"
    store.delete("m1/20250101T000000Z_m1.jpg")
    with pytest.raises(NotFoundError):
        store.get("m1/20250101T000000Z_m1.jpg")
    with pytest.raises(NotFoundError):
        store.delete("m1/20250101T000000Z_m1.jpg")


@pytest.mark.fault("out-of-order photos", proves="photos lost: 0 (a photo with an old name uploaded late is still "
                   "listed to the worker)")
def test_list_new_since_cursor_sees_late_old_names(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("20250101T000100Z_m.jpg", b"1")
    store.put("20250101T000200Z_m.jpg", b"2")
    first = store.list_new(None)
    assert [r.key for r in first.refs] == ["20250101T000100Z_m.jpg", "20250101T000200Z_m.jpg"]
    assert store.list_new(first.cursor).refs == []
    store.put("20250101T000000Z_m.jpg", b"0")  # delivered late, older name
    later = store.list_new(first.cursor)
    assert [r.key for r in later.refs] == ["20250101T000000Z_m.jpg"]


def test_list_pages(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for i in range(5):
        p = store.put(f"2025010{i + 1}T000000Z_m.jpg", b"x%d" % i)
        os.utime(tmp_path / p.key, ns=(i * 10**9, i * 10**9))
    keys, cursor, more = [], None, True
    while more:
        res = store.list_new(cursor, limit=2)
        keys += [r.key for r in res.refs]
        cursor, more = res.cursor, res.has_more
    assert len(keys) == 5 and len(set(keys)) == 5


def test_rejects_escaping_keys(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for bad in ("../x.jpg", "a/../../x.jpg", ""):
        with pytest.raises(InputError):
            store.put(bad, b"x")


@pytest.mark.fault("power cut mid-write", proves="photos lost: 0 (a write the disk did not keep is detected by hash; "
                   "the old version stays, no partial file)")
def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path)
    store.put("keep.jpg", b"old")
    import smartmeter.store.local as mod

    def short_write(fd: int) -> None:  # the disk keeps only the first byte
        os.ftruncate(fd, 1)

    monkeypatch.setattr(mod.os, "fsync", short_write)
    with pytest.raises(IntegrityError):
        store.put("keep.jpg", b"new")
    assert store.get("keep.jpg") == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.jpg"]


def test_bad_cursor(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        LocalStore(tmp_path).list_new("garbage")


def test_content_hash_blocks() -> None:
    # Dropbox's documented example hash is over its milky-way picture; check block logic instead:
    import hashlib

    data = b"a" * (4 * 1024 * 1024 + 10)
    blocks = [data[: 4 * 1024 * 1024], data[4 * 1024 * 1024 :]]
    expected = hashlib.sha256(b"".join(hashlib.sha256(b).digest() for b in blocks)).hexdigest()
    assert content_hash(data) == expected
