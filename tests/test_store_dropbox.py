"""Both Dropbox clients against a local HTTPS fake of Dropbox (tests/fake_dropbox.py), faults included: every test
runs on ``DropboxStore`` (the real SDK) and on ``DropboxHttpStore`` (the standard-library client the Pi uses)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import certifi
import pytest
from fake_dropbox import FakeDropbox
from store_doubles import dropbox_store

from smartmeter.errors import ConfigError, InputError, IntegrityError, NotFoundError, StoreError
from smartmeter.hashing import content_hash
from smartmeter.settings import StoreSettings
from smartmeter.store import open_store
from smartmeter.store.dropbox_http import DropboxHttpStore
from smartmeter.store.dropbox_store import DropboxStore

Store = DropboxStore | DropboxHttpStore
KEY = "m1/20250101T000000Z_m1.jpg"
PHOTO = bytes(range(256)) * 40  # 10 KiB, enough to be cut in half


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeDropbox]:
    server = FakeDropbox(tmp_path).start()
    yield server
    server.stop()


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


CLIENT = "sdk"


@pytest.fixture(params=["sdk", "http"], autouse=True)
def client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(sys.modules[__name__], "CLIENT", request.param)
    return str(request.param)


def make_store(fake: FakeDropbox, sleeps: Sleeps, **kw: object) -> Store:
    return dropbox_store(fake, sleeps, client=CLIENT, **kw)


@pytest.fixture
def store(fake: FakeDropbox, sleeps: Sleeps) -> Store:
    return make_store(fake, sleeps)


def test_happy_path(store: Store, fake: FakeDropbox) -> None:
    ref = store.put(KEY, PHOTO)
    assert ref.key == KEY and ref.size == len(PHOTO) and ref.content_hash == content_hash(PHOTO)
    assert fake.files() == {"/smartmeter/" + KEY: PHOTO}
    assert store.get(KEY) == PHOTO
    assert store.exists(KEY) and not store.exists("m1/nope.jpg")
    store.put(KEY, b"second version")  # overwrite
    assert store.get(KEY) == b"second version"
    store.delete(KEY)
    assert fake.files() == {}
    with pytest.raises(NotFoundError):
        store.get(KEY)
    with pytest.raises(NotFoundError):
        store.delete(KEY)
    assert fake.refreshes == 1  # one access token for the whole session


def test_open_store_reads_sdk_host_env(fake: FakeDropbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DROPBOX_API_HOST", fake.api_host)
    monkeypatch.setenv("DROPBOX_API_CONTENT_HOST", fake.api_host)
    monkeypatch.setenv("SMARTMETER_DROPBOX_REFRESH_TOKEN", fake.refresh_token)
    monkeypatch.delenv("SMARTMETER_DROPBOX_APP_SECRET", raising=False)
    # requests would let this override the SDK's CA bundle; the store must keep the configured one
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    settings = StoreSettings.model_validate({"backend": "dropbox", "dropbox": {
        "app_key": fake.app_key, "root": "/meters/", "ca_certs": str(fake.ca_file), "client": CLIENT}})
    s = open_store(settings)
    assert isinstance(s, DropboxHttpStore if CLIENT == "http" else DropboxStore)
    s.put(KEY, PHOTO)
    assert fake.files() == {"/meters/" + KEY: PHOTO}
    assert [r.key for r in s.list_new().refs] == [KEY]


def test_missing_refresh_token_is_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMARTMETER_DROPBOX_REFRESH_TOKEN", raising=False)
    monkeypatch.delenv("SMARTMETER_DROPBOX_REFRESH_TOKEN_FILE", raising=False)
    with pytest.raises(ConfigError, match="SMARTMETER_DROPBOX_REFRESH_TOKEN"):
        open_store(StoreSettings.model_validate({"backend": "dropbox", "dropbox": {"app_key": "k"}}))


def test_wrong_refresh_token_is_config_error(fake: FakeDropbox, sleeps: Sleeps) -> None:
    with pytest.raises(ConfigError, match="credentials"):
        make_store(fake, sleeps, refresh_token="revoked").put(KEY, PHOTO)


def test_app_secret_is_sent_when_configured(tmp_path: Path, sleeps: Sleeps) -> None:
    fake = FakeDropbox(tmp_path, app_secret="s3cret").start()
    try:
        with pytest.raises(ConfigError):
            make_store(fake, sleeps).put(KEY, PHOTO)
        make_store(fake, sleeps, app_secret="s3cret").put(KEY, PHOTO)
        assert list(fake.files()) == ["/smartmeter/" + KEY]
    finally:
        fake.stop()


def test_untrusted_certificate_is_not_retried(fake: FakeDropbox, sleeps: Sleeps) -> None:
    with pytest.raises(StoreError, match="TLS"):
        make_store(fake, sleeps, ca_certs=None).put(KEY, PHOTO)
    assert sleeps == []


def test_dropped_connection_mid_download_is_retried(store: Store, fake: FakeDropbox, sleeps: Sleeps) -> None:
    store.put(KEY, PHOTO)
    fake.fail_next("files/download", "drop", times=2)
    assert store.get(KEY) == PHOTO
    assert fake.calls.count("files/download") == 3 and sleeps == [0.01, 0.02]


@pytest.mark.fault("network cut mid-upload", proves="the upload is retried after the line goes dead mid-body; the "
                   "photo is stored once, intact")
def test_dropped_connection_mid_upload_is_retried(store: Store, fake: FakeDropbox, sleeps: Sleeps) -> None:
    fake.fail_next("files/upload", "drop")
    store.put(KEY, PHOTO)
    assert fake.files() == {"/smartmeter/" + KEY: PHOTO}
    assert fake.calls.count("files/upload") == 2 and len(sleeps) == 1


@pytest.mark.fault("Dropbox 429", proves="the upload waits the server's Retry-After, then succeeds")
def test_rate_limit_honours_retry_after(store: Store, fake: FakeDropbox, sleeps: Sleeps) -> None:
    fake.fail_next("files/upload", "429", retry_after=7)
    store.put(KEY, PHOTO)
    assert sleeps == [7.0]  # the server's wait, not our backoff


@pytest.mark.fault("Dropbox 5xx", proves="500s on listing and download are retried with backoff; past the retries "
                   "a clear error")
def test_server_errors_retried_then_given_up(store: Store, fake: FakeDropbox, sleeps: Sleeps) -> None:
    fake.fail_next("files/list_folder", "500", times=2)
    store.put(KEY, PHOTO)
    assert [r.key for r in store.list_new().refs] == [KEY]
    sleeps.clear()
    fake.fail_next("files/download", "500", times=10)
    with pytest.raises(StoreError, match="gave up after 4 attempts"):
        store.get(KEY)
    assert sleeps == [0.01, 0.02, 0.04]


def test_delete_retried_after_lost_answer(store: Store, fake: FakeDropbox) -> None:
    store.put(KEY, PHOTO)
    fake.fail_next("files/delete_v2", "500")
    store.delete(KEY)
    assert fake.files() == {}


@pytest.mark.fault("corrupt JPEG", proves="bytes flipped in transit (or a wrong hash) are refused by content hash, "
                   "never handed to the reader")
def test_wrong_hash_on_download(store: Store, fake: FakeDropbox) -> None:
    store.put(KEY, PHOTO)
    fake.fail_next("files/download", "bad_hash")
    with pytest.raises(IntegrityError):
        store.get(KEY)
    fake.fail_next("files/download", "corrupt")
    with pytest.raises(IntegrityError):
        store.get(KEY)
    assert store.get(KEY) == PHOTO


def test_wrong_hash_on_upload(store: Store, fake: FakeDropbox) -> None:
    fake.fail_next("files/upload", "bad_hash")
    with pytest.raises(IntegrityError, match="stored hash"):
        store.put(KEY, PHOTO)


def test_corrupted_upload_is_refused_and_old_version_kept(store: Store, fake: FakeDropbox) -> None:
    store.put(KEY, b"old photo")
    fake.fail_next("files/upload", "corrupt")
    with pytest.raises(IntegrityError, match="nothing was written"):
        store.put(KEY, PHOTO)
    assert fake.files() == {"/smartmeter/" + KEY: b"old photo"}


@pytest.mark.fault("network cut mid-upload", proves="photos lost: 0 (every retry cut: the older photos and the "
                   "previous version stay as they were)")
def test_nothing_stored_is_lost_after_failed_put(store: Store, fake: FakeDropbox) -> None:
    store.put("a/20250101T000000Z_a.jpg", b"A")
    store.put(KEY, b"old B")
    fake.fail_next("files/upload", "drop", times=10)
    with pytest.raises(StoreError, match="connection dropped"):
        store.put(KEY, PHOTO)
    assert fake.files() == {"/smartmeter/a/20250101T000000Z_a.jpg": b"A", "/smartmeter/" + KEY: b"old B"}
    assert store.get(KEY) == b"old B"


@pytest.mark.fault("Dropbox expired token", proves="the access token is refreshed and the call succeeds; no token in "
                   "the logs")
def test_expired_token_is_refreshed(store: Store, fake: FakeDropbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store.put(KEY, PHOTO)
    fake.expire_tokens()
    assert store.get(KEY) == PHOTO
    assert fake.refreshes == 2
    assert fake.calls.count("oauth2/token") == 2
    assert fake.refresh_token not in caplog.text and "sl.fake-access" not in caplog.text
    assert fake.refresh_token not in repr(store)


def test_listing_with_cursor_across_pages(store: Store, fake: FakeDropbox) -> None:
    keys = [f"m{i % 2}/2025010{i + 1}T000000Z_m{i % 2}.jpg" for i in range(5)]
    for k in keys:
        store.put(k, k.encode())
    store.put("m0/notes.txt", b"not a photo")
    seen, cursor, pages = [], None, 0
    while True:
        res = store.list_new(cursor, limit=2)
        seen += [r.key for r in res.refs]
        cursor, pages = res.cursor, pages + 1
        if not res.has_more:
            break
    assert sorted(seen) == sorted(keys) and len(seen) == 5 and pages >= 3
    assert all(r.content_hash for r in store.list_new().refs)
    assert store.list_new(cursor).refs == []
    store.put("m9/20240101T000000Z_m9.jpg", b"late")  # arrives late with an old name
    new = store.list_new(cursor)
    assert [r.key for r in new.refs] == ["m9/20240101T000000Z_m9.jpg"]
    assert new.refs[0].content_hash == content_hash(b"late")


def test_reset_cursor_starts_over(store: Store, fake: FakeDropbox, caplog: pytest.LogCaptureFixture) -> None:
    store.put(KEY, PHOTO)
    cursor = store.list_new().cursor
    fake.reset_cursors()
    with caplog.at_level(logging.WARNING):
        res = store.list_new(cursor)
    assert [r.key for r in res.refs] == [KEY]
    assert "from the beginning" in caplog.text


def test_bad_cursor_and_missing_root(store: Store) -> None:
    res = store.list_new()
    assert res.refs == [] and res.cursor == "" and not res.has_more
    with pytest.raises(InputError):
        store.list_new("garbage-cursor")


def test_rejects_escaping_keys(store: Store) -> None:
    for bad in ("../x.jpg", "a/../../x.jpg", ""):
        with pytest.raises(InputError):
            store.put(bad, b"x")


def test_http_client_imports_neither_sdk_nor_requests(fake: FakeDropbox, tmp_path: Path) -> None:
    """The Pi's memory figure rests on this: with ``client: http`` the camera path never imports the SDK (40 MB)."""
    import subprocess

    cfg = tmp_path / "s.yaml"
    cfg.write_text(f"store:\n  backend: dropbox\n  dropbox:\n    app_key: {fake.app_key}\n"
                   f"    ca_certs: {fake.ca_file}\n    client: http\n")
    code = ("import sys; from smartmeter.settings import load_settings; from smartmeter.store import open_store; "
            "import smartmeter.raspi.cli, smartmeter.raspi.daemon; "
            f"s = open_store(load_settings({str(cfg)!r}).store); s.put('m1/20250101T000000Z_m1.jpg', b'x'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dropbox', 'requests', 'urllib3', 'cv2')))")
    env = dict(os.environ, DROPBOX_API_HOST=fake.api_host, DROPBOX_API_CONTENT_HOST=fake.api_host,
               SMARTMETER_DROPBOX_REFRESH_TOKEN=fake.refresh_token)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert list(fake.files()) == ["/smartmeter/m1/20250101T000000Z_m1.jpg"]
