"""Re-read archived photos with the current reader and validate them again, deterministically.

``reprocess(db, settings, store, meter_id, since)`` re-reads every photo of the meter(s) captured at or after
``since`` (except photos a person reviewed), in capture-time order, and replaces their camera readings. Each
changed reading is audited in ``corrections`` (kind ``reprocess``: old value and reader version -> new). The same
photos, settings and reader give the same readings every time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from smartmeter.errors import NotFoundError
from smartmeter.progress import Progress
from smartmeter.server import camera_book as book
from smartmeter.server.frames import Frame, Rules
from smartmeter.server.storage import Database, from_ms, to_ms
from smartmeter.server.worker import Readers, _Item, read_items
from smartmeter.settings import Settings
from smartmeter.store.base import ImageStore
from smartmeter.types import ImageRef

log = logging.getLogger(__name__)


@dataclass
class ReprocessStats:
    photos: int = 0
    missing: int = 0
    changed: int = 0
    actions: dict[str, int] = field(default_factory=dict)


def _select(db: Database, meter_id: str | None, since: datetime | None) -> list[tuple[str, str, str, int, str]]:
    sql = ("SELECT photo_key, content_hash, meter_id, ts_ms, ts_source FROM photos WHERE meter_id IS NOT NULL"
           " AND ts_ms IS NOT NULL AND status NOT IN ('duplicate', 'reviewed')")
    params: list[object] = []
    if meter_id is not None:
        sql += " AND meter_id = ?"
        params.append(meter_id)
    if since is not None:
        sql += " AND ts_ms >= ?"
        params.append(to_ms(since))
    return [(str(k), str(h), str(m), int(t), str(s)) for k, h, m, t, s in db.query(sql + " ORDER BY ts_ms, photo_key",
                                                                                    params)]


def reprocess(db: Database, settings: Settings, store: ImageStore, meter_id: str | None = None,
              since: datetime | None = None, readers: Readers | None = None, progress: bool = False) -> ReprocessStats:
    readers = readers or Readers(settings)
    rows = _select(db, meter_id, since)
    stats = ReprocessStats(photos=len(rows))
    frames: dict[str, list[tuple[Frame, str, str, str | None]]] = {}
    with Progress("re-read", total=len(rows), enabled=progress) as bar:
        for start in range(0, len(rows), settings.worker.batch_size):
            items: list[_Item] = []
            for key, digest, meter, ts_ms, ts_source in rows[start:start + settings.worker.batch_size]:
                try:
                    data = store.get(key)
                except NotFoundError:
                    stats.missing += 1
                    continue
                items.append(_Item(ImageRef(key, len(data), digest), meter, from_ms(ts_ms), ts_source, data))
            read, failed = read_items(readers, items)
            for it, why in failed:
                log.warning("%s: %s", it.ref.key, why)
            for it, res in read:
                frames.setdefault(it.meter, []).append((Frame.from_ocr(it.ref.key, it.ts, res), it.ref.content_hash,
                                                        it.ts_source, res.reading))
            bar.advance(len(rows[start:start + settings.worker.batch_size]))
    for meter, group in sorted(frames.items()):
        group.sort(key=lambda g: (g[0].t, g[0].key))
        _revalidate(db, settings, meter, group, stats)
    return stats


def _revalidate(db: Database, settings: Settings, meter: str, group: Sequence[tuple[Frame, str, str, str | None]],
                stats: ReprocessStats) -> None:
    rules = Rules.from_settings(settings, meter)
    keys = [f.key for f, _, _, _ in group]
    with db.transaction():
        old: dict[str, tuple[float, str]] = {}
        for f, _, _, _ in group:
            for value, version in db.query("SELECT value_kwh, reader_version FROM readings WHERE meter_id = ? AND"
                                           " ts_ms = ? AND source = ? AND status IN ('accepted', 'corrected')",
                                           (meter, to_ms(f.ts), book.IMAGE + f.key)):
                old[f.key] = (value, version)
            db.execute("UPDATE readings SET status = 'superseded' WHERE meter_id = ? AND ts_ms = ? AND source = ?",
                       (meter, to_ms(f.ts), book.IMAGE + f.key))
            db.execute("DELETE FROM review_queue WHERE photo_key = ? AND state = 'open'", (f.key,))
        for f, digest, ts_source, reading in group:
            book.record_photo(db, f.key, digest, meter, f.ts, "read", f.error or "", f, reading, ts_source, rules)
        v = book.load_validator(db, settings, meter, group[0][0].ts)
        decisions = [d for f, _, _, _ in group for d in v.feed(f)]
        for k, n in book.apply(db, meter, decisions).items():
            stats.actions[k] = stats.actions.get(k, 0) + n
        by_key = {f.key: f for f, _, _, _ in group}
        for key in keys:
            f = by_key[key]
            now = db.query("SELECT value_kwh, reader_version FROM readings WHERE meter_id = ? AND ts_ms = ? AND"
                           " source = ? AND status IN ('accepted', 'corrected')",
                           (meter, to_ms(f.ts), book.IMAGE + key))
            new_value, new_version = (now[0][0], now[0][1]) if now else (None, f.reader_version)
            old_value, old_version = old.get(key, (None, ""))
            changed = (old_value, old_version) != (new_value, new_version)
            if changed and (old_value is not None or new_value is not None):
                stats.changed += 1
                book.audit(db, meter, f.ts, key, "reprocess", old_value, new_value, "re-read with current reader",
                           (), old_version, new_version)
