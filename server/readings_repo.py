"""Every query on the tables ``meters``, ``readings`` and ``corrections`` (the readings' audit trail).

Readings are keyed by (meter_id, ts_ms, source). Only ``smartmeter.domain.CURRENT_STATUSES`` rows (accepted,
corrected) are returned by the queries here; superseded rows stay for the audit trail. The camera worker writes
its readings with source ``image:<photo key>``, a person's review with ``review:<photo key>``.

``smartmeter.server.corrections`` (a person deletes or corrects a reading) uses these too. Functions take the
:class:`~smartmeter.server.database.Database` first and run inside the caller's transaction
when there is one (``insert_readings`` opens its own, nested when called inside one). Inside a transaction the
queries that read or write one meter's readings take that meter's lock first (PostgreSQL; ``Database.lock_meters``).
No validation here: use
``smartmeter.server.ingest.ingest_readings`` for that.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from smartmeter.domain import check_meter_id, current_sql
from smartmeter.server.database import Database, from_ms, now_ms, to_ms
from smartmeter.types import Reading

READING_COLUMNS = "meter_id, ts_ms, value_kwh, power_w, source, confidence, reader_version"
ROW_COLUMNS = ("meter_id", "ts_ms", "value_kwh", "power_w", "source", "confidence", "reader_version", "status",
               "created_ms")  # a whole row, as the audit trail keeps it
CURRENT = current_sql("status")


def reading_row(r: Reading) -> tuple[Any, ...]:
    return (r.meter_id, to_ms(r.timestamp), r.value_kwh, r.power_w, r.source, r.confidence, r.reader_version)


def row_reading(row: Sequence[Any]) -> Reading:
    meter_id, ts_ms, value, power, source, confidence, version = row[:7]
    return Reading(meter_id, from_ms(ts_ms), value, source, confidence, version, power)


# ---- meters ------------------------------------------------------------------------------------------------
def register_meter(db: Database, meter_id: str | None = None, name: str = "") -> str:
    """Create a meter (idempotent); a new id ``m-<hex>`` is generated when ``meter_id`` is None."""
    if meter_id is None:
        meter_id = "m-" + uuid.uuid4().hex[:12]
    check_meter_id(meter_id)
    db.execute("INSERT INTO meters (id, name, created_ms) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
               (meter_id, name, now_ms()))
    return meter_id


def meter_exists(db: Database, meter_id: str) -> bool:
    return bool(db.query("SELECT 1 FROM meters WHERE id = ?", (meter_id,)))


def meters(db: Database) -> list[str]:
    return [r[0] for r in db.query("SELECT id FROM meters ORDER BY id")]


# ---- readings: ingest (CSV, JSON, MQTT) --------------------------------------------------------------------
def insert_readings(db: Database, readings: Iterable[Reading], status: str = "accepted") -> int:
    """Store readings in one transaction (all or nothing); rows already stored are skipped; returns how many
    were new. Unknown meters are registered on the fly."""
    created = now_ms()
    rows = [(*reading_row(r), status, created) for r in readings]
    if not rows:
        return 0
    with db.transaction():
        db.lock_meters({r[0] for r in rows})
        for m in sorted({r[0] for r in rows}):
            register_meter(db, m)
        new = db.executemany(
            f"INSERT INTO readings ({READING_COLUMNS}, status, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING", rows)
        mark_changed(db, ((r[0], r[1]) for r in rows))
        return new


def mark_changed(db: Database, keys: Iterable[tuple[str, int]]) -> None:
    """(meter, ts_ms) of inserted readings -> their UTC hours are marked for ``server.rollups.refresh`` (one row per
    hour and batch; updates and deletes of readings are marked by triggers, migration 004)."""
    hours = sorted({(m, ts - ts % 3_600_000) for m, ts in keys})
    if hours:
        db.executemany("INSERT INTO rollup_dirty (meter_id, hour_ms) VALUES (?, ?) ON CONFLICT DO NOTHING", hours)


def _one(db: Database, sql: str, params: Sequence[Any]) -> Reading | None:
    rows = db.query(sql, params)
    return row_reading(rows[0]) if rows else None


def last_reading(db: Database, meter_id: str, before: datetime | None = None) -> Reading | None:
    """Latest current reading of a meter (strictly before ``before``); ties: highest confidence."""
    db.lock_meters((meter_id,))  # PostgreSQL: this meter's writers wait (see storage_postgres)
    cond, params = "", [meter_id]
    if before is not None:
        cond, params = " AND ts_ms < ?", [meter_id, to_ms(before)]  # type: ignore[list-item]
    return _one(db, f"SELECT {READING_COLUMNS} FROM readings WHERE meter_id = ? AND {CURRENT}{cond}"
                    " ORDER BY ts_ms DESC, confidence DESC LIMIT 1", params)


def first_reading_after(db: Database, meter_id: str, after: datetime) -> Reading | None:
    """Earliest current reading strictly after ``after``."""
    db.lock_meters((meter_id,))  # PostgreSQL: this meter's writers wait (see storage_postgres)
    return _one(db, f"SELECT {READING_COLUMNS} FROM readings WHERE meter_id = ? AND {CURRENT} AND ts_ms > ?"
                    " ORDER BY ts_ms, confidence DESC LIMIT 1", (meter_id, to_ms(after)))


def readings(db: Database, meter_id: str, start: datetime | None = None, end: datetime | None = None,
             sources: str | None = None) -> list[Reading]:
    """Current readings with ``start <= ts < end`` in time order; ``sources`` is a prefix like ``image:``."""
    sql = f"SELECT {READING_COLUMNS} FROM readings WHERE meter_id = ? AND {CURRENT}"
    params: list[Any] = [meter_id]
    if start is not None:
        sql += " AND ts_ms >= ?"
        params.append(to_ms(start))
    if end is not None:
        sql += " AND ts_ms < ?"
        params.append(to_ms(end))
    if sources is not None:
        sql += r" AND source LIKE ? ESCAPE '\'"
        params.append(sources.replace("%", r"\%").replace("_", r"\_") + "%")
    sql += " ORDER BY ts_ms, source"
    return [row_reading(r) for r in db.query(sql, params)]


def readings_page(db: Database, meter_id: str, start_ms: int | None, end_ms: int | None,
                  after: tuple[int, str] | None, limit: int) -> list[Reading]:
    """At most ``limit`` current readings with ``start_ms <= ts < end_ms`` in (time, source) order, strictly after
    the key ``after`` (the last of the previous page): keyset pagination along the primary key."""
    sql = f"SELECT {READING_COLUMNS} FROM readings WHERE meter_id = ? AND {CURRENT}"
    params: list[Any] = [meter_id]
    for cond, value in ((" AND ts_ms >= ?", start_ms), (" AND ts_ms < ?", end_ms)):
        if value is not None:
            sql += cond
            params.append(value)
    if after is not None:
        sql += " AND (ts_ms > ? OR (ts_ms = ? AND source > ?))"
        params += [after[0], after[0], after[1]]
    return [row_reading(r) for r in db.query(sql + " ORDER BY ts_ms, source LIMIT ?", [*params, limit])]


def counts_by_meter(db: Database) -> dict[str, int]:
    """Current readings per meter."""
    return {str(m): int(n) for m, n in db.query(f"SELECT meter_id, COUNT(*) FROM readings WHERE {CURRENT} "
                                                "GROUP BY meter_id")}


def raw_rows(db: Database, meter_id: str, lo_ms: int, hi_ms: int) -> list[tuple[Any, ...]]:
    """(ts_ms, value, power, confidence, source) of the current readings with ``lo_ms <= ts < hi_ms``, unordered
    (every source at a time: ``server.rollups`` picks one)."""
    return db.query("SELECT ts_ms, value_kwh, power_w, confidence, source FROM readings WHERE meter_id = ? AND "
                    f"{CURRENT} AND ts_ms >= ? AND ts_ms < ?", (meter_id, lo_ms, hi_ms))


def curve_rows(db: Database, meter_id: str, lo_ms: int, hi_ms: int) -> list[tuple[int, float, float | None, float]]:
    """(ts_ms, value, power, confidence) of the current readings with ``lo_ms <= ts < hi_ms``, unordered: what
    the power series need (``raw_rows`` without the source, which costs a string per row)."""
    return db.query("SELECT ts_ms, value_kwh, power_w, confidence FROM readings WHERE meter_id = ? AND "
                    f"{CURRENT} AND ts_ms >= ? AND ts_ms < ?", (meter_id, lo_ms, hi_ms))


def nearest_trusted(db: Database, meter_id: str, ts: datetime, earlier: bool, not_source: str) -> Reading | None:
    """The nearest current reading strictly before (``earlier``) or after ``ts`` that no camera made (source not
    ``image:``) and whose source is not ``not_source``: what a person's review value must fit."""
    op, order = ("<", "DESC") if earlier else (">", "ASC")
    return _one(db, f"SELECT {READING_COLUMNS} FROM readings WHERE meter_id = ? AND ts_ms {op} ? AND {CURRENT}"
                    rf" AND source NOT LIKE 'image:%' AND source <> ? ORDER BY ts_ms {order} LIMIT 1",
                (meter_id, to_ms(ts), not_source))


def count_readings(db: Database, meter_id: str | None = None) -> int:
    """All stored rows (superseded too), of one meter or of all."""
    if meter_id is None:
        return int(db.query("SELECT COUNT(*) FROM readings")[0][0])
    return int(db.query("SELECT COUNT(*) FROM readings WHERE meter_id = ?", (meter_id,))[0][0])


def count_other_than(db: Database, source_prefix: str, meter_ids: Sequence[str]) -> int:
    """Rows whose source does not start with ``source_prefix`` and whose meter is not one of ``meter_ids``."""
    marks = ",".join("?" * len(meter_ids)) or "NULL"
    return int(db.query(rf"SELECT COUNT(*) FROM readings WHERE source NOT LIKE ? ESCAPE '\' AND meter_id NOT IN "
                        f"({marks})", [_like_prefix(source_prefix), *meter_ids])[0][0])


def meters_with_source(db: Database, source_prefix: str) -> set[str]:
    """Meters with at least one reading whose source starts with ``source_prefix`` (e.g. ``image:``)."""
    return {str(r[0]) for r in db.query(r"SELECT DISTINCT meter_id FROM readings WHERE source LIKE ? ESCAPE '\'",
                                        (_like_prefix(source_prefix),))}


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + "%"


# ---- readings: the camera worker and the review ------------------------------------------------------------
def store_reading(db: Database, meter_id: str, ts: datetime, value: float, source: str, confidence: float,
                  reader_version: str, status: str = "accepted") -> None:
    """Insert or replace the reading of one source at one time (a photo's, a review's)."""
    db.lock_meters((meter_id,))  # PostgreSQL: this meter's writers wait (see storage_postgres)
    db.execute("INSERT INTO readings (meter_id, ts_ms, value_kwh, power_w, source, confidence, reader_version,"
               " status, created_ms) VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?) ON CONFLICT (meter_id, ts_ms, source)"
               " DO UPDATE SET value_kwh = excluded.value_kwh, confidence = excluded.confidence,"
               " reader_version = excluded.reader_version, status = excluded.status",
               (meter_id, to_ms(ts), value, source, confidence, reader_version, status, now_ms()))
    mark_changed(db, [(meter_id, to_ms(ts))])


def correct(db: Database, meter_id: str, ts: datetime, source: str, value: float) -> None:
    """Replace the value of a stored reading (status ``corrected``)."""
    db.lock_meters((meter_id,))  # PostgreSQL: this meter's writers wait (see storage_postgres)
    db.execute("UPDATE readings SET value_kwh = ?, status = 'corrected' WHERE meter_id = ? AND ts_ms = ?"
               " AND source = ?", (value, meter_id, to_ms(ts), source))


def delete(db: Database, meter_id: str, ts: datetime, source: str) -> None:
    """Remove one reading row (a person's correction; the caller keeps the row in the audit trail)."""
    db.lock_meters((meter_id,))
    db.execute("DELETE FROM readings WHERE meter_id = ? AND ts_ms = ? AND source = ?", (meter_id, to_ms(ts), source))


def rows_at(db: Database, meter_id: str, ts_ms: int, source: str | None = None,
            current_only: bool = True) -> list[dict[str, Any]]:
    """Whole reading rows (``ROW_COLUMNS``) of a meter at one time (optionally one source) as dicts."""
    sql = f"SELECT {', '.join(ROW_COLUMNS)} FROM readings WHERE meter_id = ? AND ts_ms = ?"
    params: list[Any] = [meter_id, ts_ms]
    if source is not None:
        sql += " AND source = ?"
        params.append(source)
    if current_only:
        sql += f" AND {CURRENT}"
    return [dict(zip(ROW_COLUMNS, r, strict=True)) for r in db.query(sql + " ORDER BY source", params)]


def supersede(db: Database, meter_id: str, ts: datetime, source: str) -> None:
    """The reading stops being current (kept for the audit trail)."""
    db.lock_meters((meter_id,))  # PostgreSQL: this meter's writers wait (see storage_postgres)
    db.execute("UPDATE readings SET status = 'superseded' WHERE meter_id = ? AND ts_ms = ? AND source = ?",
               (meter_id, to_ms(ts), source))


def current_value(db: Database, meter_id: str, ts: datetime, source: str) -> tuple[float, str] | None:
    """(value, reader version) of the current reading of ``source`` at ``ts``, or None."""
    rows = db.query(f"SELECT value_kwh, reader_version FROM readings WHERE meter_id = ? AND ts_ms = ? AND"
                    f" source = ? AND {CURRENT}", (meter_id, to_ms(ts), source))
    return (float(rows[0][0]), str(rows[0][1])) if rows else None


def anchor_rows(db: Database, meter_id: str, start: datetime, before: int) -> list[tuple[Any, ...]]:
    """The validator's anchors: the ``before`` current readings just before ``start`` and all from ``start`` on,
    as (ts_ms, value, source, confidence, reader version, fine value of the photo it came from or None)."""
    db.lock_meters((meter_id,))  # PostgreSQL: this meter's writers wait (see storage_postgres)
    lo = to_ms(start)
    cols = ("SELECT r.ts_ms, r.value_kwh, r.source, r.confidence, r.reader_version,"
            " CASE WHEN p.value_kwh = r.value_kwh THEN p.fine_kwh END"
            " FROM readings r LEFT JOIN photos p ON r.source LIKE 'image:%' AND p.photo_key = substr(r.source, 7)"
            f" WHERE r.meter_id = ? AND {current_sql('r.status')}")
    rows = db.query(cols + " AND r.ts_ms < ? ORDER BY r.ts_ms DESC LIMIT ?", (meter_id, lo, before))
    return rows + db.query(cols + " AND r.ts_ms >= ?", (meter_id, lo))


# ---- corrections: the audit trail --------------------------------------------------------------------------
def audit(db: Database, meter_id: str, ts: datetime, key: str, kind: str, old: float | None, new: float | None,
          reason: str, evidence: Iterable[str] = (), old_reader: str = "", new_reader: str = "") -> None:
    """Record one change of a reading (``kind``: validation | review | reprocess)."""
    db.execute("INSERT INTO corrections (id, meter_id, ts_ms, photo_key, kind, old_value, new_value, old_reader,"
               " new_reader, reason, evidence, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (uuid.uuid4().hex, meter_id, to_ms(ts), key, kind, old, new, old_reader, new_reader, reason,
                ",".join(evidence), now_ms()))
