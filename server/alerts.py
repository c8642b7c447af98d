"""Alert rules (settings ``alerts.rules``) judged against the stored events and the projected bill.

:func:`evaluate` looks, for every rule and meter, at whether the rule's condition holds:

- ``events``: an event of one of those kinds (table ``events``, written by ``smartmeter analyse`` or the worker) is
  open, or one started after the newest event this rule already judged (a short event that closed between two
  passes still raises the alert once). On a rule's first pass only open events count (no alerts about history).
- ``bill_above``: the current period's projected bill (``smartmeter.server.invoice``) is above the limit;
  ``bill_above_last_percent``: it is that many percent above the last period's total. Bills are computed at most
  every ``BILL_EVERY_S``.

Per rule and meter (table ``alert_state``): when the condition starts to hold an *alert* is made, unless the last
alert is less than ``alerts.quiet_s`` old (then it is only counted as suppressed: a flapping condition makes at most
one alert per quiet period); when it stops holding after an alert a *recovery* is made. A message is written to the
outbox once per channel of the rule that the settings configure, in the same transaction as the state that made it
(a crash between the two can neither lose nor repeat it); ``smartmeter.server.alerts_channels`` delivers it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from smartmeter.errors import SmartMeterError
from smartmeter.server import alerts_repo, invoice
from smartmeter.server.database import Database, iso_ms
from smartmeter.server.events import stored_events
from smartmeter.settings import Settings
from smartmeter.settings_billing import AlertRule

log = logging.getLogger(__name__)

BILL_EVERY_S = 300.0


@dataclass
class Condition:
    active: bool
    detail: str
    seen_event_ms: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)


def event_condition(db: Database, rule: AlertRule, meter_id: str, seen_ms: int | None, now_ms: int) -> Condition:
    kinds = set(rule.events)
    evs = [e for e in stored_events(db, meter_id, None if seen_ms is None else seen_ms, None) if e.kind in kinds]
    hits = [e for e in evs if e.is_open or (seen_ms is not None and e.start_ms > seen_ms)]
    newest = max([e.start_ms for e in evs] + ([seen_ms] if seen_ms is not None else []), default=None)
    detail = "; ".join(f"{e.kind}: {e.detail}" for e in hits) or "no " + ", ".join(sorted(kinds))
    return Condition(bool(hits), detail, newest, [{"kind": e.kind, "start": iso_ms(e.start_ms), "end": iso_ms(e.end_ms),
                                                   "open": e.is_open, "detail": e.detail} for e in hits])


def bill_condition(db: Database, settings: Settings, rule: AlertRule, meter_id: str, now_ms: int) -> Condition:
    zone = ZoneInfo(settings.meter(meter_id).timezone)
    period = datetime.fromtimestamp(now_ms / 1000, zone).strftime("%Y-%m")
    try:
        inv = invoice.invoice_for(db, settings, meter_id, period)
    except SmartMeterError as exc:
        return Condition(False, f"no bill for {period}: {exc}")
    projected = inv.projected.total if inv.projected is not None and not inv.complete else inv.total
    cur = inv.currency
    reasons = []
    if rule.bill_above is not None and projected > rule.bill_above:
        reasons.append(f"projected bill {projected} {cur} for {period} is above {rule.bill_above:g} {cur}")
    if rule.bill_above_last_percent is not None:
        prev_name = invoice.previous_period(period)
        try:
            prev = invoice.invoice_for(db, settings, meter_id, prev_name).total
        except SmartMeterError:
            prev = None
        if prev is not None and prev > 0:
            up = (projected / prev - 1) * 100
            if up > rule.bill_above_last_percent:
                reasons.append(f"projected bill {projected} {cur} for {period} is {up:.0f} % above {prev_name}'s "
                               f"{prev} {cur}")
    return Condition(bool(reasons), "; ".join(reasons) or f"projected bill {projected} {cur} for {period}")


class Evaluator:
    """Judges every rule for every meter; keeps when it last computed bills (at most every BILL_EVERY_S)."""

    def __init__(self) -> None:
        self.bills: dict[tuple[str, str], tuple[int, Condition]] = {}

    def evaluate(self, db: Database, settings: Settings, now_ms: int) -> list[dict[str, Any]]:
        """One pass; returns the messages made (each queued once per channel of its rule)."""
        cfg = settings.alerts
        made: list[dict[str, Any]] = []
        meters = db.meters()
        configured = cfg.configured()
        for rule in cfg.rules:
            for meter_id in [m for m in meters if not rule.meters or m in rule.meters]:
                with db.transaction():
                    st = alerts_repo.load_state(db, meter_id, rule.name)
                    cond = self._condition(db, settings, rule, meter_id, st, now_ms)
                    msg = step(st, cond, rule, cfg.quiet_s, now_ms)
                    alerts_repo.save_state(db, st, now_ms)
                    if msg is not None:
                        for ch in [c for c in rule.channels if c in configured]:
                            alerts_repo.enqueue(db, f"{msg['id']}/{ch}", ch, json.dumps(msg), now_ms)
                        made.append(msg)
        return made

    def _condition(self, db: Database, settings: Settings, rule: AlertRule, meter_id: str,
                   st: alerts_repo.State, now_ms: int) -> Condition:
        parts: list[Condition] = []
        if rule.events:
            parts.append(event_condition(db, rule, meter_id, st.seen_event_ms, now_ms))
        if rule.bill_above is not None or rule.bill_above_last_percent is not None:
            key = (meter_id, rule.name)
            at, cond = self.bills.get(key, (-(2**62), None))
            if cond is None or now_ms - at >= BILL_EVERY_S * 1000:
                cond = bill_condition(db, settings, rule, meter_id, now_ms)
                self.bills[key] = (now_ms, cond)
            parts.append(cond)
        active = [p for p in parts if p.active]
        seen = next((p.seen_event_ms for p in parts if p.seen_event_ms is not None), st.seen_event_ms)
        return Condition(bool(active), "; ".join(p.detail for p in (active or parts)), seen,
                         [e for p in parts for e in p.events])


def step(st: alerts_repo.State, cond: Condition, rule: AlertRule, quiet_s: float,
         now_ms: int) -> dict[str, Any] | None:
    """Advance one rule/meter state by one observation; returns the message to send, if any."""
    kind = None
    if cond.active and st.notified == "ok":
        if st.last_alert_ms is None or now_ms - st.last_alert_ms >= quiet_s * 1000:
            kind, st.notified, st.last_alert_ms = "alert", "alert", now_ms
        else:
            st.suppressed += 1
    elif not cond.active and st.notified == "alert":
        kind, st.notified = "recovery", "ok"
    st.active, st.detail = cond.active, cond.detail
    if cond.seen_event_ms is not None:
        st.seen_event_ms = cond.seen_event_ms
    if kind is None:
        return None
    st.seq += 1
    title = (f"SmartMeter {st.meter_id}: {rule.name}" if kind == "alert" else
             f"SmartMeter {st.meter_id}: {rule.name} is over")
    return {"id": f"{st.meter_id}/{rule.name}/{st.seq}", "meter": st.meter_id, "rule": rule.name, "kind": kind,
            "at": iso_ms(now_ms), "title": title, "detail": cond.detail, "events": cond.events}
