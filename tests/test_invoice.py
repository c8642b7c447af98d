"""Tariffs and invoices (server.tariffs, server.invoice, `smartmeter invoice`): every total is computed by hand in the
test, from the readings and the tariff written out beside it. Meter time zone Europe/Rome (UTC+1, +2 in summer)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from smartmeter.cli import cli
from smartmeter.errors import ConfigError, InputError, NotFoundError
from smartmeter.server.cli_invoice import payment_text, render_html, render_pdf
from smartmeter.server.database import Database
from smartmeter.server.invoice import compute, invoice_for, previous_period
from smartmeter.settings import Settings
from smartmeter.types import Reading

ROME = "Europe/Rome"
PEAK_8_TO_19 = [1] * 8 + [0] * 11 + [1] * 5  # local hours 8..18 are period 0 (peak), the rest period 1


def settings(*tariffs: dict[str, Any], **billing: Any) -> Settings:
    return Settings.model_validate({"meters": [{"id": "m1", "timezone": ROME}],
                                    "billing": {"tariffs": list(tariffs), **billing}})


def flat(price: float, start: str = "2020-01-01", **kw: Any) -> dict[str, Any]:
    return {"name": kw.pop("name", f"flat {price}"), "start": start, "energy": [{"tiers": [{"price": price}]}], **kw}


def steady(t0: datetime, t1: datetime, kw: float, every: timedelta = timedelta(hours=1),
           v0: float = 1000.0) -> list[Reading]:
    """Readings every ``every`` from t0 to t1 inclusive of a load of ``kw`` kW."""
    out, t = [], t0
    while t <= t1:
        out.append(Reading("m1", t, round(v0 + kw * (t - t0).total_seconds() / 3600, 6), "csv:t"))
        t += every
    return out


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def amounts(inv: Any) -> list[tuple[str, str, str]]:
    return [(ln.kind, ln.text, str(ln.amount)) for ln in inv.lines]


def test_flat_tariff_with_fixed_charges_excise_and_vat() -> None:
    # November 2026 in Rome: 2026-10-31T23:00Z .. 2026-11-30T23:00Z, 30 days, 10 kWh a day = 300 kWh.
    # Readings every 2 h on even UTC hours: both boundaries (23:00Z) are interpolated between two readings.
    s = settings(flat(0.25, fixed=[{"name": "standing", "amount": 10, "per": "month"},
                                   {"name": "meter rent", "amount": 0.1, "per": "day"}],
                      taxes=[{"name": "excise", "per_kwh": 0.02}], vat_percent=10))
    rs = steady(utc(2026, 10, 31, 0), utc(2026, 12, 1, 0), 10 / 24, timedelta(hours=2))
    inv = compute(s, "m1", "2026-11", rs)
    # by hand: standing 10.00 (30/30 of the month), rent 30 x 0.10 = 3.00, energy 300 x 0.25 = 75.00,
    # excise 300 x 0.02 = 6.00; subtotal 94.00, VAT 10 % = 9.40; total 103.40
    assert amounts(inv) == [("fixed", "standing (30/30 of the month)", "10.00"), ("fixed", "meter rent", "3.00"),
                            ("energy", "energy", "75.00"), ("tax", "excise", "6.00"), ("vat", "VAT 10 %", "9.40")]
    assert inv.total == Decimal("103.40") and inv.complete and inv.projected is None
    start, end = inv.boundaries
    assert start.how == "interpolated" and [t for t, _ in start.used] == [utc(2026, 10, 31, 22), utc(2026, 11, 1, 0)]
    assert start.at == utc(2026, 10, 31, 23) and start.value_kwh == pytest.approx(1000 + 23 * 10 / 24)
    assert end.how == "interpolated" and inv.energy_kwh == pytest.approx(300.0)


def test_time_of_use_weekday_weekend_and_holiday() -> None:
    tou = {"name": "tou", "start": "2020-01-01", "energy": [{"name": "peak", "tiers": [{"price": 0.30}]},
                                                            {"name": "off-peak", "tiers": [{"price": 0.20}]}],
           "weekday_schedule": PEAK_8_TO_19, "weekend_schedule": [1] * 24, "holidays": ["2026-11-04"]}
    s = settings(tou)
    rs = steady(utc(2026, 11, 1, 0), utc(2026, 11, 9, 0), 1.0)  # 1 kW, hourly readings
    # Monday 2026-11-02: peak 11 h x 1 kWh x 0.30 = 3.30, off-peak 13 x 0.20 = 2.60
    assert amounts(compute(s, "m1", "2026-11-02", rs))[:2] == [("energy", "peak", "3.30"),
                                                               ("energy", "off-peak", "2.60")]
    # Saturday 2026-11-07 and the holiday Wednesday 2026-11-04: 24 x 0.20 = 4.80
    for day in ("2026-11-07", "2026-11-04"):
        inv = compute(s, "m1", day, rs)
        assert amounts(inv) == [("energy", "off-peak", "4.80")] and inv.total == Decimal("4.80")


@pytest.mark.parametrize(("day", "hours", "off_peak"), [("2026-03-29", 23, "2.40"), ("2026-10-25", 25, "2.80")])
def test_dst_days_bill_their_own_hours(day: str, hours: int, off_peak: str) -> None:
    # Sundays when Rome's clocks change; the same bands every day. 1 kW: 23 (or 25) kWh in the day.
    # peak: local 08..18 = 11 h -> 3.30; off-peak: 12 h x 0.20 = 2.40 (spring), 14 h x 0.20 = 2.80 (autumn: the
    # hour 02:00 twice); daily charge 0.50 x 1 day
    tou = {"name": "tou", "start": "2020-01-01", "energy": [{"name": "peak", "tiers": [{"price": 0.30}]},
                                                            {"name": "off-peak", "tiers": [{"price": 0.20}]}],
           "weekday_schedule": PEAK_8_TO_19, "weekend_schedule": PEAK_8_TO_19,
           "fixed": [{"name": "daily", "amount": 0.5, "per": "day"}]}
    d = datetime.fromisoformat(day).replace(tzinfo=UTC)
    inv = compute(settings(tou), "m1", day, steady(d - timedelta(days=1), d + timedelta(days=2), 1.0))
    assert inv.energy_kwh == pytest.approx(hours)
    assert amounts(inv) == [("fixed", "daily", "0.50"), ("energy", "peak", "3.30"), ("energy", "off-peak", off_peak)]
    assert inv.total == Decimal("0.50") + Decimal("3.30") + Decimal(off_peak)


def test_tiered_blocks_per_billing_period() -> None:
    blocks = {"name": "blocks", "start": "2020-01-01", "energy": [{"name": "energy", "tiers": [
        {"max_kwh": 100, "price": 0.10}, {"max_kwh": 250, "price": 0.20}, {"price": 0.30}]}]}
    rs = steady(utc(2026, 10, 31, 0), utc(2026, 12, 1, 0), 10 / 24)
    inv = compute(settings(blocks), "m1", "2026-11", rs)
    # 300 kWh: 100 x 0.10 = 10.00, 150 x 0.20 = 30.00, 50 x 0.30 = 15.00 -> 55.00
    assert [(str(ln.quantity), str(ln.amount)) for ln in inv.lines] == [("100.000", "10.00"), ("150.000", "30.00"),
                                                                       ("50.000", "15.00")]
    assert inv.total == Decimal("55.00")
    # December starts the blocks again: 31 days x 10 = 310 kWh -> 10.00 + 30.00 + 60 x 0.30 = 58.00
    rs = steady(utc(2026, 11, 30, 0), utc(2027, 1, 1, 0), 10 / 24)
    assert compute(settings(blocks), "m1", "2026-12", rs).total == Decimal("58.00")


def test_price_change_mid_period_is_split_at_the_right_reading() -> None:
    s = settings(flat(0.20, "2026-01-01", name="old", fixed=[{"amount": 15, "per": "month"}]),
                 flat(0.30, "2026-11-16", name="new", fixed=[{"amount": 15, "per": "month"}]))
    rs = steady(utc(2026, 10, 31, 0), utc(2026, 12, 1, 0), 0.5, timedelta(hours=2))
    inv = compute(s, "m1", "2026-11", rs)
    # the change is at local 2026-11-16 00:00 = 2026-11-15T23:00Z, between the readings of 22:00Z and 00:00Z
    change = inv.boundaries[1]
    assert change.at == utc(2026, 11, 15, 23) and change.how == "interpolated"
    assert [t for t, _ in change.used] == [utc(2026, 11, 15, 22), utc(2026, 11, 16, 0)]
    # old: 15 days x 12 kWh = 180 kWh x 0.20 = 36.00, fee 15 x 15/30 = 7.50; new: 180 x 0.30 = 54.00, fee 7.50
    assert [(ln.tariff, str(ln.amount)) for ln in inv.lines] == [("old", "7.50"), ("old", "36.00"),
                                                                 ("new", "7.50"), ("new", "54.00")]
    assert inv.total == Decimal("105.00")


def test_blocks_keep_counting_across_a_tariff_change_and_monthly_schedules() -> None:
    def blocks(price_hi: float, start: str) -> dict[str, Any]:
        return {"name": f"from {start}", "start": start, "energy": [{"name": "energy", "tiers": [
            {"max_kwh": 200, "price": 0.10}, {"price": price_hi}]}]}

    rs = steady(utc(2026, 10, 31, 0), utc(2026, 12, 1, 0), 10 / 24)
    inv = compute(settings(blocks(0.20, "2020-01-01"), blocks(0.40, "2026-11-16")), "m1", "2026-11", rs)
    # 150 kWh by the change (block 1); after it 50 kWh more in block 1, then 100 kWh at the new 0.40:
    # 150 x 0.10 = 15.00; 50 x 0.10 = 5.00 + 100 x 0.40 = 40.00 -> 60.00
    assert [(ln.tariff, str(ln.quantity), str(ln.amount)) for ln in inv.lines] == [
        ("from 2020-01-01", "150.000", "15.00"), ("from 2026-11-16", "50.000", "5.00"),
        ("from 2026-11-16", "100.000", "40.00")]
    # a 12-row schedule: November's row (the 11th) bills every hour at period 1
    sched = [[0] * 24] * 10 + [[1] * 24] + [[0] * 24]
    two = {"name": "m", "start": "2020-01-01", "weekday_schedule": sched, "weekend_schedule": sched,
           "energy": [{"name": "a", "tiers": [{"price": 1.0}]}, {"name": "b", "tiers": [{"price": 0.5}]}]}
    assert amounts(compute(settings(two), "m1", "2026-11-02", rs)) == [("energy", "b", "5.00")]  # 10 kWh x 0.5


def test_running_period_is_projected() -> None:
    s = settings(flat(0.25, fixed=[{"amount": 10, "per": "month"}]))
    rs = steady(utc(2026, 10, 31, 23), utc(2026, 11, 10, 23), 1.0)  # up to local 2026-11-11 00:00: 240 kWh
    inv = compute(s, "m1", "2026-11", rs)
    assert not inv.complete and inv.boundaries[-1].how == "last reading"
    assert inv.total == Decimal("70.00")  # 10.00 + 240 x 0.25
    assert inv.projected is not None and inv.projected.boundaries[-1].how == "projected"
    assert inv.projected.total == Decimal("190.00")  # 30 days at 24 kWh = 720 x 0.25 + 10.00


def test_bad_periods_and_missing_tariffs_are_clear_errors() -> None:
    rs = steady(utc(2026, 10, 31, 0), utc(2026, 11, 2, 0), 1.0)
    with pytest.raises(InputError, match="billing period"):
        compute(settings(flat(0.2)), "m1", "2026-13", rs)
    with pytest.raises(ConfigError, match="no tariff"):
        compute(settings(), "m1", "2026-11", rs)
    with pytest.raises(ConfigError, match="no tariff applies on 2026-11-01"):
        compute(settings(flat(0.2, "2026-11-05")), "m1", "2026-11", rs)
    with pytest.raises(NotFoundError):
        compute(settings(flat(0.2)), "m1", "2025-01", rs)
    with pytest.raises(ValueError, match="names periods"):
        settings({"name": "x", "start": "2020-01-01", "energy": [{"tiers": [{"price": 1}]}],
                  "weekday_schedule": [1] * 24})
    assert previous_period("2026-01") == "2025-12" and previous_period("2026-03-01") == "2026-02-28"


def test_epc_payment_qr_with_iban() -> None:
    s = settings(flat(0.25), iban="IT60 X054 2811 1010 0000 0123 456", creditor="Energia Srl")
    inv = compute(s, "m1", "2026-11-02", steady(utc(2026, 11, 1), utc(2026, 11, 3), 1.0))
    assert inv.total == Decimal("6.00")  # 24 kWh x 0.25
    assert payment_text(inv, s.billing).split("\n") == ["BCD", "002", "1", "SCT", "", "Energia Srl",
                                                        "IT60X0542811101000000123456", "EUR6.00", "", "",
                                                        "SM-m1-2026-11-02"]
    assert payment_text(inv, settings(flat(0.25)).billing) == "SM-m1-2026-11-02 6.00 EUR"
    assert render_pdf(inv, s.billing).startswith(b"%PDF")
    page = render_html(inv, s.billing)
    assert '<table class="invoice-lines">' in page and "<td>6.00</td>" in page and "<svg" in page


def test_cli_invoice_from_the_database(db: Database, tmp_path: Path) -> None:
    db.register_meter("m1")
    db.insert_readings(steady(utc(2026, 10, 31, 0), utc(2026, 12, 1, 0), 10 / 24, timedelta(hours=2)))
    db.insert_readings([Reading("m1", utc(2026, 11, 5, 1), 50.0, "csv:bad")], status="superseded")  # not current
    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml.safe_dump({"database": {"url": db.url}, "meters": [{"id": "m1", "timezone": ROME}],
                                   "billing": {"tariffs": [flat(0.25, vat_percent=10)]}}))
    assert invoice_for(db, Settings.model_validate(yaml.safe_load(cfg.read_text())), "m1", "2026-11").total == \
        Decimal("82.50")  # 300 x 0.25 = 75.00 + VAT 7.50
    if db.dialect != "sqlite":
        return  # the CLI opens the database by URL: the PostgreSQL one needs its password env; the API is tested
    res = CliRunner().invoke(cli, ["-c", str(cfg), "invoice", "--meter", "m1", "--period", "2026-11",
                                   "--format", "json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["total"] == "82.50" and d["boundaries"][0]["how"] == "interpolated" and d["qr_text"].endswith("EUR")
    res = CliRunner().invoke(cli, ["-c", str(cfg), "invoice", "--meter", "nope", "--period", "2026-11"])
    assert res.exit_code == 66 and "unknown meter" in res.output
    res = CliRunner().invoke(cli, ["-c", str(cfg), "invoice", "--meter", "m1", "--period", "2026-11", "--format",
                                   "pdf", "-o", str(tmp_path / "i.pdf")])
    assert res.exit_code == 0 and (tmp_path / "i.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.parametrize("doc", ["billing.md", "alerts.md", "home_assistant.md"])
def test_the_docs_settings_examples_are_valid(doc: str) -> None:
    import re

    from smartmeter.settings import parse_settings

    text = (Path(__file__).resolve().parents[1] / "docs" / doc).read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert blocks
    for block in blocks:
        parse_settings(block, doc)
