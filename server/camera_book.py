"""The camera worker's bookkeeping in the database: photos, review queue, corrections, validator state.

``load_validator`` rebuilds a meter's :class:`MeterValidator` from what is stored (readings around a time range
and the held/suspect photos), so the database is the only state and a restart loses nothing. ``apply`` writes the
validator's decisions: readings (source ``image:<key>``), photo status, review queue, corrections audit. Callers
run both inside one ``db.transaction()``.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable
from datetime import datetime

from smartmeter.server.frames import Action, Anchor, Decision, Frame, Rules
from smartmeter.server.storage import Database, from_ms, now_ms, to_ms
from smartmeter.server.validation import MeterValidator
from smartmeter.settings import Settings
from smartmeter.types import DigitValue

log = logging.getLogger(__name__)

IMAGE = "image:"
ANCHORS_BEFORE = 50
PHOTO_STATUS = {Action.PUBLISH: "published", Action.HOLD: "held", Action.SUSPECT: "suspect",
                Action.REJECT: "rejected", Action.CORRECT: "corrected", Action.WITHDRAW: "withdrawn",
                Action.DUPLICATE: "duplicate"}


def digits_json(digits: Iterable[DigitValue]) -> str:
    return json.dumps([[d.value, d.confidence] for d in digits])


def record_photo(db: Database, key: str, content_hash: str, meter_id: str | None, ts: datetime | None,
                 status: str, reason: str = "", frame: Frame | None = None, reading: str | None = None,
                 ts_source: str = "name", rules: Rules | None = None) -> None:
    """Insert or replace the row of one photo (what was read, before validation decides)."""
    fine = frame.fine(rules.resolution_kwh) if frame is not None and rules is not None else None
    db.execute(
        "INSERT INTO photos (photo_key, content_hash, meter_id, ts_ms, ts_source, status, value_kwh, published_kwh,"
        " reading, digits, fine_kwh, confidence, reader_version, reason, updated_ms)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (photo_key) DO UPDATE SET"
        " content_hash = excluded.content_hash, meter_id = excluded.meter_id, ts_ms = excluded.ts_ms,"
        " ts_source = excluded.ts_source, status = excluded.status, value_kwh = excluded.value_kwh,"
        " published_kwh = NULL, reading = excluded.reading, digits = excluded.digits, fine_kwh = excluded.fine_kwh,"
        " confidence = excluded.confidence, reader_version = excluded.reader_version, reason = excluded.reason,"
        " updated_ms = excluded.updated_ms",
        (key, content_hash, meter_id, to_ms(ts) if ts else None, ts_source, status,
         frame.value if frame else None, reading, digits_json(frame.digits if frame else []), fine,
         frame.confidence if frame else 0.0, frame.reader_version if frame else "", reason, now_ms()))


def load_validator(db: Database, settings: Settings, meter_id: str, start: datetime) -> MeterValidator:
    """The meter's validator with the anchors from just before ``start`` onwards and its pending photos."""
    rules = Rules.from_settings(settings, meter_id)
    lo = to_ms(start)
    cols = ("SELECT r.ts_ms, r.value_kwh, r.source, r.confidence, r.reader_version,"
            " CASE WHEN p.value_kwh = r.value_kwh THEN p.fine_kwh END"
            " FROM readings r LEFT JOIN photos p ON r.source LIKE 'image:%' AND p.photo_key = substr(r.source, 7)"
            " WHERE r.meter_id = ? AND r.status IN ('accepted', 'corrected')")
    rows = db.query(cols + " AND r.ts_ms < ? ORDER BY r.ts_ms DESC LIMIT ?", (meter_id, lo, ANCHORS_BEFORE))
    rows += db.query(cols + " AND r.ts_ms >= ?", (meter_id, lo))
    anchors = []
    for ts_ms, value, source, conf, version, fine in rows:
        image = str(source).startswith(IMAGE)
        key = source[len(IMAGE):] if image else f"{source}@{ts_ms}"
        anchors.append(Anchor(key, from_ms(ts_ms), value, not image, conf, version, fine))
    pending = []
    for key, ts_ms, value, digits, conf, version, status in db.query(
            "SELECT photo_key, ts_ms, value_kwh, digits, confidence, reader_version, status FROM photos"
            " WHERE meter_id = ? AND status IN ('held', 'suspect') ORDER BY ts_ms", (meter_id,)):
        ds = [DigitValue(v, c) for v, c in json.loads(digits)]
        kind = Action.HOLD if status == "held" else Action.SUSPECT
        pending.append((Frame(key, from_ms(ts_ms), value, conf, ds, version, None), kind))
    return MeterValidator(meter_id, rules, anchors, pending)


def _review(db: Database, meter_id: str, d: Decision, value: float | None) -> None:
    db.execute("INSERT INTO review_queue (photo_key, meter_id, ts_ms, value_read, reason, state, created_ms)"
               " VALUES (?, ?, ?, ?, ?, 'open', ?) ON CONFLICT (photo_key) DO UPDATE SET reason = excluded.reason,"
               " value_read = excluded.value_read, state = 'open', resolved_value = NULL, resolved_ms = NULL",
               (d.key, meter_id, to_ms(d.ts), value, d.reason, now_ms()))


def audit(db: Database, meter_id: str, ts: datetime, key: str, kind: str, old: float | None, new: float | None,
          reason: str, evidence: Iterable[str] = (), old_reader: str = "", new_reader: str = "") -> None:
    db.execute("INSERT INTO corrections (id, meter_id, ts_ms, photo_key, kind, old_value, new_value, old_reader,"
               " new_reader, reason, evidence, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (uuid.uuid4().hex, meter_id, to_ms(ts), key, kind, old, new, old_reader, new_reader, reason,
                ",".join(evidence), now_ms()))


def store_reading(db: Database, meter_id: str, ts: datetime, value: float, source: str, confidence: float,
                  reader_version: str, status: str = "accepted") -> None:
    db.execute("INSERT INTO readings (meter_id, ts_ms, value_kwh, power_w, source, confidence, reader_version,"
               " status, created_ms) VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?) ON CONFLICT (meter_id, ts_ms, source)"
               " DO UPDATE SET value_kwh = excluded.value_kwh, confidence = excluded.confidence,"
               " reader_version = excluded.reader_version, status = excluded.status",
               (meter_id, to_ms(ts), value, source, confidence, reader_version, status, now_ms()))


def apply(db: Database, meter_id: str, decisions: Iterable[Decision]) -> dict[str, int]:
    """Write decisions in order; returns counts per action."""
    counts: dict[str, int] = {}
    db.register_meter(meter_id)
    for d in decisions:
        counts[d.action.value] = counts.get(d.action.value, 0) + 1
        if d.action is Action.DUPLICATE:
            continue  # the photo's row already says what became of it
        status = PHOTO_STATUS[d.action]
        source = IMAGE + d.key
        if d.action is Action.PUBLISH:
            assert d.value is not None
            store_reading(db, meter_id, d.ts, d.value, source, d.confidence, d.reader_version)
            db.execute("UPDATE review_queue SET state = 'resolved', resolved_value = ?, resolved_ms = ?"
                       " WHERE photo_key = ? AND state = 'open'", (d.value, now_ms(), d.key))
        elif d.action is Action.CORRECT:
            assert d.value is not None
            db.execute("UPDATE readings SET value_kwh = ?, status = 'corrected' WHERE meter_id = ? AND ts_ms = ?"
                       " AND source = ?", (d.value, meter_id, to_ms(d.ts), source))
            audit(db, meter_id, d.ts, d.key, "validation", d.old_value, d.value, d.reason, d.evidence)
        elif d.action is Action.WITHDRAW:
            db.execute("UPDATE readings SET status = 'superseded' WHERE meter_id = ? AND ts_ms = ? AND source = ?",
                       (meter_id, to_ms(d.ts), source))
            audit(db, meter_id, d.ts, d.key, "validation", d.old_value, None, d.reason, d.evidence)
            _review(db, meter_id, d, d.old_value)
        elif d.action is Action.REJECT:
            _review(db, meter_id, d, d.value)
        published = d.value if d.action in (Action.PUBLISH, Action.CORRECT) else None
        db.execute("UPDATE photos SET status = ?, reason = ?, published_kwh = ?, updated_ms = ? WHERE photo_key = ?",
                   (status, d.reason, published, now_ms(), d.key))
    return counts
