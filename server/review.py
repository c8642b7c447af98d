"""The review queue: photos validation rejected or withdrew, and a person's true value for them.

``set_value`` stores the value as a reading with source ``review:<key>`` at the photo's capture time. It is a
trusted anchor: validation never overrules it, and camera readings that disagree with it are withdrawn (audited).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime

from smartmeter.errors import InputError, NotFoundError
from smartmeter.server import camera_book as book
from smartmeter.server.frames import Anchor
from smartmeter.server.storage import Database, from_ms, now_ms, to_ms
from smartmeter.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReviewItem:
    key: str
    meter_id: str | None
    ts: datetime | None
    value_read: float | None
    reason: str
    state: str


def list_reviews(db: Database, meter_id: str | None = None, include_resolved: bool = False,
                 limit: int = 100) -> list[ReviewItem]:
    """Open review items (oldest first), optionally of one meter and including resolved ones."""
    sql = "SELECT photo_key, meter_id, ts_ms, value_read, reason, state FROM review_queue WHERE 1 = 1"
    params: list[object] = []
    if not include_resolved:
        sql += " AND state = 'open'"
    if meter_id is not None:
        sql += " AND meter_id = ?"
        params.append(meter_id)
    sql += " ORDER BY ts_ms, photo_key LIMIT ?"
    params.append(limit)
    return [ReviewItem(k, m, from_ms(t) if t is not None else None, v, r, s)
            for k, m, t, v, r, s in db.query(sql, params)]


def set_value(db: Database, settings: Settings, key: str, value: float) -> dict[str, int]:
    """A person's true value for a photo becomes a trusted reading; returns counts of what it changed."""
    if not math.isfinite(value) or value < 0:
        raise InputError(f"register value must be a number >= 0, got {value!r}")
    rows = db.query("SELECT meter_id, ts_ms, status, published_kwh, reader_version FROM photos WHERE photo_key = ?",
                    (key,))
    if not rows:
        raise NotFoundError(f"no photo {key!r} in the worker's records", hint="smartmeter review list")
    meter_id, ts_ms, status, published, version = rows[0]
    if meter_id is None or ts_ms is None:
        raise InputError(f"photo {key!r} has no meter or capture time ({status}); it cannot carry a reading")
    ts = from_ms(ts_ms)
    source = f"review:{key}"
    with db.transaction():
        if published is not None:
            db.execute("UPDATE readings SET status = 'superseded' WHERE meter_id = ? AND ts_ms = ? AND source = ?",
                       (meter_id, ts_ms, book.IMAGE + key))
        book.store_reading(db, meter_id, ts, value, source, 1.0, "review")
        book.audit(db, meter_id, ts, key, "review", published, value, "value set by review", (), version, "review")
        db.execute("UPDATE photos SET status = 'reviewed', published_kwh = ?, reason = 'value set by review',"
                   " updated_ms = ? WHERE photo_key = ?", (value, now_ms(), key))
        db.execute("UPDATE review_queue SET state = 'resolved', resolved_value = ?, resolved_ms = ?"
                   " WHERE photo_key = ?", (value, now_ms(), key))
        v = book.load_validator(db, settings, meter_id, ts)
        decisions = v.add_trusted(Anchor(f"{source}@{to_ms(ts)}", ts, value, trusted=True))
        counts = book.apply(db, meter_id, decisions)
    log.info("review %s = %g (%s)", key, value, counts)
    return counts
