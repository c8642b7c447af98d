"""The camera worker end to end on real small meter photos (tests/resources/photos), the real CNN reader,
a local image store and SQLite; plus reprocess and the CLI."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from store_doubles import FlakyStore

from smartmeter.cli import cli
from smartmeter.errors import InputError, StoreError
from smartmeter.server.database import Database, open_database
from smartmeter.server.reprocess import reprocess
from smartmeter.server.worker import Worker, _Item, exif_time, judge, photo_meter_and_time
from smartmeter.settings import Settings, parse_settings
from smartmeter.store.local import LocalStore
from smartmeter.types import DigitValue, ImageRef, OcrResult, photo_name

PHOTOS = Path(__file__).parent / "resources" / "photos"
T0 = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)


def variant(name: str, seed: int) -> bytes:
    """The same meter photo with a little sensor noise: other bytes (other content hash), same reading."""
    raw = cv2.imread(str(PHOTOS / name))
    assert raw is not None
    img = raw.astype(np.int16)
    img += np.random.default_rng(seed).integers(-2, 3, img.shape, dtype=np.int16)
    ok, buf = cv2.imencode(".jpg", np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return buf.tobytes()


def settings_for(tmp_path: Path) -> Settings:
    return parse_settings(f"""
store: {{local: {{root: {tmp_path / 'images'}}}}}
database: {{url: "sqlite:///{tmp_path / 'db.sqlite'}"}}
meters: [{{id: meter, profile: {PHOTOS / 'meter.yaml'}}}]
worker: {{poll_interval_s: 0.05, batch_size: 4, read_threads: 2}}
""")


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Settings, Database, LocalStore]]:
    settings = settings_for(tmp_path)
    db = open_database(settings.database.url)
    yield settings, db, LocalStore(settings.store.local.root)
    db.close()


def put_series(store: LocalStore, n: int, start: int = 0) -> list[str]:
    keys = []
    for i in range(start, start + n):
        key = photo_name("meter", T0 + timedelta(minutes=10 * i))
        store.put(key, variant("upright.jpg", i))
        keys.append(key)
    return keys


def statuses(db: Database) -> dict[str, str]:
    return dict(db.query("SELECT photo_key, status FROM photos"))  # type: ignore[arg-type]


@pytest.mark.fault("corrupt JPEG", proves="wrong values stored: 0 (a truncated JPEG is recorded as failed with the "
                   "reason; the others are read)")
def test_worker_reads_validates_and_is_idempotent(env: tuple[Settings, Database, LocalStore]) -> None:
    settings, db, store = env
    keys = put_series(store, 6)
    store.put(photo_name("meter", T0 + timedelta(minutes=5)), (PHOTOS / "corrupt.jpg").read_bytes())
    store.put("not-a-photo-name.jpg", variant("upright.jpg", 99))
    store.put(photo_name("meter", T0 + timedelta(minutes=15)), store.get(keys[0]))  # same bytes, other name
    stats = Worker(settings, db, store).run_once()
    assert stats.listed == 9 and stats.actions.get("publish") == 6, stats.summary()
    readings = db.readings("meter")
    assert [r.value_kwh for r in readings] == [48127.3] * 6
    assert {r.source for r in readings} == {f"image:{k}" for k in keys}
    assert all(r.reader_version.startswith("cnn") and r.confidence > 0.6 for r in readings)
    st = statuses(db)
    assert st["not-a-photo-name.jpg"] == "failed"
    assert st[photo_name("meter", T0 + timedelta(minutes=5))] == "failed"
    assert st[photo_name("meter", T0 + timedelta(minutes=15))] == "duplicate"
    reasons = dict(db.query("SELECT photo_key, reason FROM photos WHERE status = 'failed'"))
    assert "YYYYmmddTHHMMSSZ" in reasons["not-a-photo-name.jpg"]
    # same store again, with and without the cursor: nothing new
    assert Worker(settings, db, store).run_once().listed == 0
    db.execute("DELETE FROM worker_cursor")
    again = Worker(settings, db, store).run_once()
    assert again.skipped == 9 and again.read == 0
    assert len(db.readings("meter")) == 6


@pytest.mark.fault("misread digit", proves="wrong values stored: 0 (a misread photo is held as suspect, outvoted and "
                   "sent to review)")
def test_misread_photo_is_suspect_then_rejected_to_review(env: tuple[Settings, Database, LocalStore]) -> None:
    settings, db, store = env
    put_series(store, 2)
    wrong = photo_name("meter", T0 + timedelta(minutes=25))
    store.put(wrong, variant("shifted.jpg", 1))  # reads 0135790.2: +87663 kWh in 5 minutes
    Worker(settings, db, store).run_once()
    assert statuses(db)[wrong] == "suspect"
    put_series(store, 3, start=3)  # later frames outvote it
    Worker(settings, db, store).run_once()
    assert statuses(db)[wrong] == "rejected"
    rows = db.query("SELECT reason, state FROM review_queue WHERE photo_key = ?", (wrong,))
    assert rows and rows[0][1] == "open" and "disagrees" in rows[0][0]
    assert 135790.2 not in [r.value_kwh for r in db.readings("meter")]


def test_exif_time_fallback(tmp_path: Path, env: tuple[Settings, Database, LocalStore]) -> None:
    from PIL import Image

    settings, db, store = env
    img = Image.open(io.BytesIO(variant("upright.jpg", 5)))
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = "2025:05:01 10:30:00"
    exif.get_ifd(0x8769)[0x9011] = "+02:00"
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    data = buf.getvalue()
    assert exif_time(data) == datetime(2025, 5, 1, 8, 30, tzinfo=UTC)
    assert photo_meter_and_time("meter/snapshot.jpg", data)[::2] == ("meter", "exif")
    with pytest.raises(InputError):
        photo_meter_and_time("meter/snapshot.jpg", variant("upright.jpg", 5))
    store.put("meter/snapshot.jpg", data)
    Worker(settings, db, store).run_once()
    [r] = db.readings("meter")
    assert r.timestamp == datetime(2025, 5, 1, 8, 30, tzinfo=UTC) and r.value_kwh == 48127.3


@pytest.mark.fault("Dropbox 5xx", proves="the image store failing mid-page commits nothing (no cursor, no photo "
                   "rows); the next poll reads the whole page")
def test_store_failure_commits_nothing_and_next_poll_recovers(env: tuple[Settings, Database, LocalStore]) -> None:
    settings, db, _ = env
    store = FlakyStore(settings.store.local.root, down=True, ops={"get"})  # downloads fail
    put_series(store, 3)
    worker = Worker(settings, db, store)
    with pytest.raises(StoreError):
        worker.run_once()
    assert worker.cursor() is None and not db.query("SELECT 1 FROM photos")
    store.down = False
    assert worker.run_once().actions.get("publish") == 3


def test_run_polls_until_stopped(env: tuple[Settings, Database, LocalStore]) -> None:
    settings, db, store = env
    worker = Worker(settings, db, store)
    t = threading.Thread(target=worker.run)
    t.start()
    put_series(store, 2)
    for _ in range(200):
        if len(db.readings("meter")) == 2:
            break
        threading.Event().wait(0.05)
    worker.stop()
    t.join(timeout=10)
    assert not t.is_alive() and len(db.readings("meter")) == 2


def test_reprocess_replaces_old_reader_version_and_is_deterministic(env: tuple[Settings, Database, LocalStore]) -> None:
    settings, db, store = env
    put_series(store, 4)
    Worker(settings, db, store).run_once()
    db.execute("UPDATE readings SET reader_version = 'old:0', value_kwh = value_kwh + 0.1")
    first = reprocess(db, settings, store, "meter")
    assert first.photos == 4 and first.changed == 4
    readings = db.readings("meter")
    assert [r.value_kwh for r in readings] == [48127.3] * 4
    assert all(r.reader_version != "old:0" for r in readings)
    audit = db.query("SELECT old_value, new_value, old_reader, new_reader FROM corrections WHERE kind = 'reprocess'")
    assert len(audit) == 4 and all(a[0] == pytest.approx(48127.4) and a[2] == "old:0" for a in audit)
    second = reprocess(db, settings, store, "meter", since=T0 + timedelta(minutes=10))
    assert second.photos == 3 and second.changed == 0
    assert [(r.timestamp, r.value_kwh) for r in db.readings("meter")] == [(r.timestamp, r.value_kwh) for r in readings]


def test_cli_worker_review_reprocess(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    cfg = tmp_path / "smartmeter.yaml"
    cfg.write_text(f"""
store: {{local: {{root: {tmp_path / 'images'}}}}}
database: {{url: "sqlite:///{tmp_path / 'db.sqlite'}"}}
meters: [{{id: meter, profile: {PHOTOS / 'meter.yaml'}}}]
""")
    store = LocalStore(settings.store.local.root)
    put_series(store, 3)
    blurred = photo_name("meter", T0 + timedelta(minutes=35))
    store.put(blurred, (PHOTOS / "moved_far.jpg").read_bytes())  # refused by alignment
    run = CliRunner().invoke
    res = run(cli, ["-c", str(cfg), "worker", "--once", "-q"])
    assert res.exit_code == 0, res.output
    assert "publish 3" in res.output
    res = run(cli, ["-c", str(cfg), "review", "list"])
    assert res.exit_code == 0
    res = run(cli, ["-c", str(cfg), "review", "set", "no-such.jpg", "1"])
    assert res.exit_code == 66
    key = photo_name("meter", T0 + timedelta(minutes=10))
    res = run(cli, ["-c", str(cfg), "review", "set", "--yes", key, "48127.4"])
    assert res.exit_code == 0, res.output
    res = run(cli, ["-c", str(cfg), "review", "set", "--", key, "-3"])
    assert res.exit_code == 65
    res = run(cli, ["-c", str(cfg), "reprocess", "--meter", "meter", "-q"])
    assert res.exit_code == 0 and "photos" in res.output, res.output
    with open_database(settings.database.url) as db:
        assert ("review:" + key) in {r.source for r in db.readings("meter")}


@pytest.mark.parametrize("ocr", ["{engine: tesseract, min_confidence: 0.99}",  # the keys install_server.md gave
                                 "{reader: {engine: tesseract, min_confidence: 0.99}}"])
def test_settings_reader_and_threshold_are_what_the_worker_reads_with(ocr: str, tmp_path: Path) -> None:
    from test_worker_faults import unpinned_profile

    settings = parse_settings(f"""
store: {{local: {{root: {tmp_path / 'images'}}}}}
database: {{url: "sqlite:///{tmp_path / 'db.sqlite'}"}}
meters: [{{id: meter, profile: {unpinned_profile(tmp_path)}}}]
ocr: {ocr}
worker: {{batch_size: 4, read_threads: 2}}
""")
    store = LocalStore(settings.store.local.root)
    keys = put_series(store, 2)
    with open_database(settings.database.url) as db:
        Worker(settings, db, store).run_once()
        photos = {k: (str(v), str(r)) for k, v, r in db.query("SELECT photo_key, reader_version, reason FROM photos")}
        assert sorted(photos) == keys
        for version, reason in photos.values():
            assert version.startswith("tesseract:tesseract-"), version  # not the CNN
            assert "confidence below 0.99" in reason, reason  # not the profile's default 0.5
        assert db.readings("meter") == []  # tesseract cannot read these drums with 0.99 confidence


@pytest.mark.fault("digit reader failure (timeout, crash, garbage output)", proves="worker --once and reprocess exit "
                   "69 when the configured tesseract is missing: no photo recorded, no cursor, the photos stay in the "
                   "store")
def test_cli_worker_and_reprocess_refuse_to_start_without_their_reader(tmp_path: Path) -> None:
    from test_worker_faults import unpinned_profile

    cfg = tmp_path / "smartmeter.yaml"
    cfg.write_text(f"""
store: {{local: {{root: {tmp_path / 'images'}}}}}
database: {{url: "sqlite:///{tmp_path / 'db.sqlite'}"}}
meters: [{{id: meter, profile: {unpinned_profile(tmp_path)}}}]
ocr: {{reader: {{engine: tesseract, command: {tmp_path / 'no-tesseract'}}}}}
""")
    keys = put_series(LocalStore(tmp_path / "images"), 2)
    run = CliRunner().invoke
    for args in (["worker", "--once", "-q"], ["reprocess", "-q"]):
        res = run(cli, ["-c", str(cfg), *args])
        assert res.exit_code == 69, res.output
        assert "tesseract not found" in res.output and "apt-get install tesseract-ocr" in res.output
    with open_database(f"sqlite:///{tmp_path / 'db.sqlite'}") as db:
        assert not db.query("SELECT 1 FROM photos") and not db.query("SELECT 1 FROM worker_cursor")
    assert all((tmp_path / "images" / k).is_file() for k in keys)
    res = run(cli, ["-c", str(cfg), "reprocess", "-q", "--engine", "cnn"])  # the CLI's engine wins
    assert res.exit_code == 0 and "0 photos" in res.output, res.output


def test_cli_worker_stops_on_sigterm_after_its_page(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    cfg = tmp_path / "smartmeter.yaml"
    cfg.write_text(f"""
store: {{local: {{root: {tmp_path / 'images'}}}}}
database: {{url: "sqlite:///{tmp_path / 'db.sqlite'}"}}
meters: [{{id: meter, profile: {PHOTOS / 'meter.yaml'}}}]
worker: {{poll_interval_s: 0.2}}
""")
    put_series(LocalStore(tmp_path / "images"), 2)
    proc = subprocess.Popen([sys.executable, "-c", "from smartmeter.cli import cli; cli()", "-c", str(cfg), "worker"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if (tmp_path / "db.sqlite").exists():
                with open_database(f"sqlite:///{tmp_path / 'db.sqlite'}") as db:
                    if len(db.readings("meter")) == 2:
                        break
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, out.decode()
    with open_database(f"sqlite:///{tmp_path / 'db.sqlite'}") as db:
        assert len(db.readings("meter")) == 2


def test_held_frame_with_two_readings_survives_pages_and_history_chooses(
        env: tuple[Settings, Database, LocalStore]) -> None:
    """A photo the assembler refused between 01835.0 and 01834.9 (a resting last drum read 9.93) is held, its
    readings kept in the photos table across pages (each page reloads the validator), and published as the one
    its neighbours allow — audited with the reason. Digits come as the reader returned them."""
    settings, db, _ = env

    def item(i: int) -> _Item:
        key = photo_name("meter", T0 + timedelta(minutes=10 * i))
        return _Item(ImageRef(key, 1, f"h{i}"), "meter", T0 + timedelta(minutes=10 * i), "name", b"")

    def read(text: str) -> OcrResult:
        ds = [DigitValue(float(c), 0.98) for c in text.replace(".", "")]
        return OcrResult(text, float(text), 0.98, ds, reader_version="cnn")

    refused = OcrResult(None, None, 0.97, [DigitValue(float(c), 0.98) for c in "01834"] + [DigitValue(9.93, 0.97)],
                        error="01835.0 or 01834.9: both plausible", reader_version="cnn",
                        candidates=["01835.0", "01834.9"])
    pages = [[(item(0), read("01835.0"))], [(item(1), refused)], [(item(2), read("01835.0"))],
             [(item(3), read("01835.1"))]]
    for page in pages:
        with db.transaction():
            judge(db, settings, page)
    key = item(1).ref.key
    [(status, value, reading, reason)] = db.query(
        "SELECT status, published_kwh, reading, reason FROM photos WHERE photo_key = ?", (key,))
    assert (status, value, reading) == ("published", 1835.0, "01835.0 or 01834.9")
    assert "1835 chosen by" in reason
    stored = [v for (v,) in db.query("SELECT value_kwh FROM readings WHERE meter_id = 'meter' ORDER BY ts_ms")]
    assert stored == [1835.0, 1835.0, 1835.0, 1835.1]
