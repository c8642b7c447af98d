"""The backup tool over a real LocalStore and over DropboxStore against the HTTPS fake, with faults mid-run."""

from __future__ import annotations

import fcntl
import json
import os
import re
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_dropbox import FakeDropbox

import smartmeter.fileio as fileio
from smartmeter.backup_dropbox.auth import obtain_refresh_token, save_secret_file
from smartmeter.backup_dropbox.backup import LOCK_NAME, MANIFEST_NAME, STATE_NAME, run_backup
from smartmeter.backup_dropbox.keep import KeepPolicy
from smartmeter.cli import cli
from smartmeter.errors import ConfigError, StoreError
from smartmeter.hashing import content_hash
from smartmeter.server import camera_book as book
from smartmeter.server.database import open_database
from smartmeter.store.base import ImageStore
from smartmeter.store.dropbox_store import DropboxStore
from smartmeter.store.local import LocalStore

KEYS = [f"m{i % 2}/2025010{i + 1}T000000Z_m{i % 2}.jpg" for i in range(5)]


def photo(i: int) -> bytes:
    return bytes([i]) * (3000 + i)


def manifest(dest: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (dest / MANIFEST_NAME).read_text().splitlines()]


def archived_files(dest: Path) -> dict[str, bytes]:
    return {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


def fill(store: LocalStore | DropboxStore) -> dict[str, bytes]:
    for i, k in enumerate(KEYS):
        store.put(k, photo(i))
    return {k: photo(i) for i, k in enumerate(KEYS)}


def processed_by_worker(tmp_path: Path, store: ImageStore) -> KeepPolicy:
    """A readings database in which the worker has recorded every photo now in ``store`` (its photos table)."""
    url = f"sqlite:///{tmp_path / 'readings.sqlite'}"
    db = open_database(url)
    for ref in store.list_new(None, limit=10_000).refs:
        book.record_photo(db, ref.key, ref.content_hash, "m", None, "published")
    db.close()
    return KeepPolicy.open(url, keep_days=7)


@pytest.fixture
def local(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeDropbox]:
    server = FakeDropbox(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def dbx(fake: FakeDropbox) -> DropboxStore:
    return DropboxStore(app_key=fake.app_key, refresh_token=fake.refresh_token, api_host=fake.api_host,
                        content_host=fake.api_host, ca_certs=fake.ca_file, max_retries=2, backoff_s=0,
                        timeout_s=5)


def test_local_incremental(local: LocalStore, tmp_path: Path) -> None:
    dest = tmp_path / "archive"
    expected = fill(local)
    s1 = run_backup(local, dest, progress=False)
    assert (s1.listed, s1.copied, s1.skipped) == (5, 5, 0)
    assert archived_files(dest) == expected
    rows = manifest(dest)
    assert sorted(str(r["key"]) for r in rows) == sorted(KEYS)
    assert all(r["content_hash"] == content_hash(expected[str(r["key"])]) for r in rows)
    assert json.loads((dest / STATE_NAME).read_text())["backend"] == "local"
    s2 = run_backup(local, dest, progress=False)
    assert (s2.listed, s2.copied) == (0, 0)  # the cursor remembers
    local.put("m2/20250201T000000Z_m2.jpg", b"new")
    s3 = run_backup(local, dest, progress=False)
    assert (s3.listed, s3.copied) == (1, 1)
    assert len(manifest(dest)) == 6
    assert LocalStore(dest).get("m2/20250201T000000Z_m2.jpg") == b"new"  # the archive is a store itself


def test_present_files_are_skipped_not_duplicated(local: LocalStore, tmp_path: Path) -> None:
    dest = tmp_path / "archive"
    fill(local)
    run_backup(local, dest, progress=False)
    (dest / STATE_NAME).unlink()  # lost state: a full pass again
    s = run_backup(local, dest, progress=False)
    assert (s.listed, s.copied, s.skipped) == (5, 0, 5)
    assert len(manifest(dest)) == 5


def test_delete_after_removes_only_verified(local: LocalStore, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "archive"
    expected = fill(local)
    real = fileio.file_content_hash
    bad_key = KEYS[2]

    def flaky_disk(path: Path) -> str:  # the disk returns other bytes for one photo
        return "0" * 64 if path.parent == dest / bad_key.split("/")[0] and path.name.startswith(".tmp-") \
            and path.stat().st_size == len(expected[bad_key]) else real(path)

    monkeypatch.setattr(fileio, "file_content_hash", flaky_disk)
    policy = processed_by_worker(tmp_path, local)
    s = run_backup(local, dest, delete_after=True, progress=False, policy=policy)
    assert s.failed == [bad_key] and s.deleted == 4
    assert [r.key for r in local.list_new().refs] == [bad_key]  # not deleted: its copy did not verify
    assert not (dest / bad_key).exists()
    assert not [p for p in dest.rglob(".tmp-*")]
    monkeypatch.setattr(fileio, "file_content_hash", real)
    s2 = run_backup(local, dest, delete_after=True, progress=False, policy=policy)  # retried first, then deleted
    assert s2.failed == [] and s2.deleted == 1
    assert archived_files(dest) == expected and local.list_new().refs == []
    assert sum(1 for r in manifest(dest) if r["event"] == "source_deleted") == 5


@pytest.mark.fault("power cut mid-write", proves="photos lost: 0 (a backup that dies mid-run resumes after the last "
                   "saved page; nothing copied twice)")
def test_local_fault_mid_run_resumes(local: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "archive"
    expected = fill(local)
    real_get, calls = local.get, []

    def failing_get(key: str) -> bytes:
        calls.append(key)
        if len(calls) == 3:
            raise StoreError("disk of the store went away")
        return real_get(key)

    monkeypatch.setattr(local, "get", failing_get)
    with pytest.raises(StoreError):
        run_backup(local, dest, page_size=2, progress=False, jobs=1)
    assert len(archived_files(dest)) == 2
    monkeypatch.setattr(local, "get", real_get)
    s = run_backup(local, dest, page_size=2, progress=False, jobs=1)
    assert s.copied == 3 and s.skipped == 0  # resumed after the saved page, nothing copied twice
    assert archived_files(dest) == expected
    assert sorted(str(r["key"]) for r in manifest(dest)) == sorted(KEYS)


def test_changed_photo_keeps_old_copy(local: LocalStore, tmp_path: Path) -> None:
    dest = tmp_path / "archive"
    local.put(KEYS[0], b"first")
    run_backup(local, dest, progress=False)
    os.utime(local.root / KEYS[0], ns=(2 * 10**18, 2 * 10**18))
    local.put(KEYS[0], b"second")
    run_backup(local, dest, progress=False)
    assert (dest / KEYS[0]).read_bytes() == b"second"
    kept = list((dest / KEYS[0]).parent.glob("*.replaced-*"))
    assert [p.read_bytes() for p in kept] == [b"first"]


def test_one_backup_at_a_time(local: LocalStore, tmp_path: Path) -> None:
    dest = tmp_path / "archive"
    dest.mkdir()
    with (dest / LOCK_NAME).open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        with pytest.raises(StoreError, match="another backup"):
            run_backup(local, dest, progress=False)


@pytest.mark.fault("Dropbox 5xx", proves="photos lost: 0 (Dropbox down mid-backup: the run stops, the next resumes; "
                   "nothing downloaded twice)")
def test_dropbox_backup_with_fault_mid_run(dbx: DropboxStore, fake: FakeDropbox, tmp_path: Path) -> None:
    dest = tmp_path / "archive"
    expected = fill(dbx)
    fake.fail_next("files/download", "500", times=10, after=2)  # Dropbox goes down after 2 photos
    with pytest.raises(StoreError, match="gave up"):
        run_backup(dbx, dest, page_size=2, progress=False, jobs=1)
    assert len(archived_files(dest)) == 2
    fake.faults.clear()
    before = fake.calls.count("files/download")
    s = run_backup(dbx, dest, page_size=2, progress=False, jobs=1)
    assert s.copied == 3 and fake.calls.count("files/download") - before == 3
    assert archived_files(dest) == expected
    assert sorted(str(r["key"]) for r in manifest(dest)) == sorted(KEYS)
    assert json.loads((dest / STATE_NAME).read_text())["backend"] == "dropbox"


@pytest.mark.fault("network cut mid-upload", proves="photos lost: 0 (a download cut mid-body is retried; a photo "
                   "never leaves Dropbox without a verified copy)")
def test_dropbox_dropped_connection_and_bad_hash(dbx: DropboxStore, fake: FakeDropbox, tmp_path: Path) -> None:
    dest = tmp_path / "archive"
    expected = fill(dbx)
    fake.fail_next("files/download", "drop", after=1)  # survives by retry
    fake.fail_next("files/download", "bad_hash", after=3)  # one photo does not verify
    policy = processed_by_worker(tmp_path, dbx)
    s = run_backup(dbx, dest, delete_after=True, progress=False, policy=policy)
    assert len(s.failed) == 1 and s.copied == 4 and s.deleted == 4
    bad = s.failed[0]
    assert list(fake.files()) == ["/smartmeter/" + bad]  # never deleted without a verified copy
    s2 = run_backup(dbx, dest, delete_after=True, progress=False, policy=policy)
    assert s2.failed == [] and s2.copied == 1 and fake.files() == {}
    assert archived_files(dest) == expected


@pytest.mark.fault("Dropbox expired token", proves="photos lost: 0 (tokens expire in the middle of parallel "
                   "downloads: each thread gets a fresh token, every photo is archived once)")
def test_parallel_downloads_survive_expired_tokens(dbx: DropboxStore, fake: FakeDropbox, tmp_path: Path) -> None:
    expected = {k: photo(i) for i, k in enumerate(KEYS)}
    more = {f"m2/2025020{i + 1}T000000Z_m2.jpg": bytes([i + 50]) * 2000 for i in range(7)}
    for k, data in {**expected, **more}.items():
        dbx.put(k, data)
    real_get = dbx.get
    calls: list[str] = []

    def get_expiring(key: str) -> bytes:
        calls.append(key)
        if len(calls) in (3, 8):
            fake.expire_tokens()  # every access token dies while other downloads are in flight
        return real_get(key)

    dbx.get = get_expiring  # type: ignore[method-assign]
    s = run_backup(dbx, tmp_path / "archive", progress=False, page_size=6, jobs=4)
    assert (s.copied, s.failed) == (12, []) and fake.refreshes >= 2
    assert archived_files(tmp_path / "archive") == {**expected, **more}


def test_cli_backup(local: LocalStore, tmp_path: Path) -> None:
    fill(local)
    cfg = tmp_path / "smartmeter.yaml"
    cfg.write_text(f"store:\n  local:\n    root: {local.root}\n")
    runner = CliRunner()
    res = runner.invoke(cli, ["-c", str(cfg), "backup", "--dest", str(tmp_path / "a"), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "5 copied" in res.output
    assert runner.invoke(cli, ["-c", str(cfg), "backup"]).exit_code == 65


def test_auth_flow_pkce_and_secret(fake: FakeDropbox, tmp_path: Path) -> None:
    urls: list[str] = []

    def user(url: str) -> str:
        urls.append(url)
        return fake.auth_code

    token = obtain_refresh_token(fake.app_key, None, user, api_host=fake.api_host, ca_certs=fake.ca_file)
    assert token == fake.refresh_token
    assert "token_access_type=offline" in urls[0] and "code_challenge=" in urls[0]
    with pytest.raises(ConfigError, match="refused"):
        obtain_refresh_token(fake.app_key, None, lambda u: "wrong", api_host=fake.api_host, ca_certs=fake.ca_file)
    fake.app_secret = "s3cret"
    assert obtain_refresh_token(fake.app_key, "s3cret", user, api_host=fake.api_host,
                                ca_certs=fake.ca_file) == fake.refresh_token
    path = tmp_path / "cfg" / "token"
    save_secret_file(path, token)
    assert path.read_text().strip() == token and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_cli_auth_never_shows_token(fake: FakeDropbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DROPBOX_API_HOST", fake.api_host)
    monkeypatch.delenv("SMARTMETER_DROPBOX_APP_SECRET", raising=False)
    cfg = tmp_path / "smartmeter.yaml"
    cfg.write_text(f"store:\n  dropbox:\n    app_key: {fake.app_key}\n    ca_certs: {fake.ca_file}\n")
    out = tmp_path / "tok"
    res = CliRunner().invoke(cli, ["-c", str(cfg), "-vv", "backup", "auth", "--token-file", str(out)],
                             input=fake.auth_code + "\n")
    assert res.exit_code == 0, res.output
    assert out.read_text().strip() == fake.refresh_token
    assert fake.refresh_token not in res.output and "SMARTMETER_DROPBOX_REFRESH_TOKEN_FILE" in res.output


# -- --delete-after never removes a photo the worker has not processed ---------------------------------------------

PHOTOS = Path(__file__).parent / "resources" / "photos"
T0 = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)


def meter_photo(i: int) -> bytes:
    """The test meter photo with a little noise: other bytes each time, the same reading (48127.3)."""
    import cv2
    import numpy as np

    img = cv2.imread(str(PHOTOS / "upright.jpg")).astype(np.int16)
    img += np.random.default_rng(i).integers(-2, 3, img.shape, dtype=np.int16)
    ok, buf = cv2.imencode(".jpg", np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return buf.tobytes()


def put_photos(store: ImageStore, start: int, n: int) -> list[str]:
    from smartmeter.types import photo_name

    keys = [photo_name("meter", T0 + timedelta(minutes=10 * i)) for i in range(start, start + n)]
    for i, key in zip(range(start, start + n), keys, strict=True):
        store.put(key, meter_photo(i))
    return keys


def dropbox_config(tmp_path: Path, fake: FakeDropbox, monkeypatch: pytest.MonkeyPatch, db_url: str,
                   extra: str = "") -> Path:
    monkeypatch.setenv("DROPBOX_API_HOST", fake.api_host)
    monkeypatch.setenv("DROPBOX_API_CONTENT_HOST", fake.api_host)
    monkeypatch.setenv("SMARTMETER_DROPBOX_REFRESH_TOKEN", fake.refresh_token)
    cfg = tmp_path / "smartmeter.yaml"
    cfg.write_text(f"""
store: {{backend: dropbox, dropbox: {{app_key: {fake.app_key}, ca_certs: {fake.ca_file}, max_retries: 2,
         backoff_s: 0}}}}
database: {{url: "{db_url}"}}
meters: [{{id: meter, profile: {PHOTOS / 'meter.yaml'}}}]
{extra}""")
    return cfg


def backup_json(cfg: Path, dest: Path, *args: str) -> dict[str, object]:
    res = CliRunner().invoke(cli, ["-c", str(cfg), "backup", "--dest", str(dest), "--json", "--no-progress", *args])
    assert res.exit_code == 0, res.output
    out: dict[str, object] = json.loads(res.stdout)
    return out


@pytest.mark.fault("backup --delete-after before the worker read the photos",
                   proves="photos lost: 0 (unprocessed photos stay in Dropbox and the worker reads them)")
def test_delete_after_keeps_photos_the_worker_has_not_processed(
        tmp_path: Path, fake: FakeDropbox, dbx: DropboxStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reproduction of issue 12 (there with 10 photos): photos in Dropbox the worker has not read yet; the
    backup used to delete them all and the worker then listed 0."""
    from smartmeter.server.worker import Worker
    from smartmeter.settings import load_settings

    url = f"sqlite:///{tmp_path / 'readings.sqlite'}"
    cfg = dropbox_config(tmp_path, fake, monkeypatch, url)
    settings = load_settings(cfg)
    db = open_database(url)
    first = put_photos(dbx, 0, 6)
    out = backup_json(cfg, tmp_path / "archive", "--delete-after")
    assert (out["copied"], out["deleted"]) == (6, 0)
    assert out["kept"] == [{"key": k, "reason": "kept: the worker has not processed it yet"} for k in first]
    assert len(fake.files()) == 6
    assert Worker(settings, db, dbx).run_once().read == 6  # the worker reads them all, later
    later = put_photos(dbx, 6, 4)  # and the camera goes on
    out = backup_json(cfg, tmp_path / "archive", "--delete-after")
    assert (out["listed"], out["copied"], out["deleted"]) == (4, 4, 6)  # the 6 kept last time are asked about again
    assert sorted(fake.files()) == [f"/smartmeter/{k}" for k in later]  # ...and go, now that the worker read them
    assert sorted(str(k["key"]) for k in out["kept"]) == later  # type: ignore[index]
    stats = Worker(settings, db, dbx).run_once()
    assert stats.listed == 4 and stats.read == 4  # nothing the worker needs was deleted
    assert len(db.readings("meter")) == 10
    out = backup_json(cfg, tmp_path / "archive", "--delete-after")
    assert (out["listed"], out["copied"], out["deleted"], out["kept"]) == (0, 0, 4, [])
    assert fake.files() == {} and archived_files(tmp_path / "archive").keys() == set(first + later)
    assert sum(1 for r in manifest(tmp_path / "archive") if r["event"] == "source_deleted") == 10
    db.close()


@pytest.mark.fault("database down", proves="photos lost: 0 (backup --delete-after without the readings database "
                   "deletes only photos older than backup.keep_days)")
@pytest.mark.parametrize("db_url", ["postgresql://smartmeter@127.0.0.1:9/nothing", "sqlite:///{tmp}/gone.sqlite",
                                    "sqlite://gone.sqlite"])
def test_database_unreachable_keeps_the_newest_days(tmp_path: Path, fake: FakeDropbox, dbx: DropboxStore,
                                                    monkeypatch: pytest.MonkeyPatch, db_url: str) -> None:
    monkeypatch.chdir(tmp_path)  # sqlite://gone.sqlite is relative
    old, new = put_photos(dbx, 0, 3), put_photos(dbx, 3, 2)
    now = datetime.now(UTC)
    for i, key in enumerate(old):  # stored 30 days ago; the new ones were stored just now
        fake.entries[f"/smartmeter/{key}".lower()].modified = now - timedelta(days=30, minutes=i)
    cfg = dropbox_config(tmp_path, fake, monkeypatch, db_url.format(tmp=tmp_path), "backup: {keep_days: 10}")
    out = backup_json(cfg, tmp_path / "archive", "--delete-after")
    assert (out["copied"], out["deleted"]) == (5, 3)
    assert sorted(fake.files()) == [f"/smartmeter/{k}" for k in new]
    kept = {str(k["key"]): str(k["reason"]) for k in out["kept"]}  # type: ignore[union-attr]
    assert kept.keys() == set(new)
    assert all("cannot be asked" in why and "backup.keep_days = 10 days" in why for why in kept.values())
    assert not (tmp_path / "gone.sqlite").exists()  # asking never creates a database


@pytest.mark.fault("database down", proves="photos lost: 0 (the database failing mid-backup: the rest of the run "
                   "keeps every photo newer than backup.keep_days)")
def test_database_failing_mid_run_falls_back_to_the_age_rule(tmp_path: Path, local: LocalStore,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    fill(local)
    policy = processed_by_worker(tmp_path, local)
    real_list = local.list_new
    pages: list[int] = []

    def list_then_break_db(cursor: str | None = None, limit: int = 1000) -> object:
        pages.append(1)
        if len(pages) == 2:  # after the first page the readings database stops answering
            other = open_database(f"sqlite:///{tmp_path / 'readings.sqlite'}", migrate=False)
            other.execute("ALTER TABLE photos RENAME TO photos_gone")
            other.close()
        return real_list(cursor, limit)

    monkeypatch.setattr(local, "list_new", list_then_break_db)
    s = run_backup(local, tmp_path / "archive", delete_after=True, progress=False, page_size=2, policy=policy)
    assert s.deleted == 2 and len(s.kept) == 3  # the first page was confirmed; the rest are too new to go
    assert all("cannot be asked" in why and "photos" in why for _, why in s.kept)
    assert sorted(r.key for r in real_list().refs) == sorted(k for k, _ in s.kept)


def test_changed_content_after_the_worker_read_it_is_kept(tmp_path: Path, local: LocalStore) -> None:
    fill(local)
    policy = processed_by_worker(tmp_path, local)
    os.utime(local.root / KEYS[1], ns=(2 * 10**18, 2 * 10**18))
    local.put(KEYS[1], b"other bytes")  # replaced after the worker read it: the worker has not seen these
    s = run_backup(local, tmp_path / "archive", delete_after=True, progress=False, policy=policy)
    assert s.deleted == 4 and [k for k, _ in s.kept] == [KEYS[1]]
    assert "changed after the worker processed it" in s.kept[0][1]
    assert [r.key for r in local.list_new().refs] == [KEYS[1]]


def test_no_policy_means_nothing_recent_is_deleted(tmp_path: Path, local: LocalStore) -> None:
    fill(local)  # names from January 2025, but stored (modified) just now
    s = run_backup(local, tmp_path / "archive", delete_after=True, progress=False)
    assert s.deleted == 0 and len(s.kept) == 5 and len(local.list_new().refs) == 5


# -- --dry-run, --json, progress -----------------------------------------------------------------------------------

def test_dry_run_writes_and_deletes_nothing(tmp_path: Path, local: LocalStore) -> None:
    fill(local)
    local.put(photo_key := "m0/20250301T000000Z_m0.jpg", b"unread")
    policy_db = processed_by_worker(tmp_path, local)
    policy_db.close()
    (local.root / photo_key).unlink()
    local.put(photo_key, b"unread, and changed")  # listed with a hash the worker has not seen
    cfg = tmp_path / "smartmeter.yaml"
    cfg.write_text(f"store:\n  local:\n    root: {local.root}\ndatabase:\n  url: sqlite:///{tmp_path}/readings.sqlite\n")
    dest = tmp_path / "archive"
    dry = backup_json(cfg, dest, "--delete-after", "--dry-run")
    assert not dest.exists() and len(local.list_new().refs) == 6
    assert (dry["dry_run"], dry["copied"], dry["deleted"], dry["bytes_copied"]) == (True, 6, 5, 15010 + 19)
    assert [k["key"] for k in dry["kept"]] == [photo_key]  # type: ignore[index]
    real = backup_json(cfg, dest, "--delete-after")
    assert {k: real[k] for k in ("copied", "deleted", "bytes_copied", "kept")} == \
        {k: dry[k] for k in ("copied", "deleted", "bytes_copied", "kept")}
    assert [r.key for r in local.list_new().refs] == [photo_key]
    again = backup_json(cfg, dest, "--dry-run")
    assert (again["listed"], again["copied"]) == (0, 0)  # the dry run reads the saved cursor


def test_progress_shows_photos_bytes_and_rates(tmp_path: Path, local: LocalStore,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    fill(local)
    run_backup(local, tmp_path / "archive", progress=True)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.search(r": 5 photos, 15\.0 kB \([\d,]+/s, [\d.,]+ [kMG]?B/s, [\d.]+s\)$", line), line


def test_cli_summary_says_why_photos_stay(tmp_path: Path, local: LocalStore) -> None:
    fill(local)
    cfg = tmp_path / "smartmeter.yaml"
    cfg.write_text(f"store:\n  local:\n    root: {local.root}\ndatabase:\n  url: sqlite:///{tmp_path}/none.db\n")
    res = CliRunner().invoke(cli, ["-c", str(cfg), "backup", "--dest", str(tmp_path / "a"), "--delete-after",
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "0 deleted from the store, 5 kept there" in res.output
    assert "5 photo(s) kept: the readings database cannot be asked" in res.output
