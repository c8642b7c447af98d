"""The camera worker: pull new photos from the image store, read them, validate across frames, store readings.

``Worker.run_once()`` drains the store from the saved cursor; ``Worker.run()`` polls every
``worker.poll_interval_s`` until ``stop()`` (SIGTERM/SIGINT in the CLI). Each page of photos is one database
transaction together with the new cursor, so a crash or restart never stores half a page, and re-delivered photos
(same key, or same content hash under another key) never make a second reading.

Capture time comes from the photo name ``YYYYmmddTHHMMSSZ_<meter>.jpg``. A name without a time (``<meter>/x.jpg``
or ``x_<meter>.jpg``) falls back to the EXIF DateTimeOriginal (with OffsetTimeOriginal when present, else UTC).
A photo that cannot be fetched, decoded, dated or read is recorded as ``failed`` with the reason; the worker goes on.
One the digit reader fails on (a tesseract timeout or crash, any exception, an answer ``CheckedReader`` refuses)
also waits in the review queue: the photo itself may be fine. A reader that cannot run at all (``ReaderUnavailable``,
exit 69) stops the worker: at start-up before any photo is touched, mid-run with nothing of the page committed.
"""

from __future__ import annotations

import io
import logging
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import PurePosixPath

from smartmeter.domain import is_meter_id
from smartmeter.errors import ConfigError, InputError, NotFoundError, StoreError
from smartmeter.ocr.pipeline import MeterReader
from smartmeter.ocr.profile import Profile, load_profile
from smartmeter.ocr.readers import DigitReader, ReaderUnavailable, open_reader, resolve_reader, with_threshold
from smartmeter.ocr.readers.config import build_reader
from smartmeter.ocr.readers.isolate import ReadFailure, read_isolated
from smartmeter.progress import Progress
from smartmeter.server import camera_book as book
from smartmeter.server import photos_repo, review_repo
from smartmeter.server.adapter import MeterAdapters
from smartmeter.server.database import Database
from smartmeter.server.frames import Decision, Frame, Rules
from smartmeter.settings import ReaderSettings, Settings
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
    """One MeterReader per meter and per thread (readers keep OpenCV state). A meter's reader configuration is
    ``resolve_reader(settings.ocr, its profile, engine)``: ``engine`` (the CLI's) > profile > settings."""

    def __init__(self, settings: Settings, engine: str | None = None,
                 build: Callable[[ReaderSettings], DigitReader] | None = None) -> None:
        self.settings, self.engine = settings, engine
        self.build = build or build_reader
        self._local = threading.local()
        self.adapters: MeterAdapters | None = None  # the worker's per-meter adapters (server/adapter.py)
        self.pool = ThreadPoolExecutor(settings.worker.read_threads, thread_name_prefix="read")

    def check(self) -> None:
        """Start, here and now, every digit reader the configured meters use: a missing binary or an unloadable
        model raises ReaderUnavailable (exit 69) before any photo is touched. A broken profile only fails the
        photos of its meter."""
        configs: dict[ReaderSettings, None] = {}
        for m in self.settings.meters:
            if m.profile is not None:
                try:
                    configs[self._profile(m.id)[1]] = None
                except ConfigError as exc:
                    log.warning("meter %s: %s", m.id, exc)
        for config in configs or [resolve_reader(self.settings.ocr, None, self.engine)]:
            self._engine(config)
        for config in configs:
            if config != self.settings.ocr.reader and self.engine is None:
                log.info("a meter profile overrides the settings' ocr.reader: %s", config)

    def read(self, meter_id: str, data: Sequence[bytes], names: Sequence[str]) -> list[OcrResult | ReadFailure]:
        """Read photos of one meter, split across the reading threads; results in input order. A photo the
        reader fails on is a ReadFailure; ReaderUnavailable (the reader itself is gone) raises."""
        self.for_meter(meter_id)  # a profile problem raises here, once
        n = self.settings.worker.read_threads
        size = max(1, -(-len(data) // n))
        futures = [self.pool.submit(self._read_part, meter_id, list(data[i:i + size]), list(names[i:i + size]))
                   for i in range(0, len(data), size)]
        return [r for f in futures for r in f.result()]

    def _read_part(self, meter_id: str, data: list[bytes], names: list[str]) -> list[OcrResult | ReadFailure]:
        return read_isolated(self.for_meter(meter_id), data, names)

    def for_meter(self, meter_id: str) -> MeterReader:
        meters: dict[str, MeterReader] = self._state()[0]
        if meter_id not in meters:
            profile, config = self._profile(meter_id)
            engine = self._engine(config)
            if self.adapters is not None:
                engine = self.adapters.reader(meter_id, engine)
            meters[meter_id] = MeterReader(profile, engine)
        return meters[meter_id]

    def _state(self) -> tuple[dict[str, MeterReader], dict[ReaderSettings, DigitReader]]:
        if not hasattr(self._local, "meters"):
            self._local.meters, self._local.engines = {}, {}
        return self._local.meters, self._local.engines

    def _profile(self, meter_id: str) -> tuple[Profile, ReaderSettings]:
        """The meter's profile with the threshold in effect, and its reader configuration."""
        path = self.settings.meter(meter_id).profile
        if path is None:
            raise ConfigError(f"meter {meter_id!r} has no profile in the settings (meters[].profile)")
        profile = load_profile(path)
        config = resolve_reader(self.settings.ocr, profile, self.engine)
        return with_threshold(profile, config), config

    def _engine(self, config: ReaderSettings) -> DigitReader:
        engines = self._state()[1]
        if config not in engines:
            engines[config] = open_reader(config, self.build)
        return engines[config]


@dataclass
class _Item:
    ref: ImageRef
    meter: str
    ts: datetime
    ts_source: str
    data: bytes


def read_items(readers: Readers, items: Sequence[_Item]
               ) -> tuple[list[tuple[_Item, OcrResult]], list[tuple[_Item, str, bool]]]:
    """Read photos grouped by meter (one ``read_many`` call per meter); (results, failures as (item, reason,
    worth a review: the reader failed on it)). ReaderUnavailable raises: no photo is to blame."""
    done: list[tuple[_Item, OcrResult]] = []
    failed: list[tuple[_Item, str, bool]] = []
    by_meter: dict[str, list[_Item]] = {}
    for it in items:
        by_meter.setdefault(it.meter, []).append(it)
    for meter, group in by_meter.items():
        try:
            results = readers.read(meter, [it.data for it in group], [it.ref.key for it in group])
        except ReaderUnavailable:
            raise
        except ConfigError as exc:
            failed.extend((it, str(exc), False) for it in group)
            continue
        for it, res in zip(group, results, strict=True):
            if isinstance(res, ReadFailure):
                failed.append((it, res.reason, True))
            else:
                done.append((it, res))
    return done, failed


def judge(db: Database, settings: Settings, read: Sequence[tuple[_Item, OcrResult]],
          decided: dict[str, list[Decision]] | None = None) -> dict[str, int]:
    """Record the read photos and run each meter's validator over them in capture-time order; the decisions go
    into ``decided`` (per meter) when given."""
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
        shown = res.reading or " or ".join(res.candidates) or None  # a held frame's choices survive a restart
        book.record_photo(db, it.ref.key, it.ref.content_hash, it.meter, it.ts, "read", res.error or "", frame,
                          shown, it.ts_source, rules)
        by_meter.setdefault(it.meter, []).append(frame)
    for meter, frames in by_meter.items():
        v = book.load_validator(db, settings, meter, frames[0].ts)
        decisions = [d for f in frames for d in v.feed(f)]
        if decided is not None:
            decided[meter] = decisions
        for k, n in book.apply(db, meter, decisions).items():
            counts[k] = counts.get(k, 0) + n
    return counts


class Worker:
    """Polls one image store; stop() ends ``run`` after the current page."""

    def __init__(self, settings: Settings, db: Database, store: ImageStore, readers: Readers | None = None,
                 progress: bool = False) -> None:
        self.settings, self.db, self.store = settings, db, store
        self.readers = readers or Readers(settings)
        self.adapters = MeterAdapters(settings, db) if settings.adapter.enabled else None
        self.readers.adapters = self.adapters
        self.readers.check()  # a reader that cannot run stops here, before any photo is touched
        self.progress = progress
        self.stop_event = threading.Event()
        self.store_id = photos_repo.store_id(store)

    def stop(self) -> None:
        self.stop_event.set()

    def cursor(self) -> str | None:
        return photos_repo.load_cursor(self.db, self.store_id)

    def run(self) -> None:
        from smartmeter.server.events import Scheduled  # pandas: only when the loop runs

        analysis = Scheduled(self.settings.worker.analyse_every_s)  # events and the blackout/superamento state
        while not self.stop_event.is_set():
            try:
                stats = self.run_once()
            except StoreError as exc:  # the store is down: nothing was committed, the next poll retries
                log.warning("worker: image store failed, retrying in %.0f s: %s",
                            self.settings.worker.poll_interval_s, exc)
            else:
                if stats.listed:
                    log.info("worker: %s", stats.summary())
            analysis.maybe_run(self.db, self.settings)
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

    def process(self, refs: Sequence[ImageRef], stats: WorkerStats, cursor: str | None = None,
                inside: Callable[[], None] | None = None) -> None:
        """One page: fetch, read, validate and store, then save the cursor, all in one transaction. ``inside``
        runs first in that transaction (the fleet checks its lease there; raising rolls the page back)."""
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
        failures.extend((it.ref, why, it.meter, it.ts) for it, why, _ in unread)
        with self.db.transaction():
            if inside is not None:
                inside()
            self.db.lock_meters({it.meter for it in items})  # PostgreSQL: sorted, before any meter is read
            for ref, why, fmeter, fts in failures:
                book.record_photo(self.db, ref.key, ref.content_hash, fmeter, fts, "failed", why)
            for it, why, review in unread:
                if review:  # the photo itself may be fine: a person can read it
                    review_repo.open_item(self.db, it.ref.key, it.meter, it.ts, None, why)
            for ref, original in dupes:
                book.record_photo(self.db, ref.key, ref.content_hash, None, None, "duplicate",
                                  f"same content as {original}")
            decided: dict[str, list[Decision]] = {}
            stats.add(judge(self.db, self.settings, read, decided))
            if cursor is not None:
                photos_repo.save_cursor(self.db, self.store_id, cursor)
        if self.adapters is not None:  # after the commit: the page's readings are settled
            self.adapters.learn(self.readers, read, decided)
        stats.read += len(read)
        stats.failed += len(failures)
        stats.actions["duplicate"] = stats.actions.get("duplicate", 0) + len(dupes)
