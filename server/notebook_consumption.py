"""What ``notebooks/consumption_report.ipynb`` shows, one function per cell: the notebook only calls these.

``Session.open`` opens the user's database (the settings' ``database.url`` unless the notebook names another) and
reads the period in the meter's time zone (a date alone is its local midnight). ``consumption(session)`` runs the
scheduled analysis (rollups refreshed, events stored) and the local-time statistics; the ``show_*`` functions turn
the result into IPython display objects (HTML tables with a CSS class, PNG plots).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from smartmeter.errors import InputError, NotFoundError
from smartmeter.server import tariffs as tf
from smartmeter.server.analysis import Statistics, local_index, statistics
from smartmeter.server.database import Database, open_database, to_ms
from smartmeter.server.detectors import Event
from smartmeter.server.events import analyse_meter, stored_events
from smartmeter.server.invoice import invoice_for
from smartmeter.server.notebook_data import html_table, notebook_settings, plot
from smartmeter.settings import MeterSettings, Settings
from smartmeter.settings_billing import FixedCharge, RatePeriod, Tariff, Tier
from smartmeter.types import parse_timestamp

log = logging.getLogger(__name__)


def local_bound(text: str, timezone: str) -> datetime | None:
    """"" -> None; a date alone -> its local midnight in ``timezone``; else an ISO 8601 instant (naive = UTC)."""
    text = text.strip()
    if not text:
        return None
    if len(text) == 10:
        try:
            day = datetime.strptime(text, "%Y-%m-%d").date()
        except ValueError as exc:
            raise InputError(f"not a date (YYYY-MM-DD): {text!r}") from exc
        return datetime.combine(day, time(), ZoneInfo(timezone)).astimezone(UTC)
    return parse_timestamp(text)


@dataclass
class Session:
    settings: Settings
    db: Database
    meter: MeterSettings
    start: datetime | None
    end: datetime | None
    configured: bool = True  # the meter is in the settings file (its resolution is not the notebook's guess)

    @classmethod
    def open(cls, database_url: str, config: str, meter_id: str, start: str = "", end: str = "",
             resolution_kwh: float | None = None, timezone: str = "") -> Session:
        settings = notebook_settings(config, meter_id, resolution_kwh)
        configured = any(m.id == meter_id for m in notebook_settings(config, meter_id).meters)
        if timezone and all(m.id != meter_id for m in settings.meters):
            meters = [*settings.meters, settings.meter(meter_id).model_copy(update={"timezone": timezone})]
            settings = settings.model_copy(update={"meters": meters})
        meter = settings.meter(meter_id)
        t0, t1 = local_bound(start, meter.timezone), local_bound(end, meter.timezone)
        if t0 is not None and t1 is not None and t1 <= t0:
            raise InputError(f"the period ends ({end}) before it starts ({start})")
        return cls(settings, open_database(database_url or settings.database.url), meter, t0, t1, configured)

    def with_resolution(self, resolution_kwh: float) -> Session:
        """The same session with another register step for a meter the settings file does not name."""
        if self.configured:
            return self
        meter = self.meter.model_copy(update={"resolution_kwh": resolution_kwh})
        meters = [*(m for m in self.settings.meters if m.id != meter.id), meter]
        return Session(self.settings.model_copy(update={"meters": meters}), self.db, meter, self.start, self.end,
                       False)

    def describe(self) -> str:
        return (f"database {self.db.url}, meter {self.meter.id} (local time {self.meter.timezone}), period "
                f"{self.start or 'first reading'} .. {self.end or 'last reading'}")


@dataclass
class Consumption:
    session: Session
    stats: Statistics
    events: list[Event]
    state: dict[str, Any]

    def summary(self) -> str:
        s = self.stats
        return (f"{s.readings} readings {s.start:%Y-%m-%d %H:%M} .. {s.end:%Y-%m-%d %H:%M} UTC, "
                f"{s.energy_kwh:.2f} kWh, "
                f"mean {s.mean_power_w or 0:,.0f} W, base load {s.base_load_w or 0:,.0f} W, day "
                f"{s.day_kwh:.2f} / night {s.night_kwh:.2f} kWh; now: blackout {self.state['blackout']}, "
                f"superamento {self.state['superamento']}")


def consumption(session: Session) -> Consumption:
    db, meter = session.db, session.meter
    if not db.count_readings(meter.id):
        raise NotFoundError(f"meter {meter.id} has no readings in the period",
                            hint=f"stored meters: {', '.join(db.meters()) or 'none'}; check meter_id, start and end")
    state = analyse_meter(db, session.settings, meter.id)
    st = statistics(db, meter, session.start, session.end, refresh=False)
    if not st.readings:
        raise NotFoundError(f"meter {meter.id} has no readings in the period",
                            hint=f"stored meters: {', '.join(db.meters())}; check start and end")
    evs = stored_events(db, meter.id, None if session.start is None else to_ms(session.start),
                        None if session.end is None else to_ms(session.end))
    return Consumption(session, st, evs, state)


def display_all(items: list[Any]) -> None:
    """Print the texts, display the rest (HTML tables, PNG images)."""
    from IPython.display import display

    for item in items:
        if isinstance(item, str):
            print(item)
        else:
            display(item)



def show_daily(c: Consumption) -> list[Any]:
    from IPython.display import HTML

    d = c.stats.days
    tz = c.stats.timezone
    rows = [(day.date().isoformat(), float(r.kwh), f"{100 * r.coverage:.0f} %", f"{r.length_h:.0f}")
            for day, r in d.iterrows()]
    table = HTML(html_table([f"day ({tz})", "energy kWh", "coverage", "hours"], rows, "daily-energy"))

    def draw(ax: Any) -> None:
        ax.bar([day.strftime("%a %d %b") for day in d.index], d["kwh"], color="tab:blue")
        ax.set(ylabel="kWh", title=f"Energy per day, meter {c.stats.meter_id}")
        ax.tick_params(axis="x", rotation=45)

    return [table, plot(draw)]


def show_profile(c: Consumption) -> list[Any]:
    def draw(ax: Any) -> None:
        for kind, style in (("weekday", "-o"), ("weekend", "-s")):
            ax.plot(range(24), [np.nan if v is None else v for v in c.stats.profile[kind]], style, label=kind,
                    markersize=3)
        ax.set_xticks(range(0, 24, 2))
        ax.set(xlabel=f"hour of day ({c.stats.timezone})", ylabel="mean power, W")
        ax.legend()

    return [plot(draw)]


def show_duration(c: Consumption) -> list[Any]:
    hr = c.stats.hours
    w = np.sort(hr["power_w"][hr["coverage"] >= 0.999].to_numpy())[::-1]

    def draw(ax: Any) -> None:
        ax.plot(np.linspace(0, 100, w.size), w)
        ax.axhline(c.session.settings.analysis.power_threshold_w, color="tab:red", linestyle="--",
                   label="power threshold")
        ax.set(xlabel="% of hours", ylabel="hourly mean power, W", title="Load-duration curve")
        ax.legend()

    return [plot(draw)]


def show_peaks(c: Consumption, n: int = 10) -> list[Any]:
    from IPython.display import HTML

    hr = c.stats.hours
    full = hr[hr["coverage"] >= 0.999]
    top = full.sort_values("power_w", ascending=False, kind="stable").head(n)
    loc = local_index(top.index, c.stats.timezone)
    rows = [(f"{t:%Y-%m-%d %H:%M %a}", f"{w:,.0f}") for t, w in zip(loc, top["power_w"], strict=True)]
    s = c.stats
    text = (f"highest sensor-reported power: {s.peak_sensor_w or 0:,.0f} W; highest hourly mean: "
            f"{s.peak_hour_w or 0:,.0f} W")
    return [text, HTML(html_table([f"hour ({s.timezone})", "mean W"], rows, "peak-hours"))]


def show_events(c: Consumption) -> list[Any]:
    from IPython.display import HTML

    kinds: dict[str, int] = {}
    for e in c.events:
        kinds[e.kind] = kinds.get(e.kind, 0) + 1
    loc = ZoneInfo(c.stats.timezone)

    def t(ms: int) -> str:
        return f"{datetime.fromtimestamp(ms / 1000, loc):%Y-%m-%d %H:%M}"

    rows = [(e.kind, t(e.start_ms), t(e.end_ms), "open" if e.is_open else "", e.detail) for e in c.events]
    return ["events: " + (", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "none"),
            HTML(html_table(["kind", f"start ({c.stats.timezone})", "end", "", "detail"], rows, "anomalies"))]


def show_invoice(c: Consumption, tariff_per_kwh: float, monthly_fee: float) -> list[Any]:
    """The bill of the period's readings, priced by ``smartmeter.server.invoice`` with the settings' tariffs, or
    without any a flat tariff of the notebook's price and monthly fee (pro rata of each calendar month's days)."""
    from IPython.display import HTML

    s = c.stats
    assert s.start is not None and s.end is not None
    settings = c.session.settings
    if not tf.tariffs_for(settings.billing, c.session.meter.id):
        flat = Tariff(name="notebook", start=date(1970, 1, 1), energy=[RatePeriod(tiers=[Tier(price=tariff_per_kwh)])],
                      fixed=[FixedCharge(name="fixed fee", amount=monthly_fee, per="month")])
        settings = settings.model_copy(update={"billing": settings.billing.model_copy(update={"tariffs": [flat]})})
    bill = invoice_for(c.session.db, settings, c.session.meter.id, "notebook", (s.start, s.end))
    rows = [(f"{ln.kind} {ln.text}: {ln.quantity:f} {ln.unit} x {ln.unit_price:f}", f"{ln.amount}")
            for ln in bill.lines]
    return [HTML(html_table(["item", "amount"], [*rows, (f"total {bill.currency}", f"{bill.total}")], "invoice"))]
