"""The review queue: photos validation rejected or withdrew, and a person's true value for them.

``set_value`` stores the value as a reading with source ``review:<key>`` at the photo's capture time. It is a
trusted anchor: validation never overrules it, and camera readings that disagree with it are withdrawn (audited).
Because it is trusted, it is checked first like any reading (``smartmeter.server.ingest``): the time bounds, the
meter's range and digit count (configured, else the profile's, else as many as the camera read on that photo or
the nearest one read) and
the register step against the other trusted readings (CSV, API, MQTT, other reviews) before and after it — a typo
such as ``99999999`` for ``9999.9`` is refused instead of withdrawing every camera reading.

``preview_value`` says what a value would change (the CLI asks before withdrawing readings). Every set is
undoable: ``undo`` puts back the rows it changed (``server.review_ops``), and setting another value for the same
photo first undoes the previous one — so the right value brings back the camera readings a typo withdrew.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime

from smartmeter.errors import InputError, NotFoundError, ValidationRejected
from smartmeter.server import camera_book as book
from smartmeter.server import photos_repo, readings_repo, review_ops, review_repo
from smartmeter.server.corrections import default_who, record_change
from smartmeter.server.database import Database, from_ms, to_ms
from smartmeter.server.frames import Anchor
from smartmeter.server.ingest import check_step, register_digits, value_problem
from smartmeter.server.review_repo import ReviewItem
from smartmeter.settings import Settings
from smartmeter.types import Reading, timestamp_problem

log = logging.getLogger(__name__)

WITHDRAWING = ("withdraw", "correct")


class _Rollback(Exception):
    """Raised inside a transaction to leave nothing behind (a preview)."""

    def __init__(self, counts: dict[str, int], keys: set[str]) -> None:
        super().__init__("rollback")
        self.counts, self.keys = counts, keys


def list_reviews(db: Database, meter_id: str | None = None, include_resolved: bool = False,
                 limit: int = 100) -> list[ReviewItem]:
    """Open review items (oldest first), optionally of one meter and including resolved ones."""
    return review_repo.items(db, meter_id, include_resolved, limit)


def withdrawn(counts: dict[str, int]) -> int:
    """Camera readings a set withdrew or corrected."""
    return sum(counts.get(k, 0) for k in WITHDRAWING)


def _target(db: Database, key: str) -> tuple[str, datetime, float | None, str]:
    row = photos_repo.review_target(db, key)
    if row is None:
        raise NotFoundError(f"no photo {key!r} in the worker's records", hint="smartmeter review list")
    meter_id, ts_ms, status, published, version = row
    if meter_id is None or ts_ms is None:
        raise InputError(f"photo {key!r} has no meter or capture time ({status}); it cannot carry a reading")
    return meter_id, from_ms(ts_ms), published, version


def _digits(db: Database, settings: Settings, meter_id: str, key: str) -> int:
    ms = settings.meter(meter_id)
    if ms.digits is not None or ms.profile is not None:
        return register_digits(ms)
    # the drums the camera saw: on this photo, else on the meter's photo read nearest in time
    text = photos_repo.reading_near(db, meter_id, key) or ""
    whole = text.split(".")[0].strip()
    return len(whole) if whole.isdigit() else register_digits(ms)


def _check(db: Database, settings: Settings, key: str, meter_id: str, ts: datetime, value: float,
           now: datetime | None) -> None:
    """The same checks as any reading; raises ValidationRejected naming the problem."""
    ms = settings.meter(meter_id)
    problem = timestamp_problem(ts, settings.ingest.earliest, now or datetime.now(ts.tzinfo),
                                settings.ingest.future_slack_s)
    problem = problem or value_problem(value, ms, _digits(db, settings, meter_id, key))
    own = f"review:{key}"
    r = Reading(meter_id, ts, value, own)
    for earlier in (True, False):
        other = readings_repo.nearest_trusted(db, meter_id, ts, earlier, own)
        if problem is None and other is not None:
            why = check_step(other, r, ms) if earlier else check_step(r, other, ms)
            problem = f"{why} (trusted reading from {other.source})" if why else None
    if problem is not None:
        raise ValidationRejected(f"review value {value:g} kWh for {key} refused: {problem}",
                                 hint="check the value on the photo; nothing was changed")


def _apply(db: Database, settings: Settings, key: str, value: float) -> tuple[dict[str, int], set[str]]:
    meter_id, ts, published, version = _target(db, key)
    source = f"review:{key}"
    if published is not None:
        readings_repo.supersede(db, meter_id, ts, book.IMAGE + key)
    readings_repo.store_reading(db, meter_id, ts, value, source, 1.0, "review")
    readings_repo.audit(db, meter_id, ts, key, "review", published, value, "value set by review", (), version,
                        "review")
    photos_repo.set_outcome(db, key, "reviewed", "value set by review", value)
    review_repo.resolve(db, key, value, only_open=False)
    v = book.load_validator(db, settings, meter_id, ts)
    decisions = v.add_trusted(Anchor(f"{source}@{to_ms(ts)}", ts, value, trusted=True))
    counts = book.apply(db, meter_id, decisions)
    return counts, {key} | {d.key for d in decisions}


def _undo_active(db: Database, key: str, who: str, why: str, state: str, force: bool = False) -> int:
    """Undo the review of ``key`` in force, if any; returns how many photos' rows it put back."""
    op = review_ops.active(db, key)
    if op is None:
        return 0
    keys = set(op.before) | set(op.after)
    changed = review_ops.changed_keys(review_ops.snapshot(db, op.meter_id, keys), op.after)
    if changed and not force:
        raise ValidationRejected(f"the review of {key} cannot be undone safely: {len(changed)} photo(s) changed "
                                 f"since ({', '.join(changed[:3])}{', ...' if len(changed) > 3 else ''})",
                                 hint="the worker judged them again; --force restores them anyway")
    review_ops.restore(db, op.meter_id, op.before)
    review_ops.close(db, op.op_id, state)
    _, ts, _, _ = _target(db, key)
    record_change(db, op.op_id, "undo", {"meter_id": op.meter_id, "ts_ms": to_ms(ts), "source": f"review:{key}",
                                         "value_kwh": op.value_kwh}, None, who, why)
    return len(keys)


def preview_value(db: Database, settings: Settings, key: str, value: float,
                  now: datetime | None = None) -> dict[str, int]:
    """What ``set_value`` would change (counts per action); nothing is changed."""
    try:
        with db.transaction():
            _undo_active(db, key, "preview", "preview", "replaced", force=True)
            meter_id, ts, _, _ = _target(db, key)
            _check(db, settings, key, meter_id, ts, value, now)
            raise _Rollback(*_apply(db, settings, key, value))
    except _Rollback as done:
        return done.counts


def set_value(db: Database, settings: Settings, key: str, value: float, *, who: str | None = None,
              why: str = "value set by review", now: datetime | None = None) -> dict[str, int]:
    """A person's true value for a photo becomes a trusted reading; returns counts of what it changed.

    Raises ValidationRejected (nothing changed) when the value fails the checks of any reading."""
    if not math.isfinite(value) or value < 0:
        raise InputError(f"register value must be a number >= 0, got {value!r}")
    who = who or default_who()
    with db.transaction():
        _undo_active(db, key, who, f"replaced by {value:g}", "replaced")
        meter_id, ts, _, _ = _target(db, key)
        _check(db, settings, key, meter_id, ts, value, now)
        try:
            with db.transaction():  # a savepoint: learn which photos the value touches, then start over
                raise _Rollback(*_apply(db, settings, key, value))
        except _Rollback as probe:
            keys = probe.keys
        before = review_ops.snapshot(db, meter_id, keys)
        counts, touched = _apply(db, settings, key, value)
        assert touched <= keys, "the same value on the same rows touched other photos the second time"
        after = review_ops.snapshot(db, meter_id, keys)
        op_id = review_ops.save(db, key, meter_id, value, before, after, who, why)
        record_change(db, op_id, "review", {"meter_id": meter_id, "ts_ms": to_ms(ts), "source": f"review:{key}"},
                      value, who, why)
    log.info("review %s = %g (%s)", key, value, counts)
    return counts


def undo(db: Database, key: str, *, who: str | None = None, why: str = "review undone",
         force: bool = False) -> int:
    """Put back what the review of ``key`` in force changed; returns how many photos' rows were restored."""
    with db.transaction():
        n = _undo_active(db, key, who or default_who(), why, "undone", force)
    if not n:
        raise NotFoundError(f"no review value in force for {key!r}", hint="smartmeter review list --all")
    log.info("review of %s undone (%d photos restored)", key, n)
    return n


__all__ = ["ReviewItem", "list_reviews", "preview_value", "set_value", "undo", "withdrawn"]
