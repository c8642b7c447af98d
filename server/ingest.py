"""Validate and store readings that come without a camera (CSV import, HTTP API, MQTT).

``ingest_readings(db, settings, readings) -> IngestReport`` is the one entry point. Rules, per meter, with the
readings sorted by time (input order does not matter):

- the value must be a finite number within the meter's range: ``min_kwh`` <= value < ``10**digits`` (the
  register's digits before the point: ``MeterSettings.digits``, else the profile's digit count, else
  ``DEFAULT_DIGITS``) and <= ``max_kwh`` when set — so an absurd FIRST reading (``1e300``) is refused instead
  of making every later real reading look "backwards"; a reported power finite, >= 0 and <= ``max_power_w``;
- the time must not be before ``settings.ingest.earliest`` (default 2000-01-01) nor more than
  ``settings.ingest.future_slack_s`` (default 300 s) ahead of the server clock;
- the register never goes backwards by more than ``settings.meter(id).backwards_tolerance_kwh``;
- the power implied by two consecutive readings never exceeds ``settings.meter(id).max_power_w``. The register is
  quantised, so the smallest energy consistent with a change of ``dv`` is ``dv - resolution_kwh``: that is what is
  compared (a single register step between two close readings is never "too much power");
- each reading is judged against the last ACCEPTED reading before it (stored, or accepted earlier in this batch)
  and, when it is back-filled before stored readings, against the first stored reading after it; a rejected
  reading never blocks later good ones;
- a reading whose (meter, time) is already stored — or already accepted in this batch — with the same value is a
  duplicate (counted, not an error); with a different value it is rejected as a conflict.

Everything happens in one transaction: nothing stored before is modified, and either all accepted readings of the
batch are stored or (on a database failure) none is.

Rejections are counted; an :class:`IngestReport` keeps only the first ``keep`` of them (for the message) and hands
every one to its ``on_reject`` callback, so an import of millions of refused rows stays flat in memory.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

from smartmeter.domain import check_meter_id, step_violation
from smartmeter.errors import ConfigError
from smartmeter.server.database import Database, to_ms
from smartmeter.settings import MeterSettings, Settings
from smartmeter.types import Reading, format_timestamp, timestamp_problem, utc

log = logging.getLogger(__name__)

SAME_VALUE_KWH = 1e-6
DEFAULT_DIGITS = 8  # a meter of unknown digit count: below 100,000,000 kWh
KEEP_REJECTED = 20


@dataclass
class IngestReport:
    """Outcome of ingest calls: counts, the first ``keep`` rejected readings with their reason, and
    ``on_reject`` called for every rejection (stream them to a file; nothing else keeps them)."""

    accepted: int = 0
    duplicates: int = 0
    rejected_count: int = 0
    rejected: list[tuple[Reading, str]] = field(default_factory=list)
    keep: int = KEEP_REJECTED
    on_reject: Callable[[Reading, str], None] | None = field(default=None, repr=False)

    def reject(self, reading: Reading, reason: str) -> None:
        self.rejected_count += 1
        if len(self.rejected) < self.keep:
            self.rejected.append((reading, reason))
        if self.on_reject is not None:
            self.on_reject(reading, reason)

    def summary(self) -> str:
        return f"{self.accepted} accepted, {self.duplicates} duplicates, {self.rejected_count} rejected"


_fmt = format_timestamp


@lru_cache(maxsize=32)
def _profile_digits(path: Path) -> int:
    from smartmeter.ocr.profile import load_profile

    p = load_profile(path)
    return max(len(p.digits) + len(p.pointers) - p.decimals, 1)


def register_digits(ms: MeterSettings) -> int:
    """Digits before the point of the meter's register: configured, else its profile's, else DEFAULT_DIGITS."""
    if ms.digits is not None:
        return ms.digits
    if ms.profile is not None:
        try:
            return _profile_digits(ms.profile)
        except ConfigError as exc:
            log.debug("meter %s: profile unreadable (%s); %d digits assumed", ms.id, exc, DEFAULT_DIGITS)
    return DEFAULT_DIGITS


def value_problem(value: float, ms: MeterSettings, digits: int | None = None) -> str | None:
    """Why ``value`` cannot be a register value of this meter (range and digit count), or None."""
    if not math.isfinite(value) or value < 0:
        return f"register value {value!r} is not a number >= 0"
    n = digits if digits is not None else register_digits(ms)
    if value >= 10.0 ** n:
        return (f"register value {value:.6g} kWh does not fit the meter's {n} digits (at most {10 ** n - 1:,} kWh;"
                f" meters[{ms.id}].digits or the profile)")
    if value < ms.min_kwh:
        return f"register value {value:g} kWh is below the meter's min_kwh {ms.min_kwh:g} kWh"
    if ms.max_kwh is not None and value > ms.max_kwh:
        return f"register value {value:g} kWh is above the meter's max_kwh {ms.max_kwh:g} kWh"
    return None


def reading_problem(r: Reading, settings: Settings, now: datetime | None = None) -> str | None:
    """Why ``r`` cannot be stored whatever else is stored (time bounds, range, power), or None."""
    return _own_checks(r, settings.meter(r.meter_id), settings, now or datetime.now(UTC), None)


def _own_checks(r: Reading, ms: MeterSettings, settings: Settings, now: datetime, digits: int | None,
                bounds: tuple[datetime, datetime] | None = None, top: float | None = None) -> str | None:
    """``bounds`` (earliest, latest time) and ``top`` (10**digits) precomputed: the common case costs two
    comparisons each; the messages are built only for a reading that fails."""
    if bounds is None or not bounds[0] <= r.timestamp <= bounds[1]:
        why = timestamp_problem(r.timestamp, settings.ingest.earliest, now, settings.ingest.future_slack_s)
        if why is not None:
            return why
    value = r.value_kwh
    if top is None or not (ms.min_kwh <= value < top and (ms.max_kwh is None or value <= ms.max_kwh)):
        why = value_problem(value, ms, digits)
        if why is not None:
            return why
    if r.power_w is not None:
        if not math.isfinite(r.power_w) or r.power_w < 0:
            return f"reported power {r.power_w!r} is not a number >= 0"
        if r.power_w > ms.max_power_w:
            return f"reported power {r.power_w:.0f} W is above the meter maximum {ms.max_power_w:.0f} W"
    return None


def check_step(earlier: Reading, later: Reading, ms: MeterSettings) -> str | None:
    """Why ``later`` cannot follow ``earlier`` on the same register (``smartmeter.domain.step_violation``), or
    None when it can."""
    dv = later.value_kwh - earlier.value_kwh
    dt = (later.timestamp - earlier.timestamp).total_seconds()
    v = step_violation(dt, dv, ms)
    if v is None:
        return None
    if v.kind == "backwards":
        return (f"register goes backwards by {-dv:.3f} kWh ({earlier.value_kwh:.3f} at {_fmt(earlier.timestamp)}"
                f" -> {later.value_kwh:.3f} at {_fmt(later.timestamp)}; tolerance "
                f"{ms.backwards_tolerance_kwh:g} kWh)")
    return (f"implied power {v.amount:,.0f} W between {_fmt(earlier.timestamp)} and {_fmt(later.timestamp)}"
            f" is above the maximum {ms.max_power_w:,.0f} W (+{dv:.3f} kWh in {dt:g} s)")


def _ingest_meter(db: Database, settings: Settings, batch: list[Reading], report: IngestReport,
                  now: datetime) -> list[Reading]:
    """Judge one meter's readings (sorted) against stored ones; returns those to store."""
    meter_id = batch[0].meter_id
    ms = settings.meter(meter_id)
    digits = register_digits(ms)
    top = 10.0 ** digits
    bounds = (utc(settings.ingest.earliest), now + timedelta(seconds=settings.ingest.future_slack_s))
    first, last = batch[0].timestamp, batch[-1].timestamp
    prev = db.last_reading(meter_id, before=first)
    stored = db.readings(meter_id, start=first, end=last + timedelta(milliseconds=1))  # back-fills
    stored_at: dict[int, list[Reading]] = defaultdict(list)
    for s in stored:
        stored_at[to_ms(s.timestamp)].append(s)
    after = db.first_reading_after(meter_id, last)
    if after is not None:
        stored.append(after)
    accepted_at: dict[int, Reading] = {}
    keep: list[Reading] = []
    i = 0  # next stored reading not yet behind us
    for r in batch:
        ts = to_ms(r.timestamp)
        while i < len(stored) and to_ms(stored[i].timestamp) < ts:
            if prev is None or stored[i].timestamp >= prev.timestamp:
                prev = stored[i]
            i += 1
        reason = _own_checks(r, ms, settings, now, digits, bounds, top)
        same_time = stored_at.get(ts, []) + ([accepted_at[ts]] if ts in accepted_at else [])
        if reason is None and same_time:
            if any(abs(s.value_kwh - r.value_kwh) <= SAME_VALUE_KWH for s in same_time):
                report.duplicates += 1
                continue
            other = same_time[0]
            reason = (f"conflicts with {other.value_kwh:.3f} kWh already recorded at {_fmt(r.timestamp)} "
                      f"(source {other.source})")
        if reason is None and prev is not None:
            reason = check_step(prev, r, ms)
        if reason is None:
            nxt = next((s for s in stored[i:] if to_ms(s.timestamp) > ts), None)
            if nxt is not None:
                reason = check_step(r, nxt, ms)
                if reason:
                    reason = "does not fit the stored reading after it: " + reason
        if reason is not None:
            report.reject(r, reason)
            continue
        keep.append(r)
        accepted_at[ts] = r
        prev = r
    return keep


def ingest_readings(db: Database, settings: Settings, readings: Sequence[Reading],
                    now: datetime | None = None, report: IngestReport | None = None) -> IngestReport:
    """Validate ``readings`` (any order, any meters) and store the good ones in one transaction.

    Counts are added to ``report`` when given (an import passes one report for all its chunks)."""
    report = report if report is not None else IngestReport()
    now = utc(now) if now is not None else datetime.fromtimestamp(time.time(), UTC)
    by_meter: dict[str, list[Reading]] = defaultdict(list)
    for r in readings:
        by_meter[r.meter_id].append(r)
    for meter_id in by_meter:
        check_meter_id(meter_id)
    rejected_before = len(report.rejected)
    with db.transaction():
        db.lock_meters(by_meter)  # PostgreSQL: these meters' writers wait; other meters' go on
        keep: list[Reading] = []
        for batch in by_meter.values():
            batch.sort(key=lambda r: (r.timestamp, r.source))
            keep.extend(_ingest_meter(db, settings, batch, report, now))
        inserted = db.insert_readings(keep)
        if inserted != len(keep):  # same (meter, time, source) stored concurrently: count as duplicates
            report.duplicates += len(keep) - inserted
        report.accepted += inserted
    for r, why in report.rejected[rejected_before:]:
        log.info("rejected %s %s %.3f: %s", r.meter_id, _fmt(r.timestamp), r.value_kwh, why)
    log.debug("ingest: %s", report.summary())
    return report
