"""Every query on the tables ``alert_state``, ``alert_outbox`` and ``ha_published`` (migration 007).

Functions take the :class:`~smartmeter.server.database.Database` first and run inside the caller's transaction
when there is one. Times are epoch milliseconds, UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from smartmeter.server.database import Database


@dataclass
class State:
    meter_id: str
    rule: str
    active: bool = False
    notified: str = "ok"  # alert | ok: what the channels were told last
    last_alert_ms: int | None = None
    seen_event_ms: int | None = None
    seq: int = 0
    suppressed: int = 0
    detail: str = ""


@dataclass(frozen=True)
class OutboxRow:
    id: str
    channel: str
    payload: str
    created_ms: int
    next_try_ms: int
    attempts: int
    sent_ms: int | None
    last_error: str


STATE_COLUMNS = "meter_id, rule, active, notified, last_alert_ms, seen_event_ms, seq, suppressed, detail"
OUTBOX_COLUMNS = "id, channel, payload, created_ms, next_try_ms, attempts, sent_ms, last_error"


def load_state(db: Database, meter_id: str, rule: str) -> State:
    rows = db.query(f"SELECT {STATE_COLUMNS} FROM alert_state WHERE meter_id = ? AND rule = ?", (meter_id, rule))
    if not rows:
        return State(meter_id, rule)
    m, r, a, n, la, se, seq, sup, d = rows[0]
    return State(m, r, bool(a), n, None if la is None else int(la), None if se is None else int(se), int(seq),
                 int(sup), d)


def save_state(db: Database, s: State, now_ms: int) -> None:
    db.execute(f"INSERT INTO alert_state ({STATE_COLUMNS}, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
               "ON CONFLICT (meter_id, rule) DO UPDATE SET active = excluded.active, notified = excluded.notified, "
               "last_alert_ms = excluded.last_alert_ms, seen_event_ms = excluded.seen_event_ms, seq = excluded.seq, "
               "suppressed = excluded.suppressed, detail = excluded.detail, updated_ms = excluded.updated_ms",
               (s.meter_id, s.rule, int(s.active), s.notified, s.last_alert_ms, s.seen_event_ms, s.seq,
                s.suppressed, s.detail, now_ms))


def states(db: Database) -> list[State]:
    rows = db.query(f"SELECT {STATE_COLUMNS} FROM alert_state ORDER BY meter_id, rule")
    return [State(m, r, bool(a), n, la, se, int(seq), int(sup), d) for m, r, a, n, la, se, seq, sup, d in rows]


def enqueue(db: Database, row_id: str, channel: str, payload: str, now_ms: int) -> None:
    db.execute("INSERT INTO alert_outbox (id, channel, payload, created_ms, next_try_ms) VALUES (?, ?, ?, ?, ?) "
               "ON CONFLICT (id) DO NOTHING", (row_id, channel, payload, now_ms, now_ms))


def _row(r: Sequence[Any]) -> OutboxRow:
    return OutboxRow(r[0], r[1], r[2], int(r[3]), int(r[4]), int(r[5]), None if r[6] is None else int(r[6]), r[7])


def due(db: Database, now_ms: int, limit: int = 100) -> list[OutboxRow]:
    """Undelivered rows whose next try has come, oldest first."""
    return [_row(r) for r in db.query(f"SELECT {OUTBOX_COLUMNS} FROM alert_outbox WHERE sent_ms IS NULL AND "
                                      "next_try_ms <= ? ORDER BY created_ms, id LIMIT ?", (now_ms, limit))]


def outbox(db: Database, pending_only: bool = False) -> list[OutboxRow]:
    where = " WHERE sent_ms IS NULL" if pending_only else ""
    return [_row(r) for r in db.query(f"SELECT {OUTBOX_COLUMNS} FROM alert_outbox{where} ORDER BY created_ms, id")]


def mark_sent(db: Database, row_id: str, now_ms: int) -> None:
    db.execute("UPDATE alert_outbox SET sent_ms = ?, attempts = attempts + 1, last_error = '' WHERE id = ?",
               (now_ms, row_id))


def mark_failed(db: Database, row_id: str, next_try_ms: int, error: str) -> None:
    db.execute("UPDATE alert_outbox SET attempts = attempts + 1, next_try_ms = ?, last_error = ? WHERE id = ?",
               (next_try_ms, error[:500], row_id))


def ha_last(db: Database, meter_id: str) -> tuple[float, int] | None:
    rows = db.query("SELECT energy_kwh, ts_ms FROM ha_published WHERE meter_id = ?", (meter_id,))
    return (float(rows[0][0]), int(rows[0][1])) if rows else None


def ha_save(db: Database, meter_id: str, energy_kwh: float, ts_ms: int, now_ms: int) -> None:
    db.execute("INSERT INTO ha_published (meter_id, energy_kwh, ts_ms, updated_ms) VALUES (?, ?, ?, ?) "
               "ON CONFLICT (meter_id) DO UPDATE SET energy_kwh = excluded.energy_kwh, ts_ms = excluded.ts_ms, "
               "updated_ms = excluded.updated_ms", (meter_id, energy_kwh, ts_ms, now_ms))
