"""Fault tests of the Pi path against real parts: the TLS Dropbox fake with the real SDK, a real process killed
with SIGKILL mid-write, a real full filesystem (a small tmpfs)."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fake_dropbox import FakeDropbox

from smartmeter.errors import StoreError
from smartmeter.raspi.camera import Camera
from smartmeter.raspi.daemon import CaptureLoop
from smartmeter.raspi.spool import Spool
from smartmeter.raspi.uploader import Uploader
from smartmeter.store.dropbox_http import DropboxHttpStore
from smartmeter.store.dropbox_store import DropboxStore
from smartmeter.store.local import LocalStore
from smartmeter.types import ImageRef, parse_photo_name

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def photo(i: int, size: int = 200) -> bytes:
    """A photo whose last 32 bytes are the SHA-256 of the rest: any cut or mix-up shows."""
    body = b"\xff\xd8" + (b"%08d" % i) * (size // 8)
    return body + hashlib.sha256(body).digest()


def intact(data: bytes) -> bool:
    return len(data) > 32 and hashlib.sha256(data[:-32]).digest() == data[-32:]


class NumberedCamera(Camera):
    def __init__(self) -> None:
        self.n = 0

    def capture(self, ts: datetime) -> bytes:
        self.n += 1
        return photo(self.n)


class RecordingDropbox(DropboxStore):
    """The real Dropbox store (SDK client); remembers the keys it confirmed, in order."""

    confirmed: list[str]

    def put(self, key: str, data: bytes) -> ImageRef:
        ref = super().put(key, data)
        self.confirmed.append(key)
        return ref


class RecordingDropboxHttp(DropboxHttpStore):
    """The real Dropbox store (standard-library client, the Pi's); remembers the keys it confirmed, in order."""

    confirmed: list[str]

    def put(self, key: str, data: bytes) -> ImageRef:
        ref = super().put(key, data)
        self.confirmed.append(key)
        return ref


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeDropbox]:
    server = FakeDropbox(tmp_path).start()
    yield server
    server.stop()


@pytest.mark.fault("network cut mid-upload", proves="photos lost: 0, duplicates: 0 (the network down for 100 captures "
                   "then back: all 100 reach Dropbox, in capture order, each once, intact)")
@pytest.mark.parametrize("client", ["sdk", "http"])
def test_network_down_for_100_captures_then_back(tmp_path: Path, fake: FakeDropbox, client: str) -> None:
    kind = RecordingDropboxHttp if client == "http" else RecordingDropbox
    store = kind(app_key=fake.app_key, refresh_token=fake.refresh_token, root="/smartmeter",
                 api_host=fake.api_host, content_host=fake.api_host, ca_certs=fake.ca_file,
                 max_retries=1, backoff_s=0.01, timeout_s=5)
    store.confirmed = []
    fake.fail_next("files/upload", "drop", times=10**6)  # every upload cut mid-body: the line is down
    spool = Spool(tmp_path / "spool", 10**8)
    stop = threading.Event()
    uploader = Uploader(spool, store, idle_s=0.01, backoff_s=0.01, max_backoff_s=0.05, stop=stop)
    th = threading.Thread(target=uploader.run)
    th.start()
    try:
        capture = CaptureLoop(NumberedCamera(), spool, "m1", 60)
        for i in range(100):
            assert capture.capture_once(T0.timestamp() + 60 * i) is not None
        # the first upload (TLS set-up, a retry) may still be failing when 100 quick captures are done: wait for it
        deadline = time.time() + 30
        while not uploader.stats.failures and time.time() < deadline:
            time.sleep(0.01)
        assert uploader.stats.failures > 0 and spool.count() == 100 and not fake.files()
        fake.faults.clear()  # the network is back
        deadline = time.time() + 60
        while spool.count() and time.time() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        th.join(30)
    expected = [f"m1/{(T0 + timedelta(minutes=i)):%Y%m%dT%H%M%S}Z_m1.jpg" for i in range(100)]
    assert store.confirmed == expected  # in order, none twice
    files = fake.files()
    assert len(files) == 100
    for i, key in enumerate(expected):
        assert files[f"/smartmeter/{key}"] == photo(i + 1)
    assert spool.count() == 0


WRITER = """
import sys, time
from datetime import UTC, datetime, timedelta
from smartmeter.raspi.spool import Spool
spool = Spool(sys.argv[1], 10**12, stale_tmp_s=10**9)
t0 = datetime(2025, 3, 1, tzinfo=UTC)
i = int(sys.argv[2])
size = int(sys.argv[3])
import hashlib
while True:
    body = b"\\xff\\xd8" + (b"%08d" % i) * (size // 8)
    spool.add("m1", t0 + timedelta(minutes=i), body + hashlib.sha256(body).digest())
    i += 1
"""


@pytest.mark.fault("power cut mid-write", proves="photos lost: 0, partial photos uploaded: 0 (the daemon killed "
                   "with SIGKILL while writing, again and again: every photo uploaded is whole)")
def test_kill_9_during_a_write_never_uploads_a_partial_file(tmp_path: Path) -> None:
    root, store = tmp_path / "spool", LocalStore(tmp_path / "store")
    root.mkdir()
    partial_seen, start, runs, uploaded = 0, 0, 0, 0
    while runs < 25 and not (partial_seen and uploaded >= 3):  # until a write was cut and some photos went up
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(start), str(4 << 20)])
        time.sleep(0.5 + 0.15 * (runs % 8))  # kill at a different moment each time
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        runs += 1
        partial_seen += any(p.name.startswith(".tmp-") for p in root.iterdir())
        spool = Spool(root, 10**12, stale_tmp_s=10**9)  # restart: leftovers are not photos
        n = Uploader(spool, store).upload_once()
        uploaded, start = uploaded + n, start + n + 1
    assert partial_seen, "no write was ever cut: the test did not test anything"
    refs = store.list_new().refs
    assert refs and all(intact(store.get(r.key)) for r in refs)
    assert all(p.name.startswith(".tmp-") for p in root.iterdir())  # only the cut temp files are left
    Spool(root, 10**12, stale_tmp_s=0)  # and the next start after they went stale cleans them
    assert not list(root.iterdir())


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize("free_check", [True, False], ids=["free-space-check", "enospc-on-write"])
@pytest.mark.fault("disk full", proves="photos lost: 0 readings' worth (a real full disk during a 2-day outage: the "
                   "backlog is thinned, never cut; the energy over the outage and each day stays recoverable; a "
                   "warning is logged)")
def test_disk_full_thins_the_backlog(small_disk: Path, caplog: pytest.LogCaptureFixture, free_check: bool) -> None:
    kw = {} if free_check else {"free_bytes": lambda p: 10**12}  # the second run finds out only from ENOSPC
    spool = Spool(small_disk / "spool", 10**12, min_free_bytes=100_000 if free_check else 0, **kw)  # type: ignore[arg-type]
    n = 2 * 24 * 12  # two days, every 5 minutes
    with caplog.at_level(logging.WARNING):
        for i in range(n):
            try:
                spool.add("m1", T0 + timedelta(minutes=5 * i), photo(i, size=20_000))
            except StoreError:
                pytest.fail(f"photo {i} refused although the backlog could still be thinned")
    kept = {parse_photo_name(e.name)[1]: e for e in spool.entries()}
    assert spool.thinned > 0 and len(kept) < n
    assert "thinned" in caplog.text
    if not free_check:
        assert "disk full writing" in caplog.text  # the real ENOSPC was hit, thinned, and the write retried
    times = [T0 + timedelta(minutes=5 * i) for i in range(n)]
    assert times[0] in kept and times[-1] in kept  # the energy over the whole outage
    last_of_day: dict[object, datetime] = {}
    for t in times:
        last_of_day[t.date()] = t
    assert all(t in kept for t in last_of_day.values())  # and of each day
    assert all(intact(e.path.read_bytes()) for e in kept.values())
