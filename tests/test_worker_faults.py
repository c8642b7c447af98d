"""Fault injection: digit readers that time out, crash, raise anything, or return garbage, run through the real
Worker on SQLite and PostgreSQL (the ``db`` fixture).

What must hold whatever the reader does: the photo it failed on is recorded as ``failed`` with the reason and waits
in the review queue, the rest of the batch is read and published, the cursor advances (a restart does not die on
the same photo), nothing stored before is lost and no garbage becomes a reading. A reader that cannot run at all
(binary gone, model unloadable) stops the worker before any photo is touched, with exit code 69.
"""

from __future__ import annotations

import math
import stat
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from ocr_doubles import LookupReader

from smartmeter.errors import ExternalToolError
from smartmeter.ocr.readers.base import DigitReader, ReaderUnavailable
from smartmeter.server.database import Database
from smartmeter.server.worker import Readers, Worker
from smartmeter.settings import ReaderSettings, Settings, parse_settings
from smartmeter.store.local import LocalStore
from smartmeter.types import DigitValue, photo_name

PHOTOS = Path(__file__).parent / "resources" / "photos"
T0 = datetime(2025, 5, 1, 8, 0, tzinfo=UTC)
GOOD = 48127.3  # what upright.jpg shows
FIRST_DRUM = (slice(195, 268), slice(100, 154))  # rows, columns around the first digit box of upright.jpg


def photo(seed: int, poisoned: bool = False) -> bytes:
    """upright.jpg with a little noise (other bytes, same reading); ``poisoned``: its first drum painted white,
    which the fault readers below recognise (every other crop has ink on it)."""
    raw = cv2.imread(str(PHOTOS / "upright.jpg"))
    assert raw is not None
    img = raw.astype(np.int16) + np.random.default_rng(seed).integers(-2, 3, raw.shape, dtype=np.int16)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if poisoned:
        img[FIRST_DRUM] = 255
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return buf.tobytes()


def is_poison(crop: np.ndarray) -> bool:
    return int(crop.min()) > 230


class FaultyReader(LookupReader):
    """Reads like LookupReader, except on poisoned crops, where it does what ``fault`` says."""

    def __init__(self, fault: str) -> None:
        super().__init__()
        self.fault = fault

    def read_batch(self, crops: Sequence[np.ndarray]) -> list[DigitValue]:
        good = super().read_batch(crops)
        if not any(is_poison(c) for c in crops):
            return good
        if self.fault == "timeout":
            raise ExternalToolError("tesseract did not finish within 30 s")
        if self.fault == "crash":
            raise ExternalToolError("tesseract failed with exit code -11: Segmentation fault")
        if self.fault == "unexpected":
            raise ZeroDivisionError("float division by zero")
        if self.fault == "wrong_count":
            return good[:-1]
        garbage: object = {"nan": DigitValue(math.nan, 0.9), "conf_nan": DigitValue(0.0, math.nan),
                           "out_of_range": DigitValue(10.5, 0.9), "negative": DigitValue(-0.5, 0.9),
                           "conf_over": DigitValue(0.0, 1.7), "not_a_value": (0.0, 0.9)}[self.fault]
        return [garbage if is_poison(c) else v for c, v in zip(crops, good, strict=True)]  # type: ignore[misc]


WHY = {"timeout": "did not finish within 30 s", "crash": "exit code -11: Segmentation fault",
       "unexpected": "ZeroDivisionError: float division by zero", "wrong_count": "returned 7 values for 8 crops",
       "nan": "drum position nan", "conf_nan": "confidence nan", "out_of_range": "drum position 10.5",
       "negative": "drum position -0.5", "conf_over": "confidence 1.7", "not_a_value": "tuple instead of a DigitValue"}


def settings_for(tmp_path: Path, extra: str = "", profile: Path = PHOTOS / "meter.yaml", threads: int = 2) -> Settings:
    return parse_settings(f"""
store: {{local: {{root: {tmp_path / 'images'}}}}}
meters: [{{id: meter, profile: {profile}}}]
worker: {{poll_interval_s: 0.05, batch_size: 4, read_threads: {threads}}}
{extra}""")


def readers(settings: Settings, fault: str = "") -> Readers:
    """The worker's Readers with a test reader in place of the configured one (its output still checked)."""
    def build(config: ReaderSettings) -> DigitReader:
        return FaultyReader(fault) if fault else LookupReader()

    return Readers(settings, build=build)


def rows(db: Database, sql: str, *params: object) -> list[tuple[object, ...]]:
    return [tuple(r) for r in db.query(sql, params)]


def readings(db: Database) -> list[tuple[object, ...]]:
    return rows(db, "SELECT ts_ms, value_kwh, confidence, source, status FROM readings ORDER BY ts_ms, source")


def put(store: LocalStore, minutes: int, data: bytes) -> str:
    key = photo_name("meter", T0 + timedelta(minutes=minutes))
    store.put(key, data)
    return key


@pytest.mark.fault("digit reader failure (timeout, crash, garbage output)", proves="photos lost: 0, wrong values "
                   "stored: 0 - 10 injected faults (timeout, crash, any exception, NaN, wrong count, out-of-range "
                   "values, not a value) on SQLite and PostgreSQL: the photo is failed with the reason and in review, "
                   "the other 4 published, the cursor passes it, earlier readings unchanged, a restart does not crash")
@pytest.mark.parametrize("fault", sorted(WHY))
def test_a_faulty_read_fails_one_photo_and_the_worker_goes_on(fault: str, db: Database, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    store = LocalStore(settings.store.local.root)
    for i in range(2):  # stored before: must survive whatever follows
        put(store, 10 * i, photo(i))
    assert Worker(settings, db, store, readers(settings)).run_once().actions.get("publish") == 2
    before = readings(db)

    later = [put(store, 10 * i, photo(i, poisoned=i == 4)) for i in range(2, 7)]
    bad = later[2]
    worker = Worker(settings, db, store, readers(settings, fault=fault))
    stats = worker.run_once()  # does not raise

    assert stats.listed == 5 and stats.failed == 1, stats.summary()
    [(status, reason)] = rows(db, "SELECT status, reason FROM photos WHERE photo_key = ?", bad)
    assert status == "failed" and WHY[fault] in str(reason) and "reader lookup:test failed" in str(reason)
    assert rows(db, "SELECT state, value_read FROM review_queue WHERE photo_key = ?", bad) == [("open", None)]
    statuses = dict(rows(db, "SELECT photo_key, status FROM photos WHERE photo_key <> ?", bad))
    assert set(statuses.values()) == {"published"} and len(statuses) == 6
    now = readings(db)
    assert now[:2] == before  # nothing stored before is lost or changed
    assert [r[1] for r in now] == [GOOD] * 6 and {r[3] for r in now} == {f"image:{k}" for k in statuses}
    assert all(isinstance(r[2], float) and 0.5 <= r[2] <= 1.0 for r in now)  # no NaN or garbage confidence

    assert worker.cursor() is not None
    restarted = Worker(settings, db, store, readers(settings, fault=fault))
    assert restarted.run_once().listed == 0  # the cursor moved past the bad photo: no crash loop
    db.execute("DELETE FROM worker_cursor")
    again = Worker(settings, db, store, readers(settings, fault=fault)).run_once()
    assert again.skipped == 7 and again.read == 0 and readings(db) == now


@pytest.mark.fault("digit reader failure (timeout, crash, garbage output)", proves="a batch that fails once is read "
                   "photo by photo: 4 of 4 published, none failed")
def test_a_batch_that_fails_once_is_read_photo_by_photo(db: Database, tmp_path: Path) -> None:
    class OnceBroken(LookupReader):
        calls = 0

        def read_batch(self, crops: Sequence[np.ndarray]) -> list[DigitValue]:
            OnceBroken.calls += 1
            if OnceBroken.calls == 1:
                raise ExternalToolError("tesseract failed with exit code 1: transient")
            return super().read_batch(crops)

    settings = settings_for(tmp_path, threads=1)
    store = LocalStore(settings.store.local.root)
    for i in range(4):
        put(store, 10 * i, photo(i))
    readers = Readers(settings, build=lambda config: OnceBroken())
    stats = Worker(settings, db, store, readers).run_once()
    assert stats.failed == 0 and stats.actions.get("publish") == 4, stats.summary()
    assert OnceBroken.calls >= 3  # the failed batch, then one call per photo of it
    assert not rows(db, "SELECT 1 FROM review_queue")


# --- the real tesseract wrapper, with fake binaries -------------------------------------------------------------

VERSION = 'case "$1" in --version) echo "tesseract 5.3.0"; exit 0;; esac\n'


def fake_tesseract(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "bin" / "tesseract"
    path.parent.mkdir(exist_ok=True)
    path.write_text("#!/bin/sh\n" + VERSION + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def unpinned_profile(tmp_path: Path) -> Path:
    """The test meter's profile without its own reader (so the settings' ocr.reader is in effect)."""
    text = (PHOTOS / "meter.yaml").read_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith(("reader:", "min_confidence:"))]
    out = tmp_path / "meter.yaml"
    out.write_text("\n".join(lines).replace("reference: reference.jpg", f"reference: {PHOTOS / 'reference.jpg'}"))
    return out


@pytest.mark.fault("digit reader failure (timeout, crash, garbage output)", proves="the real tesseract wrapper with a "
                   "binary that times out, exits 1 or dies of SIGSEGV: photos failed with the reason and in review, "
                   "the cursor moves, nothing stored, the photos stay in the store")
@pytest.mark.parametrize(("body", "why"), [
    ("exec sleep 5", "tesseract did not finish within 0.3 s"),
    ('echo "Error opening data file eng.traineddata" >&2; exit 1', "exit code 1: Error opening data file"),
    ("kill -SEGV $$", "tesseract failed with exit code -11"),
])
def test_tesseract_timeout_or_crash_makes_photos_unreadable(body: str, why: str, db: Database,
                                                          tmp_path: Path) -> None:
    tool = fake_tesseract(tmp_path, body)
    settings = settings_for(tmp_path, f"ocr: {{reader: {{engine: tesseract, command: {tool}, timeout_s: 0.3}}}}",
                            unpinned_profile(tmp_path))
    store = LocalStore(settings.store.local.root)
    keys = [put(store, 10 * i, photo(i)) for i in range(2)]
    worker = Worker(settings, db, store)
    stats = worker.run_once()
    assert stats.failed == 2 and worker.cursor() is not None
    for key in keys:
        [(status, reason)] = rows(db, "SELECT status, reason FROM photos WHERE photo_key = ?", key)
        assert status == "failed" and why in str(reason) and "tesseract:tesseract-5.3.0" in str(reason)
    assert sorted(k for (k,) in rows(db, "SELECT photo_key FROM review_queue WHERE state = 'open'")) == keys
    assert readings(db) == []
    assert all(store.get(k) for k in keys)  # the photos stay in the store


def broken_reader(tmp_path: Path, kind: str) -> str:
    """ocr settings of a reader that cannot start: tesseract not installed, or a digit model onnxruntime refuses."""
    if kind == "tesseract":
        return f"ocr: {{reader: {{engine: tesseract, command: {tmp_path / 'nope'}}}}}"
    from smartmeter.ocr.readers.cnn import DEFAULT_MODEL

    model = tmp_path / "digits.onnx"
    model.write_bytes(b"not an onnx model")
    meta = DEFAULT_MODEL.with_suffix(".json").read_text().replace('"sha256"', '"sha256-unchecked"')
    model.with_suffix(".json").write_text(meta)
    return f"ocr: {{reader: {{engine: cnn, model: {model}}}}}"


@pytest.mark.fault("digit reader failure (timeout, crash, garbage output)", proves="a missing tesseract or an "
                   "unloadable digit model stops the worker at start-up with exit code 69: no photo touched")
@pytest.mark.parametrize(("kind", "why"), [("tesseract", "tesseract not found"), ("model", "cannot be loaded")])
def test_a_reader_that_cannot_start_stops_the_worker_before_any_photo(kind: str, why: str, db: Database,
                                                                     tmp_path: Path) -> None:
    settings = settings_for(tmp_path, broken_reader(tmp_path, kind), unpinned_profile(tmp_path))
    store = LocalStore(settings.store.local.root)
    put(store, 0, photo(0))
    with pytest.raises(ReaderUnavailable, match=why) as err:
        Worker(settings, db, store)
    assert err.value.exit_code == 69
    assert rows(db, "SELECT 1 FROM photos") == [] and rows(db, "SELECT 1 FROM worker_cursor") == []


@pytest.mark.fault("digit reader failure (timeout, crash, garbage output)", proves="the binary gone mid-run: exit 69, "
                   "nothing committed, no photo blamed; the next run reads them")
def test_tesseract_gone_mid_run_commits_nothing_then_recovers(db: Database, tmp_path: Path) -> None:
    real = "/usr/bin/tesseract"
    tool = fake_tesseract(tmp_path, f'exec {real} "$@"')
    settings = settings_for(tmp_path, f"ocr: {{reader: {{engine: tesseract, command: {tool}, timeout_s: 20}}}}",
                            unpinned_profile(tmp_path))
    store = LocalStore(settings.store.local.root)
    put(store, 0, photo(0))
    worker = Worker(settings, db, store)  # the binary is there at start-up
    saved = tool.read_text()
    tool.unlink()  # ... and gone when the photos come
    with pytest.raises(ReaderUnavailable) as err:
        worker.run_once()
    assert err.value.exit_code == 69
    assert rows(db, "SELECT 1 FROM photos") == [] and worker.cursor() is None  # no photo blamed, none lost
    tool.write_text(saved)
    tool.chmod(0o755)
    assert worker.run_once().listed == 1
    assert str(rows(db, "SELECT reader_version FROM photos")[0][0]).endswith("tesseract-5.3.0")

