"""A person deletes or corrects a stored reading (``smartmeter readings delete|correct``), with an audit trail.

Both take the meter, the reading's time and (when several sources hold a value at that time) its source, plus who
and why. Every change is one row of ``reading_changes`` (migration 003): when, who, why, the old and the new value
and the whole old row as JSON, so nothing is lost — a deleted reading can be put back from its trail.

- ``correct_reading`` validates the new value as any reading is (time bounds, the meter's digits and range, the
  register step against the current readings before and after it: ``smartmeter.server.ingest``); the row keeps
  its source and becomes ``corrected``.
- ``delete_reading`` removes the row (so the right value can be imported again at the same time and source).
- Camera readings (``image:``) and review values (``review:``) belong to their photo: they are changed with
  ``smartmeter review set|undo``, which keeps the photo, the review queue and the cross-frame validation
  consistent; here they are refused with that hint.
"""

from __future__ import annotations

import getpass
import json
import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from smartmeter.domain import check_meter_id
from smartmeter.errors import InputError, NotFoundError, ValidationRejected
from smartmeter.server import readings_repo
from smartmeter.server.database import Database, from_ms, now_ms, to_ms
from smartmeter.server.ingest import check_step, reading_problem
from smartmeter.server.readings_repo import rows_at
from smartmeter.settings import Settings
from smartmeter.types import Reading, format_timestamp

OWNED = {"image:": "a camera reading: change it with `smartmeter review set PHOTO_KEY VALUE`",
         "review:": "a review value: change it with `smartmeter review set` again or `smartmeter review undo`"}


@dataclass(frozen=True)
class Change:
    """One row of the audit trail."""

    op: str
    meter_id: str
    ts: datetime
    source: str
    old_value: float | None
    new_value: float | None
    who: str
    why: str
    at: datetime


def default_who() -> str:
    """Who is making a change: ``SMARTMETER_USER``, else the login name."""
    try:
        return os.environ.get("SMARTMETER_USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def record_change(db: Database, op_id: str, op: str, row: dict[str, Any], new_value: float | None, who: str,
                  why: str) -> None:
    """One audit row; ``row`` is the reading as it was (None values for a reading that did not exist)."""
    db.execute("INSERT INTO reading_changes (id, op_id, op, meter_id, ts_ms, source, old_value, new_value, old_row,"
               " who, why, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (uuid.uuid4().hex, op_id, op, row["meter_id"], row["ts_ms"], row["source"], row.get("value_kwh"),
                new_value, json.dumps(row) if row.get("value_kwh") is not None else None, who, why, now_ms()))


def history(db: Database, meter_id: str, limit: int = 100) -> list[Change]:
    """The meter's audit trail, newest first."""
    check_meter_id(meter_id)
    rows = db.query("SELECT op, meter_id, ts_ms, source, old_value, new_value, who, why, created_ms FROM"
                    " reading_changes WHERE meter_id = ? ORDER BY created_ms DESC, id LIMIT ?", (meter_id, limit))
    return [Change(op, m, from_ms(t), s, o, n, w, y, from_ms(c)) for op, m, t, s, o, n, w, y, c in rows]


def _target(db: Database, meter_id: str, ts: datetime, source: str | None) -> dict[str, Any]:
    check_meter_id(meter_id)
    found = rows_at(db, meter_id, to_ms(ts), source)
    when = format_timestamp(ts)
    if not found:
        raise NotFoundError(f"no current reading of meter {meter_id!r} at {when}"
                            + (f" from {source!r}" if source else ""),
                            hint="smartmeter report, or GET /api/meters/ID/readings, lists them")
    if len(found) > 1:
        sources = ", ".join(r["source"] for r in found)
        raise InputError(f"meter {meter_id!r} has {len(found)} readings at {when} ({sources})",
                         hint="say which with --source")
    row = found[0]
    for prefix, why in OWNED.items():
        if str(row["source"]).startswith(prefix):
            raise InputError(f"the reading at {when} is {why}")
    return row


def _require_why(why: str) -> str:
    if not why.strip():
        raise InputError("say why (--why): the reason is kept in the audit trail")
    return why.strip()[:500]


def delete_reading(db: Database, meter_id: str, ts: datetime, source: str | None = None, *, why: str,
                   who: str | None = None) -> Reading:
    """Delete one stored reading; the whole row is kept in the audit trail. Returns what was deleted."""
    why, who = _require_why(why), who or default_who()
    with db.transaction():
        row = _target(db, meter_id, ts, source)
        readings_repo.delete(db, row["meter_id"], from_ms(row["ts_ms"]), row["source"])
        record_change(db, uuid.uuid4().hex, "delete", row, None, who, why)
    return Reading(meter_id, from_ms(row["ts_ms"]), row["value_kwh"], row["source"], row["confidence"],
                   row["reader_version"], row["power_w"])


def correct_reading(db: Database, settings: Settings, meter_id: str, ts: datetime, value: float,
                    source: str | None = None, *, why: str, who: str | None = None,
                    now: datetime | None = None) -> tuple[float, float]:
    """Give a stored reading a new value, validated like any reading; returns (old, new)."""
    why, who = _require_why(why), who or default_who()
    with db.transaction():
        row = _target(db, meter_id, ts, source)
        new = Reading(meter_id, from_ms(row["ts_ms"]), value, row["source"], row["confidence"],
                      row["reader_version"], row["power_w"])
        problem = reading_problem(new, settings, now)
        ms = settings.meter(meter_id)
        if problem is None:
            before = readings_repo.last_reading(db, meter_id, before=new.timestamp)
            after = readings_repo.first_reading_after(db, meter_id, new.timestamp)
            problem = (check_step(before, new, ms) if before is not None else None) or \
                (check_step(new, after, ms) if after is not None else None)
        if problem is not None:
            raise ValidationRejected(f"{format_timestamp(new.timestamp)} = {value:g} kWh refused: {problem}",
                                     hint="correct or delete the neighbouring reading first if it is the wrong one")
        readings_repo.correct(db, meter_id, new.timestamp, row["source"], value)
        record_change(db, uuid.uuid4().hex, "correct", row, value, who, why)
    return float(row["value_kwh"]), value
