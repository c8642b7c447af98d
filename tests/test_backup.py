"""The backup tool over a real LocalStore and over DropboxStore against the HTTPS fake, with faults mid-run."""

from __future__ import annotations

import fcntl
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_dropbox import FakeDropbox

import smartmeter.fileio as fileio
from smartmeter.backup_dropbox.auth import obtain_refresh_token, save_secret_file
from smartmeter.backup_dropbox.backup import LOCK_NAME, MANIFEST_NAME, STATE_NAME, run_backup
from smartmeter.cli import cli
from smartmeter.errors import ConfigError, StoreError
from smartmeter.hashing import content_hash
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
    s = run_backup(local, dest, delete_after=True, progress=False)
    assert s.failed == [bad_key] and s.deleted == 4
    assert [r.key for r in local.list_new().refs] == [bad_key]  # not deleted: its copy did not verify
    assert not (dest / bad_key).exists()
    assert not [p for p in dest.rglob(".tmp-*")]
    monkeypatch.setattr(fileio, "file_content_hash", real)
    s2 = run_backup(local, dest, delete_after=True, progress=False)  # retried first, then deleted
    assert s2.failed == [] and s2.deleted == 1
    assert archived_files(dest) == expected and local.list_new().refs == []
    assert sum(1 for r in manifest(dest) if r["event"] == "source_deleted") == 5


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
        run_backup(local, dest, page_size=2, progress=False)
    assert len(archived_files(dest)) == 2
    monkeypatch.setattr(local, "get", real_get)
    s = run_backup(local, dest, page_size=2, progress=False)
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


def test_dropbox_backup_with_fault_mid_run(dbx: DropboxStore, fake: FakeDropbox, tmp_path: Path) -> None:
    dest = tmp_path / "archive"
    expected = fill(dbx)
    fake.fail_next("files/download", "500", times=10, after=2)  # Dropbox goes down after 2 photos
    with pytest.raises(StoreError, match="gave up"):
        run_backup(dbx, dest, page_size=2, progress=False)
    assert len(archived_files(dest)) == 2
    fake.faults.clear()
    before = fake.calls.count("files/download")
    s = run_backup(dbx, dest, page_size=2, progress=False)
    assert s.copied == 3 and fake.calls.count("files/download") - before == 3
    assert archived_files(dest) == expected
    assert sorted(str(r["key"]) for r in manifest(dest)) == sorted(KEYS)
    assert json.loads((dest / STATE_NAME).read_text())["backend"] == "dropbox"


def test_dropbox_dropped_connection_and_bad_hash(dbx: DropboxStore, fake: FakeDropbox, tmp_path: Path) -> None:
    dest = tmp_path / "archive"
    expected = fill(dbx)
    fake.fail_next("files/download", "drop", after=1)  # survives by retry
    fake.fail_next("files/download", "bad_hash", after=3)  # one photo does not verify
    s = run_backup(dbx, dest, delete_after=True, progress=False)
    assert len(s.failed) == 1 and s.copied == 4 and s.deleted == 4
    bad = s.failed[0]
    assert list(fake.files()) == ["/smartmeter/" + bad]  # never deleted without a verified copy
    s2 = run_backup(dbx, dest, delete_after=True, progress=False)
    assert s2.failed == [] and s2.copied == 1 and fake.files() == {}
    assert archived_files(dest) == expected


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
