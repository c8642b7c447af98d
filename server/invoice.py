"""Invoices per meter and billing period from the stored (validated) readings, priced by ``smartmeter.server.tariffs``.

``invoice_for(db, settings, meter_id, "2026-11")`` -> :class:`Invoice`: the lines, the boundary readings (period
start, end and every tariff change inside) with how each was obtained, and for a period still running a projection.

The register between two readings is linear in time (the readings' running maximum: a reading a step low never
makes negative energy). A boundary is ``read`` when a reading sits on it, ``interpolated`` between the two readings
around it (both named), ``first reading`` when the meter's readings start later (no energy before it is billed),
``last reading`` when they end earlier. The projection of a running period extends the register from the last
reading at the period's mean power so far and prices the whole period the same way.

A period is ``YYYY-MM`` (a calendar month) or ``YYYY-MM-DD`` (one day), local to the meter's time zone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from smartmeter.errors import ConfigError, InputError, NotFoundError
from smartmeter.server import tariffs as tf
from smartmeter.server.database import Database, from_ms, to_ms
from smartmeter.server.power import clean_series
from smartmeter.server.rollups import load_raw
from smartmeter.settings import Settings
from smartmeter.types import Reading, format_timestamp

PERIOD = re.compile(r"^(\d{4})-(\d{2})(?:-(\d{2}))?$")


def period_bounds(period: str, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """``2026-11`` -> (local 2026-11-01 00:00, local 2026-12-01 00:00); ``2026-10-25`` -> that local day."""
    m = PERIOD.match(period.strip())
    if not m:
        raise InputError(f"not a billing period: {period!r}", hint="use YYYY-MM or YYYY-MM-DD")
    try:
        y, mo = int(m[1]), int(m[2])
        if m[3]:
            d0 = date(y, mo, int(m[3]))
            d1 = d0 + timedelta(days=1)
        else:
            d0 = date(y, mo, 1)
            d1 = date(y + mo // 12, mo % 12 + 1, 1)
    except ValueError as exc:
        raise InputError(f"not a billing period: {period!r} ({exc})") from exc
    return tf.local_midnight(d0, zone), tf.local_midnight(d1, zone)


def previous_period(period: str) -> str:
    m = PERIOD.match(period.strip())
    if not m:
        raise InputError(f"not a billing period: {period!r}")
    if m[3]:
        return (date(int(m[1]), int(m[2]), int(m[3])) - timedelta(days=1)).isoformat()
    y, mo = int(m[1]), int(m[2])
    return f"{y - (mo == 1)}-{12 if mo == 1 else mo - 1:02d}"


@dataclass(frozen=True)
class Boundary:
    at: datetime
    value_kwh: float
    how: str  # read | interpolated | first reading | last reading | projected
    used: tuple[tuple[datetime, float], ...]  # the readings it comes from

    def as_dict(self) -> dict[str, Any]:
        return {"at": format_timestamp(self.at), "value_kwh": round(self.value_kwh, 4), "how": self.how,
                "readings": [{"at": format_timestamp(t), "value_kwh": v} for t, v in self.used]}


class Register:
    """The register as a function of time: linear between readings (their running maximum)."""

    def __init__(self, ts_ms: np.ndarray, kwh: np.ndarray) -> None:
        order = np.argsort(ts_ms, kind="stable")
        self.ms = np.asarray(ts_ms, np.int64)[order]
        self.values = np.maximum.accumulate(np.asarray(kwh, np.float64)[order]) if order.size else np.zeros(0)
        self.rate_kwh_s: float | None = None  # projection beyond the last reading

    @classmethod
    def from_readings(cls, readings: Sequence[Reading]) -> Register:
        series = clean_series(readings)
        return cls(np.array([to_ms(r.timestamp) for r in series], np.int64),
                   np.array([r.value_kwh for r in series], np.float64))

    def __len__(self) -> int:
        return int(self.ms.size)

    def time(self, i: int) -> datetime:
        return from_ms(int(self.ms[i]))

    def count(self, start: datetime, end: datetime) -> int:
        """Readings with start <= t <= end."""
        return int(np.searchsorted(self.ms, to_ms(end), "right") - np.searchsorted(self.ms, to_ms(start), "left"))

    def boundary(self, t: datetime) -> Boundary:
        ms, vs, n = self.ms, self.values, int(self.ms.size)
        tm = to_ms(t)
        i = int(np.searchsorted(ms, tm, "left"))

        def point(j: int) -> tuple[datetime, float]:
            return self.time(j), float(vs[j])

        if i < n and ms[i] == tm:
            return Boundary(t, float(vs[i]), "read", (point(i),))
        if i == 0:
            return Boundary(self.time(0), float(vs[0]), "first reading", (point(0),))
        if i == n:
            if self.rate_kwh_s is not None:
                v = float(vs[-1]) + self.rate_kwh_s * (tm - int(ms[-1])) / 1000
                return Boundary(t, v, "projected", (point(n - 1),))
            return Boundary(self.time(n - 1), float(vs[-1]), "last reading", (point(n - 1),))
        f = (tm - int(ms[i - 1])) / (int(ms[i]) - int(ms[i - 1]))
        return Boundary(t, float(vs[i - 1] + (vs[i] - vs[i - 1]) * f), "interpolated", (point(i - 1), point(i)))

    def at(self, t: datetime) -> float:
        return self.boundary(t).value_kwh


@dataclass
class Invoice:
    meter_id: str
    period: str
    start: datetime
    end: datetime
    currency: str
    lines: list[tf.Line]
    boundaries: list[Boundary]
    energy_kwh: float
    readings: int
    complete: bool  # readings reach the period's end
    projected: Invoice | None = None
    reference: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> Decimal:
        return tf.total(self.lines)

    def as_dict(self) -> dict[str, Any]:
        return {"meter": self.meter_id, "period": self.period, "start": format_timestamp(self.start),
                "end": format_timestamp(self.end), "currency": self.currency, "reference": self.reference,
                "energy_kwh": round(self.energy_kwh, 3), "readings": self.readings, "complete": self.complete,
                "lines": [{"kind": ln.kind, "tariff": ln.tariff, "text": ln.text, "quantity": str(ln.quantity),
                           "unit": ln.unit, "unit_price": str(ln.unit_price), "amount": str(ln.amount)}
                          for ln in self.lines],
                "total": str(self.total), "boundaries": [b.as_dict() for b in self.boundaries],
                "projected_total": None if self.projected is None else str(self.projected.total)}


def compute(settings: Settings, meter_id: str, period: str, readings: Sequence[Reading]) -> Invoice:
    """The invoice of ``period`` from ``readings`` (those around the period included)."""
    start, end = period_bounds(period, ZoneInfo(settings.meter(meter_id).timezone))
    return compute_span(settings, meter_id, period, start, end, readings)


def compute_span(settings: Settings, meter_id: str, period: str, start: datetime, end: datetime,
                 readings: Sequence[Reading] | Register) -> Invoice:
    """The bill of any span [start, end) (the notebook's period); tiers count from ``start``."""
    zone = ZoneInfo(settings.meter(meter_id).timezone)
    tariffs = tf.tariffs_for(settings.billing, meter_id)
    if not tariffs:
        raise ConfigError("no tariff is configured", hint="add billing.tariffs to the settings (docs/billing.md)")
    reg = readings if isinstance(readings, Register) else Register.from_readings(readings)
    if not len(reg) or reg.time(-1) <= start or reg.time(0) >= end:
        raise NotFoundError(f"meter {meter_id} has no readings in or around {period}")
    inside = reg.count(start, end)
    inv = _priced(settings, meter_id, period, start, end, zone, tariffs, reg, inside)
    if not inv.complete:
        first = reg.boundary(start)
        span = (reg.time(-1) - first.at).total_seconds()
        if span > 0:
            reg.rate_kwh_s = (float(reg.values[-1]) - first.value_kwh) / span
            inv.projected = _priced(settings, meter_id, period, start, end, zone, tariffs, reg, inside)
        reg.rate_kwh_s = None
    return inv


def _priced(settings: Settings, meter_id: str, period: str, start: datetime, end: datetime, zone: ZoneInfo,
            tariffs: Sequence[Any], reg: Register, inside: int) -> Invoice:
    cuts = [start] + [a for a, _, _ in tf.segments(tariffs, start, end, zone)[1:]] + [end]
    bounds = [reg.boundary(t) for t in cuts]
    energy = [(sl, reg.at(sl.end) - reg.at(sl.start)) for sl in tf.slices(tariffs, start, end, zone)]
    lines = tf.price(settings.billing, start, end, zone, tariffs, energy)
    kwh = bounds[-1].value_kwh - bounds[0].value_kwh
    return Invoice(meter_id, period, start, end, settings.billing.currency, lines, bounds, kwh, inside,
                   complete=bounds[-1].how in ("read", "interpolated"), reference=f"SM-{meter_id}-{period}")


def invoice_for(db: Database, settings: Settings, meter_id: str, period: str,
                span: tuple[datetime, datetime] | None = None) -> Invoice:
    """The invoice of one meter and period (or of ``span``, named ``period``) from the database's current readings."""
    if not db.meter_exists(meter_id):
        raise NotFoundError(f"unknown meter {meter_id!r}")
    start, end = span or period_bounds(period, ZoneInfo(settings.meter(meter_id).timezone))
    raw = load_raw(db, meter_id, to_ms(start), to_ms(end) + 1)  # one reading per time, the most confident
    around = [r for r in (db.last_reading(meter_id, start), db.first_reading_after(meter_id, end)) if r is not None]
    ms = np.concatenate([raw["ts_ms"].to_numpy(np.int64), [to_ms(r.timestamp) for r in around]]).astype(np.int64)
    kwh = np.concatenate([raw["value_kwh"].to_numpy(np.float64), [r.value_kwh for r in around]])
    return compute_span(settings, meter_id, period, start, end, Register(ms, kwh))


def render_text(inv: Invoice) -> str:
    cur = inv.currency
    out = [f"Invoice {inv.reference}  meter {inv.meter_id}  period {inv.period} "
           f"({format_timestamp(inv.start)} .. {format_timestamp(inv.end)})", ""]
    for ln in inv.lines:
        out.append(f"  {ln.tariff[:18]:<18} {ln.text[:40]:<40} {ln.quantity:>12} {ln.unit:<5} x {ln.unit_price:>9}"
                   f" = {ln.amount:>10} {cur}")
    out += ["", f"  {'total':<60} {inv.total:>42} {cur}", "", f"  energy {inv.energy_kwh:.3f} kWh from "
            f"{inv.readings} readings; boundary readings:"]
    for b in inv.boundaries:
        used = ", ".join(f"{v:.3f} kWh at {format_timestamp(t)}" for t, v in b.used)
        out.append(f"    {format_timestamp(b.at)}  {b.value_kwh:.3f} kWh  {b.how} ({used})")
    if not inv.complete:
        out.append("  the period is not over (or its readings end early): "
                   + (f"projected total {inv.projected.total} {cur}" if inv.projected else "no projection"))
    return "\n".join(out) + "\n"
