"""Pricing: which tariff, period and tier each kWh falls in, fixed charges, taxes and VAT (settings ``billing:``).

The structure is the utility rate database's (see ``smartmeter.settings_billing``). This module prices energy that
``smartmeter.server.invoice`` measured: :func:`slices` cuts a span at every local hour and tariff start,
:func:`price` turns (slice, kWh) pairs into invoice :class:`Line` s. Rules, all written out in docs/billing.md:

- A slice's period is the schedule's entry for its local start hour: weekend schedule on Saturdays, Sundays and the
  tariff's holidays, the month's row when the schedule has 12. Local hours are wall-clock hours, so a DST day has 23
  or 25 of them and each is billed at its own band.
- Tiers count the kWh of the billing period so far in a period of that *name* (a mid-period tariff change that keeps
  the names keeps counting); a slice that crosses a block end is split at it.
- Fixed charges cover the whole billing period (readings or not): ``per: day`` x local days in the tariff's part,
  ``per: month`` x (those days / days of that calendar month); a span that does not start or end at midnight (the
  notebook's) counts the part of its first and last day.
- Each line's amount is rounded to the cent (half up) from the kWh rounded to the Wh; per-kWh taxes follow the
  energy lines of their tariff, VAT is a percentage of that tariff's lines; the total is the sum of the lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from smartmeter.errors import ConfigError
from smartmeter.settings_billing import BillingSettings, Tariff

CENT = Decimal("0.01")
WH = Decimal("0.001")


def money(x: Decimal | float) -> Decimal:
    return Decimal(str(x)).quantize(CENT, rounding=ROUND_HALF_UP)


def kwh3(x: float) -> Decimal:
    return Decimal(repr(float(x))).quantize(WH, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Line:
    """One invoice line: ``quantity`` ``unit`` x ``unit_price`` = ``amount`` (rounded to the cent)."""

    kind: str  # fixed | energy | tax | vat
    tariff: str
    text: str
    quantity: Decimal
    unit: str  # kWh | day | month | the currency (VAT: base x rate)
    unit_price: Decimal
    amount: Decimal


@dataclass(frozen=True)
class Slice:
    start: datetime  # UTC
    end: datetime
    tariff: Tariff
    period: int  # index into tariff.energy


def tariffs_for(billing: BillingSettings, meter_id: str) -> list[Tariff]:
    """The meter's tariffs in start order (a tariff with ``meters`` applies only to those)."""
    out = sorted((t for t in billing.tariffs if not t.meters or meter_id in t.meters), key=lambda t: t.start)
    for a, b in zip(out, out[1:], strict=False):
        if a.start == b.start:
            raise ConfigError(f"billing.tariffs: {a.name!r} and {b.name!r} both start on {a.start} for {meter_id}")
    return out


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def tariff_at(tariffs: Sequence[Tariff], t: datetime, zone: ZoneInfo) -> Tariff | None:
    day = t.astimezone(zone).date()
    found = None
    for tar in tariffs:
        if tar.start <= day:
            found = tar
    return found


def _schedule_row(sched: list[int] | list[list[int]], month: int) -> list[int]:
    return sched[month - 1] if isinstance(sched[0], list) else sched  # type: ignore[return-value]


def period_of(tariff: Tariff, local: datetime) -> int:
    weekend = local.weekday() >= 5 or local.date() in tariff.holidays
    sched = tariff.weekend_schedule if weekend and tariff.weekend_schedule is not None else tariff.weekday_schedule
    return _schedule_row(sched, local.month)[local.hour]


def segments(tariffs: Sequence[Tariff], start: datetime, end: datetime,
             zone: ZoneInfo) -> list[tuple[datetime, datetime, Tariff]]:
    """[start, end) cut at the tariff starts inside it; raises ConfigError where no tariff applies."""
    cuts = sorted({start, end} | {local_midnight(t.start, zone) for t in tariffs
                                  if start < local_midnight(t.start, zone) < end})
    out = []
    for a, b in zip(cuts, cuts[1:], strict=False):
        tar = tariff_at(tariffs, a, zone)
        if tar is None:
            raise ConfigError(f"no tariff applies on {a.astimezone(zone).date()}",
                              hint="add a billing.tariffs entry starting on or before it")
        out.append((a, b, tar))
    return out


def slices(tariffs: Sequence[Tariff], start: datetime, end: datetime, zone: ZoneInfo) -> list[Slice]:
    """[start, end) cut at every local hour and tariff start; consecutive hours of one period are merged."""
    out: list[Slice] = []
    for a, b, tar in segments(tariffs, start, end, zone):
        t = a
        while t < b:
            local = t.astimezone(zone)
            nxt = min(t + timedelta(hours=1) - timedelta(minutes=local.minute, seconds=local.second,
                                                         microseconds=local.microsecond), b)
            p = period_of(tar, local)
            if out and out[-1].tariff is tar and out[-1].period == p and out[-1].end == t:
                out[-1] = Slice(out[-1].start, nxt, tar, p)
            else:
                out.append(Slice(t, nxt, tar, p))
            t = nxt
    return out


def _day_part(t: datetime, zone: ZoneInfo) -> Decimal:
    """How much of its local day has passed at ``t`` (0 at midnight; a DST day is 23 or 25 hours long)."""
    day = t.astimezone(zone).date()
    a, b = local_midnight(day, zone), local_midnight(day + timedelta(days=1), zone)
    return (Decimal((t - a).total_seconds()) / Decimal((b - a).total_seconds())).quantize(Decimal("0.0001"))


def fixed_lines(tariffs: Sequence[Tariff], start: datetime, end: datetime, zone: ZoneInfo) -> list[Line]:
    out = []
    for a, b, tar in segments(tariffs, start, end, zone):
        la, lb = a.astimezone(zone), b.astimezone(zone)
        days = Decimal((lb.date() - la.date()).days) + _day_part(lb, zone) - _day_part(la, zone)
        month_days = ((la.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)).day
        for f in tar.fixed:
            if f.per == "day":
                out.append(Line("fixed", tar.name, f.name, days, "day", Decimal(str(f.amount)),
                                money(days * Decimal(str(f.amount)))))
            else:
                share = days / Decimal(month_days)
                out.append(Line("fixed", tar.name, f"{f.name} ({days.normalize():f}/{month_days} of the month)",
                                share.quantize(Decimal("0.0001")), "month", Decimal(str(f.amount)),
                                money(share * Decimal(str(f.amount)))))
    return out


def price(billing: BillingSettings, start: datetime, end: datetime, zone: ZoneInfo, tariffs: Sequence[Tariff],
          energy: Iterable[tuple[Slice, float]]) -> list[Line]:
    """Every line of the bill for [start, end): fixed charges, energy per tariff/period/tier, taxes, VAT."""
    used: dict[str, float] = {}  # kWh so far in the billing period, per period name
    blocks: dict[tuple[str, str, int], float] = {}  # (tariff, period, tier) -> kWh
    for sl, kwh in energy:
        period = sl.tariff.energy[sl.period]
        left = max(kwh, 0.0)
        for i, tier in enumerate(period.tiers):
            if left <= 0:
                break
            room = left if tier.max_kwh is None else max(tier.max_kwh - used.get(period.name, 0.0), 0.0)
            take = min(left, room)
            if take > 0:
                key = (sl.tariff.name, period.name, i)
                blocks[key] = blocks.get(key, 0.0) + take
                used[period.name] = used.get(period.name, 0.0) + take
                left -= take
    lines = fixed_lines(tariffs, start, end, zone)
    out: list[Line] = []
    for tar in [t for _, _, t in segments(tariffs, start, end, zone)]:
        mine = [ln for ln in lines if ln.tariff == tar.name]
        total_kwh = Decimal(0)
        for period, i in [(p, i) for p in tar.energy for i in range(len(p.tiers))]:  # the structure's order
            if (tar.name, period.name, i) not in blocks:
                continue
            kwh, pname, tier = blocks[(tar.name, period.name, i)], period.name, period.tiers[i]
            q = kwh3(kwh)
            total_kwh += q
            label = pname if len(period.tiers) == 1 else f"{pname}, block {i + 1}" + (
                f" (up to {tier.max_kwh:g} kWh)" if tier.max_kwh is not None else "")
            mine.append(Line("energy", tar.name, label, q, "kWh", Decimal(str(tier.price)),
                             money(q * Decimal(str(tier.price)))))
        for tax in tar.taxes:
            mine.append(Line("tax", tar.name, tax.name, total_kwh, "kWh", Decimal(str(tax.per_kwh)),
                             money(total_kwh * Decimal(str(tax.per_kwh)))))
        if tar.vat_percent:
            base = sum((ln.amount for ln in mine), Decimal(0))
            rate = Decimal(str(tar.vat_percent))
            mine.append(Line("vat", tar.name, f"VAT {tar.vat_percent:g} %", base, billing.currency, rate / 100,
                             money(base * rate / 100)))
        out += mine
    return out


def total(lines: Sequence[Line]) -> Decimal:
    return sum((ln.amount for ln in lines), Decimal(0))
