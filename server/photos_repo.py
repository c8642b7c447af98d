"""Every query on the camera worker's record of photos: ``photos`` (one row per photo key: what was read and what
became of it) and ``worker_cursor`` (how far the worker listed each image store).

Statuses: ``read`` (OCR done, not yet judged), then what validation decided (``published``, ``held``, ``suspect``,
``rejected``, ``corrected``, ``withdrawn``), ``duplicate`` (same content as another key), ``failed`` (no reading:
bad name, unreadable), ``reviewed`` (a person set the value). ``digits`` holds the per-digit (value, confidence)
pairs as JSON, so a restart rebuilds held frames exactly.

A store lists photos after an opaque cursor (``ImageStore.list_new``); the worker saves each page's cursor in the
same transaction as the page's readings, so a crash re-reads at most the page it was on and never skips one. The
cursor is kept per ``<backend>:<root>`` (:func:`store_id`): two stores of one database keep separate places.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from smartmeter.server.database import Database, from_ms, now_ms, to_ms
from smartmeter.store.base import ImageStore
from smartmeter.types import DigitValue


@dataclass(frozen=True)
class PhotoRow:
    """What ``record`` stores of one photo."""

    key: str
    content_hash: str
    meter_id: str | None
    ts: datetime | None
    ts_source: str
    status: str
    value_kwh: float | None = None
    reading: str | None = None
    digits: Sequence[DigitValue] = ()
    fine_kwh: float | None = None
    confidence: float = 0.0
    reader_version: str = ""
    reason: str = ""


def digits_json(digits: Iterable[DigitValue]) -> str:
    """``[[value, confidence], ...]``; a refused drum with a digit mass gets it as a third item."""
    return json.dumps([[d.value, d.confidence] if d.digit_mass is None else [d.value, d.confidence, list(d.digit_mass)]
                       for d in digits])


def digits_of(text: str) -> list[DigitValue]:
    """The digits :func:`digits_json` wrote (rows written before digit masses were kept have two items)."""
    return [DigitValue(row[0], row[1], tuple(row[2]) if len(row) > 2 and row[2] is not None else None)
            for row in json.loads(text)]


def record(db: Database, p: PhotoRow) -> None:
    """Insert or replace the row of one photo (what was read, before validation decides)."""
    db.execute(
        "INSERT INTO photos (photo_key, content_hash, meter_id, ts_ms, ts_source, status, value_kwh, published_kwh,"
        " reading, digits, fine_kwh, confidence, reader_version, reason, updated_ms)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (photo_key) DO UPDATE SET"
        " content_hash = excluded.content_hash, meter_id = excluded.meter_id, ts_ms = excluded.ts_ms,"
        " ts_source = excluded.ts_source, status = excluded.status, value_kwh = excluded.value_kwh,"
        " published_kwh = NULL, reading = excluded.reading, digits = excluded.digits, fine_kwh = excluded.fine_kwh,"
        " confidence = excluded.confidence, reader_version = excluded.reader_version, reason = excluded.reason,"
        " updated_ms = excluded.updated_ms",
        (p.key, p.content_hash, p.meter_id, to_ms(p.ts) if p.ts else None, p.ts_source, p.status, p.value_kwh,
         p.reading, digits_json(p.digits), p.fine_kwh, p.confidence, p.reader_version, p.reason, now_ms()))


def set_outcome(db: Database, key: str, status: str, reason: str, published_kwh: float | None) -> None:
    """What validation (or a review) made of the photo."""
    db.execute("UPDATE photos SET status = ?, reason = ?, published_kwh = ?, updated_ms = ? WHERE photo_key = ?",
               (status, reason, published_kwh, now_ms(), key))


def pending(db: Database, meter_id: str) -> list[tuple[str, datetime, float | None, float, list[DigitValue], str,
                                                       Literal["held", "suspect"]]]:
    """The meter's held and suspect photos in capture order: (key, time, value, confidence, digits, reader, status)."""
    out: list[tuple[str, datetime, float | None, float, list[DigitValue], str, Literal["held", "suspect"]]] = []
    for key, ts_ms, value, digits, conf, version, status in db.query(
            "SELECT photo_key, ts_ms, value_kwh, digits, confidence, reader_version, status FROM photos"
            " WHERE meter_id = ? AND status IN ('held', 'suspect') ORDER BY ts_ms", (meter_id,)):
        ds = digits_of(digits)
        out.append((str(key), from_ms(ts_ms), value, float(conf), ds, str(version),
                    "held" if status == "held" else "suspect"))
    return out


def held_choices(db: Database, meter_id: str) -> dict[str, str]:
    """The meter's held photos that were read as two plausible readings: ``{key: "1834 or 1835"}`` (``reading``)."""
    return {str(k): str(r) for k, r in db.query(
        "SELECT photo_key, reading FROM photos WHERE meter_id = ? AND status = 'held' AND value_kwh IS NULL"
        " AND reading IS NOT NULL", (meter_id,))}


def review_target(db: Database, key: str) -> tuple[str | None, int | None, str, float | None, str] | None:
    """(meter, ts_ms, status, published value, reader version) of one photo, or None when unknown."""
    rows = db.query("SELECT meter_id, ts_ms, status, published_kwh, reader_version FROM photos WHERE photo_key = ?",
                    (key,))
    if not rows:
        return None
    meter_id, ts_ms, status, published, version = rows[0]
    return meter_id, ts_ms, str(status), published, str(version)


def reading_near(db: Database, meter_id: str, key: str) -> str | None:
    """The text read on photo ``key``, else on the meter's photo read nearest to it in time (None: none read)."""
    rows = db.query("SELECT reading FROM photos WHERE meter_id = ? AND reading IS NOT NULL ORDER BY"
                    " CASE WHEN photo_key = ? THEN 0 ELSE 1 END, ABS(ts_ms - (SELECT ts_ms FROM photos WHERE"
                    " photo_key = ?)) LIMIT 1", (meter_id, key, key))
    return str(rows[0][0]) if rows and rows[0][0] else None


def known(db: Database, values: Sequence[str], column: Literal["photo_key", "content_hash"],
          value: Literal["photo_key", "content_hash"] = "content_hash") -> dict[str, str]:
    """``{column value: value column}`` for the stored photos whose ``column`` is one of ``values``."""
    out: dict[str, str] = {}
    for i in range(0, len(values), 500):
        chunk = list(values[i:i + 500])
        if chunk:
            marks = ",".join("?" * len(chunk))
            out.update((str(a), str(b)) for a, b in db.query(
                f"SELECT {column}, {value} FROM photos WHERE {column} IN ({marks})", chunk))
    return out


def to_reread(db: Database, meter_id: str | None, since: datetime | None) -> list[tuple[str, str, str, int, str]]:
    """Photos ``reprocess`` reads again: (key, content hash, meter, ts_ms, ts source), capture order."""
    sql = ("SELECT photo_key, content_hash, meter_id, ts_ms, ts_source FROM photos WHERE meter_id IS NOT NULL"
           " AND ts_ms IS NOT NULL AND status NOT IN ('duplicate', 'reviewed')")
    params: list[object] = []
    if meter_id is not None:
        sql += " AND meter_id = ?"
        params.append(meter_id)
    if since is not None:
        sql += " AND ts_ms >= ?"
        params.append(to_ms(since))
    return [(str(k), str(h), str(m), int(t), str(s))
            for k, h, m, t, s in db.query(sql + " ORDER BY ts_ms, photo_key", params)]


def outcomes(db: Database, meter_id: str) -> list[tuple[str, float | None, float | None, str]]:
    """(key, value read, value published, status) of every photo of a meter."""
    rows = db.query("SELECT photo_key, value_kwh, published_kwh, status FROM photos WHERE meter_id = ?", (meter_id,))
    return [(str(k), v, p, str(s)) for k, v, p, s in rows]


def meters(db: Database) -> set[str]:
    """Meters with at least one photo."""
    return {str(r[0]) for r in db.query("SELECT DISTINCT meter_id FROM photos WHERE meter_id IS NOT NULL")}


def health_rows(db: Database, meter_id: str, start: datetime | None = None,
                end: datetime | None = None) -> list[tuple[int, str, float, float | None]]:
    """(ts_ms, status, confidence, value read) of a meter's photos with ``start <= capture time < end``."""
    sql = "SELECT ts_ms, status, confidence, value_kwh FROM photos WHERE meter_id = ? AND ts_ms IS NOT NULL"
    params: list[object] = [meter_id]
    for cond, ts in ((" AND ts_ms >= ?", start), (" AND ts_ms < ?", end)):
        if ts is not None:
            sql += cond
            params.append(to_ms(ts))
    return [(int(t), str(s), float(c), v) for t, s, c, v in db.query(sql + " ORDER BY ts_ms, photo_key", params)]


def latest(db: Database, meter_id: str) -> dict[str, object] | None:
    """The meter's most recent photo (by capture time): key, ts_ms, status, reading, value, per-digit
    [value, confidence], confidence, reason."""
    rows = db.query("SELECT photo_key, ts_ms, status, reading, value_kwh, digits, confidence, reason FROM photos "
                    "WHERE meter_id = ? AND ts_ms IS NOT NULL ORDER BY ts_ms DESC, photo_key DESC LIMIT 1",
                    (meter_id,))
    if not rows:
        return None
    key, ts, status, reading, value, digits, confidence, reason = rows[0]
    return {"key": key, "ts_ms": int(ts), "status": status, "reading": reading, "value_kwh": value,
            "digits": [row[:2] for row in json.loads(digits or "[]")], "confidence": float(confidence),
            "reason": reason}


def count(db: Database, meter_id: str) -> int:
    """Photos of a meter the worker has seen."""
    return int(db.query("SELECT COUNT(*) FROM photos WHERE meter_id = ?", (meter_id,))[0][0])


def status_counts(db: Database) -> dict[tuple[str, str], int]:
    """Photos per (meter id, status); photos without a meter under ''."""
    return {(str(m or ""), str(s)): int(n)
            for m, s, n in db.query("SELECT meter_id, status, COUNT(*) FROM photos GROUP BY meter_id, status")}


# ---- worker_cursor ------------------------------------------------------------------------------------------
def fine_positions(db: Database, meter_id: str, start_ms: int,
                   statuses: Sequence[str]) -> list[tuple[int, float, float]]:
    """(capture ms, value, fine kWh) of the meter's photos from ``start_ms`` in ``statuses`` whose stored reading is
    the one read (published = value), time order."""
    marks = ", ".join("?" * len(statuses))
    rows = db.query(f"SELECT ts_ms, value_kwh, fine_kwh FROM photos WHERE meter_id = ? AND ts_ms >= ? AND "
                    f"fine_kwh IS NOT NULL AND value_kwh IS NOT NULL AND published_kwh = value_kwh AND status IN "
                    f"({marks}) ORDER BY ts_ms", (meter_id, start_ms, *statuses))
    return [(int(a), float(b), float(c)) for a, b, c in rows]


def store_id(store: ImageStore) -> str:
    """The key of a store's cursor: backend name and root (folder or Dropbox path)."""
    return f"{store.name}:{getattr(store, 'root', '')}"


def load_cursor(db: Database, store: str) -> str | None:
    """The saved cursor of ``store``, or None before its first page."""
    rows = db.query("SELECT cursor FROM worker_cursor WHERE store = ?", (store,))
    return str(rows[0][0]) if rows else None


def save_cursor(db: Database, store: str, cursor: str) -> None:
    """Remember ``cursor`` for ``store`` (call inside the page's transaction)."""
    db.execute("INSERT INTO worker_cursor (store, cursor, updated_ms) VALUES (?, ?, ?) ON CONFLICT"
               " (store) DO UPDATE SET cursor = excluded.cursor, updated_ms = excluded.updated_ms",
               (store, cursor, now_ms()))
