"""The camera worker's bookkeeping in the database: photos, review queue, corrections, validator state.

``load_validator`` rebuilds a meter's :class:`MeterValidator` from what is stored (readings around a time range
and the held/suspect photos), so the database is the only state and a restart loses nothing. ``apply`` writes the
validator's decisions: readings (source ``image:<key>``), photo status, review queue, corrections audit. Callers
run both inside one ``db.transaction()``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from smartmeter.server import photos_repo, readings_repo, review_repo
from smartmeter.server.database import Database, from_ms
from smartmeter.server.frames import Action, Anchor, Decision, Frame, Rules, parse_choices
from smartmeter.server.photos_repo import PhotoRow
from smartmeter.server.readings_repo import audit, store_reading
from smartmeter.server.validation import MeterValidator
from smartmeter.settings import Settings

log = logging.getLogger(__name__)

IMAGE = "image:"
ANCHORS_BEFORE = 50
PHOTO_STATUS = {Action.PUBLISH: "published", Action.HOLD: "held", Action.SUSPECT: "suspect",
                Action.REJECT: "rejected", Action.CORRECT: "corrected", Action.WITHDRAW: "withdrawn",
                Action.DUPLICATE: "duplicate"}


def record_photo(db: Database, key: str, content_hash: str, meter_id: str | None, ts: datetime | None,
                 status: str, reason: str = "", frame: Frame | None = None, reading: str | None = None,
                 ts_source: str = "name", rules: Rules | None = None) -> None:
    """Insert or replace the row of one photo (what was read, before validation decides)."""
    fine = frame.fine(rules.resolution_kwh) if frame is not None and rules is not None else None
    photos_repo.record(db, PhotoRow(
        key, content_hash, meter_id, ts, ts_source, status, frame.value if frame else None, reading,
        frame.digits if frame else (), fine, frame.confidence if frame else 0.0,
        frame.reader_version if frame else "", reason))


def load_validator(db: Database, settings: Settings, meter_id: str, start: datetime) -> MeterValidator:
    """The meter's validator with the anchors from just before ``start`` onwards and its pending photos."""
    rules = Rules.from_settings(settings, meter_id)
    rows = readings_repo.anchor_rows(db, meter_id, start, ANCHORS_BEFORE)
    anchors = []
    for ts_ms, value, source, conf, version, fine in rows:
        image = str(source).startswith(IMAGE)
        key = source[len(IMAGE):] if image else f"{source}@{ts_ms}"
        anchors.append(Anchor(key, from_ms(ts_ms), value, not image, conf, version, fine))
    choices = photos_repo.held_choices(db, meter_id)
    pending = [(Frame(key, ts, value, conf, ds, version, None, choices=parse_choices(choices.get(key, ""))),
                Action.HOLD if status == "held" else Action.SUSPECT)
               for key, ts, value, conf, ds, version, status in photos_repo.pending(db, meter_id)]
    return MeterValidator(meter_id, rules, anchors, pending)


def _review(db: Database, meter_id: str, d: Decision, value: float | None) -> None:
    review_repo.open_item(db, d.key, meter_id, d.ts, value, d.reason)


def apply(db: Database, meter_id: str, decisions: Iterable[Decision]) -> dict[str, int]:
    """Write decisions in order; returns counts per action."""
    counts: dict[str, int] = {}
    readings_repo.register_meter(db, meter_id)
    for d in decisions:
        counts[d.action.value] = counts.get(d.action.value, 0) + 1
        if d.action is Action.DUPLICATE:
            continue  # the photo's row already says what became of it
        status = PHOTO_STATUS[d.action]
        source = IMAGE + d.key
        if d.action is Action.PUBLISH:
            assert d.value is not None
            store_reading(db, meter_id, d.ts, d.value, source, d.confidence, d.reader_version)
            review_repo.resolve(db, d.key, d.value)
        elif d.action is Action.CORRECT:
            assert d.value is not None
            readings_repo.correct(db, meter_id, d.ts, source, d.value)
            audit(db, meter_id, d.ts, d.key, "validation", d.old_value, d.value, d.reason, d.evidence)
        elif d.action is Action.WITHDRAW:
            readings_repo.supersede(db, meter_id, d.ts, source)
            audit(db, meter_id, d.ts, d.key, "validation", d.old_value, None, d.reason, d.evidence)
            _review(db, meter_id, d, d.old_value)
        elif d.action is Action.REJECT:
            _review(db, meter_id, d, d.value)
        published = d.value if d.action in (Action.PUBLISH, Action.CORRECT) else None
        photos_repo.set_outcome(db, d.key, status, d.reason, published)
    return counts
