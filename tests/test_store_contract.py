"""The ``ImageStore`` contract (smartmeter/store/base.py), run on every backend: the local folder, and Dropbox through
the real SDK and through the standard-library client, both against the HTTPS fake (tests/fake_dropbox.py). A backend
passes these or it is not an image store.

Listing: each page is in key order (photo names begin with the capture time, so a meter's photos come in capture
order), pages follow the order the store received the photos, and following the cursors lists every photo once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from fake_dropbox import FakeDropbox
from store_doubles import dropbox_store

from smartmeter.errors import InputError, NotFoundError
from smartmeter.hashing import content_hash
from smartmeter.store.base import ImageStore
from smartmeter.store.local import LocalStore

NAMES = ["m1/20250101T000300Z_m1.jpg", "m1/20250101T000100Z_m1.jpg", "m2/20250101T000200Z_m2.png",
         "m1/20250101T000200Z_m1.JPEG", "20250101T000000Z_m3.jpg"]  # put in this (not name) order


@pytest.fixture(params=["local", "dropbox", "dropbox-http"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ImageStore]:
    if request.param == "local":
        yield LocalStore(tmp_path / "photos")
        return
    fake = FakeDropbox(tmp_path).start()
    try:
        yield dropbox_store(fake, client="http" if request.param == "dropbox-http" else "sdk")
    finally:
        fake.stop()


def list_all(store: ImageStore, cursor: str | None = None, limit: int = 1000) -> tuple[list[list[str]], str]:
    """Every page from ``cursor`` on (keys), and the cursor after the last page."""
    pages = []
    while True:
        res = store.list_new(cursor, limit=limit)
        pages.append([r.key for r in res.refs])
        cursor = res.cursor
        if not res.has_more:
            return pages, cursor


def test_put_get_overwrite_delete(store: ImageStore) -> None:
    ref = store.put("/m1/20250101T000000Z_m1.jpg", b"first")
    assert ref.key == "m1/20250101T000000Z_m1.jpg" and ref.size == 5 and ref.content_hash == content_hash(b"first")
    assert store.get(ref.key) == b"first" and store.exists(ref.key) and not store.exists("m1/other.jpg")
    again = store.put(ref.key, b"second version")
    assert again.size == 14 and again.content_hash == content_hash(b"second version")
    assert store.get(ref.key) == b"second version"
    store.delete(ref.key)
    assert not store.exists(ref.key)
    with pytest.raises(NotFoundError):
        store.get(ref.key)
    with pytest.raises(NotFoundError):
        store.delete(ref.key)


@pytest.mark.parametrize("key", ["../x.jpg", "m1/../../x.jpg", "", "m1/./x.jpg", "a\\b.jpg", "m1/x\x00.jpg"])
def test_keys_that_could_escape_the_root_are_refused(store: ImageStore, key: str) -> None:
    for call in (lambda: store.put(key, b"x"), lambda: store.get(key), lambda: store.delete(key)):
        with pytest.raises(InputError):
            call()


def test_an_empty_store_lists_nothing_and_its_cursor_works(store: ImageStore) -> None:
    first = store.list_new(None)
    assert first.refs == [] and not first.has_more
    store.put(NAMES[0], b"x")
    assert [r.key for r in store.list_new(first.cursor).refs] == [NAMES[0]]


def test_a_page_is_in_key_order_and_lists_photos_only(store: ImageStore) -> None:
    for i, name in enumerate(NAMES):
        store.put(name, b"photo %d" % i)
    for other in ("m1/notes.txt", "m1/.20250101T000400Z_m1.jpg", "m1/20250101T000500Z_m1.jpg.part"):
        store.put(other, b"not a photo")
    res = store.list_new(None)
    assert [r.key for r in res.refs] == sorted(NAMES) and not res.has_more
    for r in res.refs:
        data = store.get(r.key)
        assert (r.size, r.content_hash) == (len(data), content_hash(data))
        assert isinstance(r.modified, datetime) and r.modified.utcoffset() is not None


def test_pages_list_every_photo_once_each_page_in_key_order(store: ImageStore) -> None:
    for i, name in enumerate(NAMES):
        store.put(name, b"photo %d" % i)
    pages, _ = list_all(store, limit=2)
    keys = [k for page in pages for k in page]
    assert sorted(keys) == sorted(NAMES) and len(keys) == len(NAMES) and len(pages) >= 2
    assert all(page == sorted(page) for page in pages)


def test_the_cursor_lists_what_came_after_it_only(store: ImageStore) -> None:
    for i, name in enumerate(NAMES[:3]):
        store.put(name, b"photo %d" % i)
    _, cursor = list_all(store)
    assert list_all(store, cursor)[0] == [[]]
    store.put("m1/20240101T000000Z_m1.jpg", b"late, with an old name")  # out-of-order delivery is still listed
    pages, cursor = list_all(store, cursor)
    assert [k for p in pages for k in p] == ["m1/20240101T000000Z_m1.jpg"]
    store.put(NAMES[0], b"changed")  # an overwritten photo is listed again
    store.delete(NAMES[1])  # a deleted one is not
    pages, cursor = list_all(store, cursor)
    assert [k for p in pages for k in p] == [NAMES[0]]
    assert list_all(store, cursor)[0] == [[]]


def test_a_cursor_of_another_kind_is_refused(store: ImageStore) -> None:
    store.put(NAMES[0], b"x")
    with pytest.raises(InputError):
        store.list_new("not-a-cursor")
