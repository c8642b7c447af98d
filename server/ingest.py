"""Validate and store readings that come without a camera (CSV import, HTTP API, MQTT).

``ingest_readings(db, settings, readings) -> IngestReport`` is the one entry point. Rules, per meter, with the
readings sorted by time (input order does not matter):

- the value must be a finite number >= 0, a reported power finite, >= 0 and <= ``max_power_w``; the time must
  not be more than ``FUTURE_SLACK_S`` in the future;
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
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from smartmeter.domain import step_violation
from smartmeter.server.storage import Database, to_ms
from smartmeter.settings import MeterSettings, Settings
from smartmeter.types import Reading

log = logging.getLogger(__name__)

FUTURE_SLACK_S = 300.0  # a reading more than 5 minutes ahead of the server clock is rejected
SAME_VALUE_KWH = 1e-6


@dataclass
class IngestReport:
    """Outcome of one ingest call: counts plus each rejected reading with its reason."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[tuple[Reading, str]] = field(default_factory=list)

    def merge(self, other: IngestReport) -> None:
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected.extend(other.rejected)

    def summary(self) -> str:
        return f"{self.accepted} accepted, {self.duplicates} duplicates, {len(self.rejected)} rejected"


def _fmt(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _own_checks(r: Reading, ms: MeterSettings, now_s: float) -> str | None:
    if not math.isfinite(r.value_kwh) or r.value_kwh < 0:
        return f"register value {r.value_kwh!r} is not a number >= 0"
    if r.power_w is not None:
        if not math.isfinite(r.power_w) or r.power_w < 0:
            return f"reported power {r.power_w!r} is not a number >= 0"
        if r.power_w > ms.max_power_w:
            return f"reported power {r.power_w:.0f} W is above the meter maximum {ms.max_power_w:.0f} W"
    if r.timestamp.timestamp() > now_s + FUTURE_SLACK_S:
        return f"time {_fmt(r.timestamp)} is in the future"
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


def _ingest_meter(db: Database, ms: MeterSettings, batch: list[Reading], report: IngestReport,
                  now_s: float) -> list[Reading]:
    """Judge one meter's readings (sorted) against stored ones; returns those to store."""
    meter_id = batch[0].meter_id
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
        reason = _own_checks(r, ms, now_s)
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
            report.rejected.append((r, reason))
            continue
        keep.append(r)
        accepted_at[ts] = r
        prev = r
    return keep


def ingest_readings(db: Database, settings: Settings, readings: Sequence[Reading],
                    now: datetime | None = None) -> IngestReport:
    """Validate ``readings`` (any order, any meters) and store the good ones in one transaction."""
    report = IngestReport()
    now_s = now.timestamp() if now is not None else time.time()
    by_meter: dict[str, list[Reading]] = defaultdict(list)
    for r in readings:
        by_meter[r.meter_id].append(r)
    with db.transaction():
        keep: list[Reading] = []
        for meter_id, batch in by_meter.items():
            batch.sort(key=lambda r: (r.timestamp, r.source))
            keep.extend(_ingest_meter(db, settings.meter(meter_id), batch, report, now_s))
        inserted = db.insert_readings(keep)
        if inserted != len(keep):  # same (meter, time, source) stored concurrently: count as duplicates
            report.duplicates += len(keep) - inserted
        report.accepted += inserted
    for r, why in report.rejected[:20]:
        log.info("rejected %s %s %.3f: %s", r.meter_id, _fmt(r.timestamp), r.value_kwh, why)
    log.debug("ingest: %s", report.summary())
    return report
