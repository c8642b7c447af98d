"""The camera worker: pull new photos from the image store, read them, validate across frames, store readings.

``Worker.run_once()`` drains the store from the saved cursor; ``Worker.run()`` polls every
``worker.poll_interval_s`` until ``stop()`` (SIGTERM/SIGINT in the CLI). Each page of photos is one database
transaction together with the new cursor, so a crash or restart never stores half a page, and re-delivered photos
(same key, or same content hash under another key) never make a second reading.

Capture time comes from the photo name ``YYYYmmddTHHMMSSZ_<meter>.jpg``. A name without a time (``<meter>/x.jpg``
or ``x_<meter>.jpg``) falls back to the EXIF DateTimeOriginal (with OffsetTimeOriginal when present, else UTC).
A photo that cannot be fetched, decoded, dated or read is recorded as ``failed`` with the reason; the worker goes on.
"""

from __future__ import annotations

import io
import logging
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import PurePosixPath
from typing import Any

from smartmeter.domain import is_meter_id
from smartmeter.errors import ConfigError, InputError, NotFoundError, StoreError
from smartmeter.progress import Progress
from smartmeter.server import camera_book as book
from smartmeter.server import photos_repo
from smartmeter.server.database import Database
from smartmeter.server.frames import Frame, Rules
from smartmeter.settings import Settings
from smartmeter.store.base import ImageStore
from smartmeter.types import ImageRef, OcrResult, parse_photo_name

log = logging.getLogger(__name__)


def exif_time(data: bytes) -> datetime | None:
    """EXIF DateTimeOriginal (0x9003) with OffsetTimeOriginal (0x9011) when present; None when absent."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            ifd = img.getexif().get_ifd(0x8769)
    except Exception as exc:  # noqa: BLE001 - any decoder failure means: no usable EXIF
        log.debug("no EXIF: %s", exc)
        return None
    text, offset = ifd.get(0x9003), ifd.get(0x9011)
    if not text:
        return None
    try:
        ts = datetime.strptime(str(text).strip("\x00 "), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    tz: timezone = UTC
    m = re.fullmatch(r"([+-])(\d\d):(\d\d)", str(offset or "").strip("\x00 "))
    if m:
        delta = timedelta(hours=int(m[2]), minutes=int(m[3]))
        tz = timezone(delta if m[1] == "+" else -delta)
    return ts.replace(tzinfo=tz).astimezone(UTC)


def photo_meter_and_time(key: str, data: bytes | None) -> tuple[str, datetime, str]:
    """(meter, capture time, 'name' | 'exif'); InputError when neither the name nor EXIF gives both."""
    try:
        meter, ts = parse_photo_name(key)
        return meter, ts, "name"
    except InputError:
        pass
    path = PurePosixPath(key)
    meter = path.parent.name if path.parent.name else path.stem.rsplit("_", 1)[-1]
    shot = exif_time(data) if data is not None else None
    if not is_meter_id(meter) or shot is None:
        raise InputError(f"photo name {path.name!r} is not YYYYmmddTHHMMSSZ_<meter>.jpg and has no EXIF capture time")
    return meter, shot, "exif"


@dataclass
class WorkerStats:
    listed: int = 0
    skipped: int = 0  # already processed (same key, same content)
    read: int = 0
    failed: int = 0
    actions: dict[str, int] = field(default_factory=dict)

    def add(self, counts: dict[str, int]) -> None:
        for k, v in counts.items():
            self.actions[k] = self.actions.get(k, 0) + v

    def summary(self) -> str:
        acts = ", ".join(f"{k} {v}" for k, v in sorted(self.actions.items()))
        return f"{self.listed} listed, {self.skipped} already done, {self.read} read, {self.failed} failed; {acts}"


class Readers:
    """One MeterReader per meter (profile from settings) and per thread: readers keep OpenCV state."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._local = threading.local()
        self.pool = ThreadPoolExecutor(settings.worker.read_threads, thread_name_prefix="read")

    def read(self, meter_id: str, data: Sequence[bytes], names: Sequence[str]) -> list[OcrResult]:
        """Read photos of one meter, split across the reading threads; results in input order."""
        self.for_meter(meter_id)  # a profile problem raises here, once
        n = self.settings.worker.read_threads
        size = max(1, -(-len(data) // n))
        parts = [(data[i:i + size], names[i:i + size]) for i in range(0, len(data), size)]
        futures = [self.pool.submit(lambda p: self.for_meter(meter_id).read_many(list(p[0]), list(p[1])), part)
                   for part in parts]
        return [r for f in futures for r in f.result()]

    def for_meter(self, meter_id: str) -> Any:
        if not hasattr(self._local, "meters"):
            self._local.meters, self._local.engines = {}, {}
        meters: dict[str, Any] = self._local.meters
        engines: dict[str, Any] = self._local.engines
        if meter_id not in meters:
            from smartmeter.ocr.pipeline import MeterReader
            from smartmeter.ocr.profile import load_profile
            from smartmeter.ocr.readers import get_reader

            path = self.settings.meter(meter_id).profile
            if path is None:
                raise ConfigError(f"meter {meter_id!r} has no profile in the settings (meters[].profile)")
            profile = load_profile(path)
            engine = profile.reader
            if engine not in engines:
                ocr = self.settings.ocr
                engines[engine] = get_reader(engine, model=ocr.model, threads=ocr.threads)
            meters[meter_id] = MeterReader(profile, engines[engine])
        return meters[meter_id]


@dataclass
class _Item:
    ref: ImageRef
    meter: str
    ts: datetime
    ts_source: str
    data: bytes


def read_items(readers: Readers,
               items: Sequence[_Item]) -> tuple[list[tuple[_Item, OcrResult]], list[tuple[_Item, str]]]:
    """Read photos grouped by meter (one ``read_many`` call per meter); (results, failures)."""
    done: list[tuple[_Item, OcrResult]] = []
    failed: list[tuple[_Item, str]] = []
    by_meter: dict[str, list[_Item]] = {}
    for it in items:
        by_meter.setdefault(it.meter, []).append(it)
    for meter, group in by_meter.items():
        try:
            results = readers.read(meter, [it.data for it in group], [it.ref.key for it in group])
        except ConfigError as exc:
            failed.extend((it, str(exc)) for it in group)
            continue
        done.extend(zip(group, results, strict=True))
    return done, failed


def judge(db: Database, settings: Settings, read: Sequence[tuple[_Item, OcrResult]]) -> dict[str, int]:
    """Record the read photos and run each meter's validator over them in capture-time order."""
    counts: dict[str, int] = {}
    by_meter: dict[str, list[Frame]] = {}
    for it, res in sorted(read, key=lambda p: (p[0].ts, p[0].ref.key)):
        if not res.digits and res.value is None:  # never got to the digits: not decodable, not alignable
            book.record_photo(db, it.ref.key, it.ref.content_hash, it.meter, it.ts, "failed", res.error or "unread",
                              ts_source=it.ts_source)
            counts["failed"] = counts.get("failed", 0) + 1
            continue
        frame = Frame.from_ocr(it.ref.key, it.ts, res)
        rules = Rules.from_settings(settings, it.meter)
        book.record_photo(db, it.ref.key, it.ref.content_hash, it.meter, it.ts, "read", res.error or "", frame,
                          res.reading, it.ts_source, rules)
        by_meter.setdefault(it.meter, []).append(frame)
    for meter, frames in by_meter.items():
        v = book.load_validator(db, settings, meter, frames[0].ts)
        decisions = [d for f in frames for d in v.feed(f)]
        for k, n in book.apply(db, meter, decisions).items():
            counts[k] = counts.get(k, 0) + n
    return counts


class Worker:
    """Polls one image store; stop() ends ``run`` after the current page."""

    def __init__(self, settings: Settings, db: Database, store: ImageStore, readers: Readers | None = None,
                 progress: bool = False) -> None:
        self.settings, self.db, self.store = settings, db, store
        self.readers = readers or Readers(settings)
        self.progress = progress
        self.stop_event = threading.Event()
        self.store_id = photos_repo.store_id(store)

    def stop(self) -> None:
        self.stop_event.set()

    def cursor(self) -> str | None:
        return photos_repo.load_cursor(self.db, self.store_id)

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                stats = self.run_once()
            except StoreError as exc:  # the store is down: nothing was committed, the next poll retries
                log.warning("worker: image store failed, retrying in %.0f s: %s",
                            self.settings.worker.poll_interval_s, exc)
            else:
                if stats.listed:
                    log.info("worker: %s", stats.summary())
            self.stop_event.wait(self.settings.worker.poll_interval_s)

    def run_once(self) -> WorkerStats:
        """Process every photo listed since the saved cursor, page by page."""
        stats = WorkerStats()
        with Progress("photos", enabled=self.progress) as bar:
            while not self.stop_event.is_set():
                page = self.store.list_new(self.cursor(), limit=self.settings.worker.batch_size)
                self.process(page.refs, stats, page.cursor)
                bar.advance(len(page.refs))
                if not page.has_more:
                    break
        return stats

    def process(self, refs: Sequence[ImageRef], stats: WorkerStats, cursor: str | None = None) -> None:
        """One page: fetch, read, validate and store, then save the cursor, all in one transaction."""
        stats.listed += len(refs)
        known = photos_repo.known(self.db, [r.key for r in refs], "photo_key")
        hashes = photos_repo.known(self.db, [r.content_hash for r in refs], "content_hash", value="photo_key")
        items: list[_Item] = []
        failures: list[tuple[ImageRef, str, str | None, datetime | None]] = []
        dupes: list[tuple[ImageRef, str]] = []
        for ref in refs:
            if ref.key in known:
                if known[ref.key] != ref.content_hash:
                    log.warning("%s changed after it was processed; use 'smartmeter reprocess'", ref.key)
                stats.skipped += 1
                continue
            if ref.content_hash in hashes:
                dupes.append((ref, hashes[ref.content_hash]))
                continue
            hashes[ref.content_hash] = ref.key
            try:
                data = self.store.get(ref.key)
                meter, ts, source = photo_meter_and_time(ref.key, data)
            except (NotFoundError, InputError) as exc:
                failures.append((ref, str(exc), None, None))
                continue
            items.append(_Item(ref, meter, ts, source, data))
        read, unread = read_items(self.readers, items)
        failures.extend((it.ref, why, it.meter, it.ts) for it, why in unread)
        with self.db.transaction():
            for ref, why, fmeter, fts in failures:
                book.record_photo(self.db, ref.key, ref.content_hash, fmeter, fts, "failed", why)
            for ref, original in dupes:
                book.record_photo(self.db, ref.key, ref.content_hash, None, None, "duplicate",
                                  f"same content as {original}")
            stats.add(judge(self.db, self.settings, read))
            if cursor is not None:
                photos_repo.save_cursor(self.db, self.store_id, cursor)
        stats.read += len(read)
        stats.failed += len(failures)
        stats.actions["duplicate"] = stats.actions.get("duplicate", 0) + len(dupes)
