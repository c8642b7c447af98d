"""Re-read archived photos with the current reader and validate them again, deterministically.

``reprocess(db, settings, store, meter_id, since)`` re-reads every photo of the meter(s) captured at or after
``since`` (except photos a person reviewed) and replaces their camera readings. Each changed reading is audited in
``corrections`` (kind ``reprocess``: old value and reader version -> new). The same photos, settings and reader give
the same readings every time.

Reading is parallel, writing is not: the photos go out in chunks (``worker.batch_size`` photos of one meter) to
``reads`` (in this process by default; on Dask workers with ``smartmeter.server.reprocess_dask``), in any order.
Once every chunk of a meter is back, this process validates that meter's photos in capture-time order and commits
them in one transaction, with a row in ``reprocess_done``. Resumable: the same command after an interruption skips
the meters its run (a hash of meter, since and engine) has committed; a run that finishes forgets them. ``dry_run``
validates and writes inside a transaction that is rolled back: ``stats.changes`` says what would change, nothing is
written.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from smartmeter.errors import NotFoundError
from smartmeter.progress import Progress
from smartmeter.server import camera_book as book
from smartmeter.server import photos_repo, readings_repo, review_repo
from smartmeter.server.database import Database, from_ms, now_ms, to_ms
from smartmeter.server.frames import Frame, Rules
from smartmeter.server.worker import Readers, _Item, read_items
from smartmeter.settings import Settings
from smartmeter.store.base import ImageStore
from smartmeter.types import ImageRef, OcrResult

log = logging.getLogger(__name__)

Row = tuple[str, str, str, int, str]  # key, content hash, meter, ts_ms, ts source (photos_repo.to_reread)
Outcome = OcrResult | str | None  # what was read | why the reader failed | None: not in the store
Reads = Callable[[Sequence[Sequence[Row]]], Iterator[tuple[int, list[Outcome]]]]  # chunk index, outcomes in order


@dataclass(frozen=True)
class Change:
    key: str
    meter: str
    ts: datetime
    old: float | None
    new: float | None
    old_version: str
    new_version: str


@dataclass
class ReprocessStats:
    photos: int = 0
    missing: int = 0
    failed: int = 0  # could not be read again: what was stored for them stays
    changed: int = 0
    resumed: int = 0  # meters an interrupted run of the same command had committed: skipped
    actions: dict[str, int] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)


class _DryRun(Exception):  # noqa: N818 - rolls the dry run's transaction back
    pass


def read_rows(readers: Readers, store: ImageStore, rows: Sequence[Row]) -> list[Outcome]:
    """Fetch and read photos (of one meter); one outcome per row, in order."""
    items: list[_Item] = []
    out: dict[str, Outcome] = {}
    for key, digest, meter, ts_ms, ts_source in rows:
        try:
            data = store.get(key)
        except NotFoundError:
            out[key] = None
            continue
        items.append(_Item(ImageRef(key, len(data), digest), meter, from_ms(ts_ms), ts_source, data))
    read, failed = read_items(readers, items)
    out.update((it.ref.key, res) for it, res in read)
    out.update((it.ref.key, why) for it, why, _ in failed)
    return [out[r[0]] for r in rows]


def in_process(readers: Readers, store: ImageStore) -> Reads:
    def reads(chunks: Sequence[Sequence[Row]]) -> Iterator[tuple[int, list[Outcome]]]:
        for i, chunk in enumerate(chunks):
            yield i, read_rows(readers, store, chunk)
    return reads


def run_id(meter_id: str | None, since: datetime | None, engine: str | None) -> str:
    text = f"{meter_id or '*'}|{to_ms(since) if since else '-'}|{engine or '-'}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def reprocess(db: Database, settings: Settings, store: ImageStore, meter_id: str | None = None,
              since: datetime | None = None, readers: Readers | None = None, progress: bool = False,
              engine: str | None = None, reads: Reads | None = None, dry_run: bool = False) -> ReprocessStats:
    """Re-read and re-validate; ``engine`` (``--engine``) overrides the reader configuration. A photo the reader
    fails on keeps what was stored for it (counted in ``failed``); a reader that cannot run raises first."""
    readers = readers or Readers(settings, engine)
    readers.check()
    run = run_id(meter_id, since, engine)
    done = set() if dry_run else {str(m) for (m,) in db.query("SELECT meter_id FROM reprocess_done WHERE run_id = ?",
                                                               (run,))}
    rows = photos_repo.to_reread(db, meter_id, since)
    stats = ReprocessStats(photos=len(rows), resumed=len(done))
    by_meter: dict[str, list[Row]] = {}
    for row in rows:
        if row[2] not in done:
            by_meter.setdefault(row[2], []).append(row)
    if done:
        log.info("reprocess: %d meters were done by an interrupted run of this command: skipped", len(done))
    size = settings.worker.batch_size
    chunks = [(m, group[i:i + size]) for m, group in sorted(by_meter.items()) for i in range(0, len(group), size)]
    left = {m: 0 for m in by_meter}
    for m, _ in chunks:
        left[m] += 1
    back: dict[str, dict[str, Outcome]] = {m: {} for m in by_meter}
    with Progress("re-read", total=sum(len(c) for _, c in chunks), enabled=progress) as bar:
        for i, outcomes in (reads or in_process(readers, store))([c for _, c in chunks]):
            meter, chunk = chunks[i]
            back[meter].update((r[0], o) for r, o in zip(chunk, outcomes, strict=True))
            bar.advance(len(chunk))
            left[meter] -= 1
            if left[meter] == 0:
                _finish(db, settings, meter, by_meter[meter], back.pop(meter), stats, run, dry_run)
    if not dry_run:
        with db.transaction():
            db.execute("DELETE FROM reprocess_done WHERE run_id = ?", (run,))  # finished: the next run starts over
    return stats


def _finish(db: Database, settings: Settings, meter: str, rows: Sequence[Row], outcomes: dict[str, Outcome],
            stats: ReprocessStats, run: str, dry_run: bool) -> None:
    """Validate one meter's photos in capture-time order and commit (or, dry, roll back) them."""
    group: list[tuple[Frame, str, str, str | None]] = []
    for key, digest, _, ts_ms, ts_source in sorted(rows, key=lambda r: (r[3], r[0])):
        res = outcomes[key]
        if res is None:
            stats.missing += 1
        elif isinstance(res, str):
            log.warning("%s: %s (what was stored for it stays)", key, res)
            stats.failed += 1
        else:
            group.append((Frame.from_ocr(key, from_ms(ts_ms), res), digest, ts_source, res.reading))
    before = stats.changed
    try:
        with db.transaction():
            if group:
                _revalidate(db, settings, meter, group, stats)
            if dry_run:
                raise _DryRun
            db.execute("INSERT INTO reprocess_done (run_id, meter_id, photos, changed, done_ms) VALUES (?, ?, ?, ?, ?)"
                       " ON CONFLICT DO NOTHING", (run, meter, len(rows), stats.changed - before, now_ms()))
    except _DryRun:
        pass


def _revalidate(db: Database, settings: Settings, meter: str, group: Sequence[tuple[Frame, str, str, str | None]],
                stats: ReprocessStats) -> None:
    rules = Rules.from_settings(settings, meter)
    keys = [f.key for f, _, _, _ in group]
    with db.transaction():
        db.lock_meters((meter,))
        old: dict[str, tuple[float, str]] = {}
        for f, _, _, _ in group:
            current = readings_repo.current_value(db, meter, f.ts, book.IMAGE + f.key)
            if current is not None:
                old[f.key] = current
            readings_repo.supersede(db, meter, f.ts, book.IMAGE + f.key)
            review_repo.drop_open(db, f.key)
        for f, digest, ts_source, reading in group:
            book.record_photo(db, f.key, digest, meter, f.ts, "read", f.error or "", f, reading, ts_source, rules)
        v = book.load_validator(db, settings, meter, group[0][0].ts)
        decisions = [d for f, _, _, _ in group for d in v.feed(f)]
        for k, n in book.apply(db, meter, decisions).items():
            stats.actions[k] = stats.actions.get(k, 0) + n
        by_key = {f.key: f for f, _, _, _ in group}
        for key in keys:
            f = by_key[key]
            now = readings_repo.current_value(db, meter, f.ts, book.IMAGE + key)
            new_value, new_version = now if now else (None, f.reader_version)
            old_value, old_version = old.get(key, (None, ""))
            changed = (old_value, old_version) != (new_value, new_version)
            if changed and (old_value is not None or new_value is not None):
                stats.changed += 1
                stats.changes.append(Change(key, meter, f.ts, old_value, new_value, old_version, new_version))
                readings_repo.audit(db, meter, f.ts, key, "reprocess", old_value, new_value,
                                    "re-read with current reader", (), old_version, new_version)
