"""Every query on the table ``review_queue``: photos validation rejected or withdrew, waiting for a person.

One row per photo key; ``state`` is ``open`` until a value is published for the photo (by validation or by a
person, ``resolved_value``). Reopening a resolved item clears its resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from smartmeter.server.database import Database, from_ms, now_ms, to_ms


@dataclass(frozen=True)
class ReviewItem:
    """One item of the queue: the photo, its meter and capture time (None when unknown), the value read."""

    key: str
    meter_id: str | None
    ts: datetime | None
    value_read: float | None
    reason: str
    state: str


def open_item(db: Database, key: str, meter_id: str, ts: datetime, value_read: float | None, reason: str) -> None:
    """Put the photo in the queue (again), with the value read and why it needs a person."""
    db.execute("INSERT INTO review_queue (photo_key, meter_id, ts_ms, value_read, reason, state, created_ms)"
               " VALUES (?, ?, ?, ?, ?, 'open', ?) ON CONFLICT (photo_key) DO UPDATE SET reason = excluded.reason,"
               " value_read = excluded.value_read, state = 'open', resolved_value = NULL, resolved_ms = NULL",
               (key, meter_id, to_ms(ts), value_read, reason, now_ms()))


def resolve(db: Database, key: str, value: float, only_open: bool = True) -> None:
    """The photo's value is known now (published by validation; ``only_open=False``: set by a person)."""
    db.execute("UPDATE review_queue SET state = 'resolved', resolved_value = ?, resolved_ms = ? WHERE photo_key = ?"
               + (" AND state = 'open'" if only_open else ""), (value, now_ms(), key))


def drop_open(db: Database, key: str) -> None:
    """Forget an open item (the photo is read and judged again)."""
    db.execute("DELETE FROM review_queue WHERE photo_key = ? AND state = 'open'", (key,))


def items(db: Database, meter_id: str | None = None, include_resolved: bool = False,
          limit: int = 100) -> list[ReviewItem]:
    """Open items (oldest first), optionally of one meter and including resolved ones."""
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


def count_open(db: Database, meter_id: str | None = None) -> int:
    """Open items, of one meter or of all."""
    sql, params = "SELECT COUNT(*) FROM review_queue WHERE state = 'open'", []
    if meter_id is not None:
        sql, params = sql + " AND meter_id = ?", [meter_id]
    return int(db.query(sql, params)[0][0])
