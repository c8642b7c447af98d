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
from smartmeter.server import photos_repo, readings_repo, review_repo
from smartmeter.server.database import Database, from_ms
from smartmeter.server.frames import Frame, Rules
from smartmeter.server.worker import Readers, _Item, read_items
from smartmeter.settings import Settings
from smartmeter.store.base import ImageStore
from smartmeter.types import ImageRef

log = logging.getLogger(__name__)


@dataclass
class ReprocessStats:
    photos: int = 0
    missing: int = 0
    failed: int = 0  # could not be read again: what was stored for them stays
    changed: int = 0
    actions: dict[str, int] = field(default_factory=dict)


def reprocess(db: Database, settings: Settings, store: ImageStore, meter_id: str | None = None,
              since: datetime | None = None, readers: Readers | None = None, progress: bool = False,
              engine: str | None = None) -> ReprocessStats:
    """Re-read and re-validate; ``engine`` (``--engine``) overrides the reader configuration. A photo the reader
    fails on keeps what was stored for it (counted in ``failed``); a reader that cannot run raises first."""
    readers = readers or Readers(settings, engine)
    readers.check()
    rows = photos_repo.to_reread(db, meter_id, since)
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
            for it, why, _ in failed:
                log.warning("%s: %s (what was stored for it stays)", it.ref.key, why)
            stats.failed += len(failed)
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
                readings_repo.audit(db, meter, f.ts, key, "reprocess", old_value, new_value,
                                    "re-read with current reader", (), old_version, new_version)
