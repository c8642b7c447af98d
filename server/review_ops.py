"""What a ``review set`` changed, kept so that ``review undo`` (or a second, right value) can put it back.

A review value withdraws camera readings that disagree with it, publishes held photos it confirms and changes the
photo's own row and queue entry. :func:`snapshot` takes, for a set of photo keys, every row a review can touch —
their readings (``image:<key>``, ``review:<key>``, any status), their ``photos`` outcome and their
``review_queue`` entry — as plain JSON-able data; :func:`restore` writes such a snapshot back. A ``review_ops``
row (migration 003) keeps the snapshot from before the set and the one from just after it: an undo is refused
when the rows no longer look as the set left them (the worker judged those photos again since), unless forced.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from smartmeter.server.database import Database, now_ms
from smartmeter.server.readings_repo import ROW_COLUMNS

READING_COLUMNS = ROW_COLUMNS  # a whole reading row
PHOTO_COLUMNS = ("status", "reason", "published_kwh", "updated_ms")
QUEUE_COLUMNS = ("photo_key", "meter_id", "ts_ms", "value_read", "reason", "state", "resolved_value", "created_ms",
                 "resolved_ms")
Snapshot = dict[str, Any]


@dataclass(frozen=True)
class ReviewOp:
    op_id: str
    photo_key: str
    meter_id: str
    value_kwh: float
    before: Snapshot
    after: Snapshot
    who: str
    why: str


def snapshot(db: Database, meter_id: str, keys: Iterable[str]) -> Snapshot:
    """Every row a review of these photos can change, keyed by photo key (sorted, so snapshots compare)."""
    out: Snapshot = {}
    for key in sorted(set(keys)):
        readings = db.query(f"SELECT {', '.join(READING_COLUMNS)} FROM readings WHERE meter_id = ? AND source IN"
                            " (?, ?) ORDER BY ts_ms, source", (meter_id, "image:" + key, "review:" + key))
        photo = db.query(f"SELECT {', '.join(PHOTO_COLUMNS)} FROM photos WHERE photo_key = ?", (key,))
        queue = db.query(f"SELECT {', '.join(QUEUE_COLUMNS)} FROM review_queue WHERE photo_key = ?", (key,))
        out[key] = {"readings": [dict(zip(READING_COLUMNS, r, strict=True)) for r in readings],
                    "photo": dict(zip(PHOTO_COLUMNS, photo[0], strict=True)) if photo else None,
                    "queue": dict(zip(QUEUE_COLUMNS, queue[0], strict=True)) if queue else None}
    return json.loads(json.dumps(out))  # the same types a stored snapshot comes back with


def _insert(db: Database, table: str, row: dict[str, Any]) -> None:
    cols = list(row)
    db.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
               [row[c] for c in cols])


def restore(db: Database, meter_id: str, snap: Snapshot) -> None:
    """Write the rows of ``snap`` back (readings and queue entries that did not exist then are removed)."""
    db.lock_meters((meter_id,))  # PostgreSQL: the meter's other writers wait
    for key, rows in snap.items():
        db.execute("DELETE FROM readings WHERE meter_id = ? AND source IN (?, ?)",
                   (meter_id, "image:" + key, "review:" + key))
        for r in rows["readings"]:
            _insert(db, "readings", r)
        if rows["photo"] is not None:
            p = rows["photo"]
            db.execute("UPDATE photos SET status = ?, reason = ?, published_kwh = ?, updated_ms = ?"
                       " WHERE photo_key = ?", (p["status"], p["reason"], p["published_kwh"], p["updated_ms"], key))
        db.execute("DELETE FROM review_queue WHERE photo_key = ?", (key,))
        if rows["queue"] is not None:
            _insert(db, "review_queue", rows["queue"])


def save(db: Database, key: str, meter_id: str, value: float, before: Snapshot, after: Snapshot, who: str,
         why: str) -> str:
    op_id = uuid.uuid4().hex
    db.execute("INSERT INTO review_ops (op_id, photo_key, meter_id, value_kwh, before_rows, after_rows, state, who,"
               " why, created_ms) VALUES (?, ?, ?, ?, ?, ?, 'active', ?, ?, ?)",
               (op_id, key, meter_id, value, json.dumps(before), json.dumps(after), who, why, now_ms()))
    return op_id


def active(db: Database, key: str) -> ReviewOp | None:
    """The review of ``key`` in force (the latest not undone), or None."""
    rows = db.query("SELECT op_id, photo_key, meter_id, value_kwh, before_rows, after_rows, who, why FROM review_ops"
                    " WHERE photo_key = ? AND state = 'active' ORDER BY created_ms DESC LIMIT 1", (key,))
    if not rows:
        return None
    op_id, k, m, v, before, after, who, why = rows[0]
    return ReviewOp(op_id, k, m, float(v), json.loads(before), json.loads(after), who, why)


def close(db: Database, op_id: str, state: str) -> None:
    db.execute("UPDATE review_ops SET state = ?, undone_ms = ? WHERE op_id = ?", (state, now_ms(), op_id))


def changed_keys(now: Snapshot, then: Snapshot) -> list[str]:
    """Photo keys whose rows differ between two snapshots of the same keys."""
    return sorted(k for k in set(now) | set(then) if now.get(k) != then.get(k))
