"""Anomaly detection and statistics against constructed series with known events; the report and its CLI."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from smartmeter.cli import cli
from smartmeter.server.analysis import Event, analyse, load_duration
from smartmeter.server.report import build_report, render_text
from smartmeter.server.storage import open_database
from smartmeter.settings import AnalysisSettings, MeterSettings, Settings
from smartmeter.types import Reading

T0 = datetime(2024, 6, 1, tzinfo=UTC)
CFG = AnalysisSettings()  # blackout 300 s, power 6000 W, 30 kWh/day, stale camera 1800 s, gap 900 s
M01 = MeterSettings(id="m", resolution_kwh=0.01)


def minutes(power: Callable[[int], float], n: int, res: float = 0.01, sensor: bool = False,
            holes: tuple[tuple[int, int], ...] = (), source: str = "csv:x.csv") -> list[Reading]:
    """One reading per minute (minute m held at power(m) W); readings in holes [a, b) minutes are missing."""
    out, energy = [], 500.0
    for m in range(n):
        if not any(a <= m < b for a, b in holes):
            shown = round(math.floor(energy / res + 1e-9) * res, 6)
            out.append(Reading("m", T0 + timedelta(minutes=m), shown, source, 1.0, "",
                               power(m) if sensor else None))
        energy += power(m) * 60 / 3.6e6
    return out


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]


def test_sensor_blackout_exact_bounds() -> None:
    rs = minutes(lambda m: 0.0 if 100 <= m < 130 else 300.0, 240, sensor=True)
    ev = analyse(rs, M01, CFG).events
    assert kinds(ev) == ["blackout"]
    assert ev[0].start == T0 + timedelta(minutes=100) and ev[0].end == T0 + timedelta(minutes=130)
    assert ev[0].value == 1800 and "sensor" in ev[0].detail


def test_short_zero_and_zero_sensor_with_moving_register_are_not_blackouts() -> None:
    short = minutes(lambda m: 0.0 if 100 <= m < 104 else 300.0, 240, sensor=True)
    assert analyse(short, M01, CFG).events == []
    broken = [Reading(r.meter_id, r.timestamp, r.value_kwh, r.source, power_w=0.0 if 100 <= i < 160 else 300.0)
              for i, r in enumerate(minutes(lambda m: 300.0, 240))]  # register keeps counting 300 W
    assert analyse(broken, M01, CFG).events == []


def test_hole_without_step_is_blackout_only_when_the_base_load_would_have_stepped() -> None:
    # 200 W base load, 0.01 kWh steps every 3 min. A 2-hour hole with the register frozen: blackout.
    frozen = minutes(lambda m: 0.0 if 60 <= m < 180 else 200.0, 300, holes=((61, 180),))
    ev = analyse(frozen, M01, CFG).events
    assert kinds(ev) == ["blackout"]
    assert ev[0].start == T0 + timedelta(minutes=60) and ev[0].end == T0 + timedelta(minutes=180)
    assert "base load" in ev[0].detail
    # the same hole while the house kept consuming: the register stepped across it -> a gap, not a blackout
    offline = minutes(lambda m: 200.0, 300, holes=((61, 180),))
    ev = analyse(offline, M01, CFG).events
    assert kinds(ev) == ["gap"] and "stepped" in ev[0].detail
    # coarse register (0.1 kWh = 30 min at 200 W): a 20-minute hole without a step proves nothing
    coarse = MeterSettings(id="m", resolution_kwh=0.1)
    rs = minutes(lambda m: 200.0, 600, res=0.1, holes=((305, 325),))  # steps every 30 min: at 300 and 330
    before, after = (next(r for r in rs if r.timestamp == T0 + timedelta(minutes=k)) for k in (304, 325))
    assert before.value_kwh == after.value_kwh
    ev = analyse(rs, coarse, CFG).events
    assert kinds(ev) == ["gap"] and "too short to tell" in ev[0].detail


def test_power_high_from_sensor_and_from_register() -> None:
    profile = lambda m: 7000.0 if 60 <= m < 80 else 400.0  # noqa: E731
    ev = analyse(minutes(profile, 180, sensor=True), M01, CFG).events
    assert kinds(ev) == ["power_high"]
    assert ev[0].start == T0 + timedelta(minutes=60) and ev[0].end == T0 + timedelta(minutes=80)
    assert ev[0].value == 7000.0 and "20 min" in ev[0].detail
    ev = analyse(minutes(profile, 180), M01, CFG).events  # no sensor: derived between register steps
    assert kinds(ev) == ["power_high"]
    assert abs((ev[0].start - (T0 + timedelta(minutes=60))).total_seconds()) <= 120
    assert abs((ev[0].end - (T0 + timedelta(minutes=80))).total_seconds()) <= 120
    assert 6000 < ev[0].value < 9000


def test_energy_per_day_and_threshold() -> None:
    rs = minutes(lambda m: 2000.0 if m < 1440 else 500.0, 2 * 1440 + 1)
    a = analyse(rs, M01, CFG)
    assert [d.day for d in a.stats.days] == [date(2024, 6, 1), date(2024, 6, 2)]  # 06-03 00:00 has no span
    assert a.stats.days[0].energy_kwh == pytest.approx(48.0, abs=0.05)
    assert a.stats.days[1].energy_kwh == pytest.approx(12.0, abs=0.05)
    assert [d.coverage for d in a.stats.days] == [1.0, 1.0]
    assert kinds(a.events) == ["energy_day"] and a.events[0].value == pytest.approx(48.0, abs=0.05)
    assert a.stats.energy_kwh == pytest.approx(60.0, abs=0.02)
    assert a.stats.mean_power_w == pytest.approx(1250.0, rel=0.01)


def test_stale_camera_between_photos_and_until_now() -> None:
    cam = minutes(lambda m: 300.0, 240, source="image:2024/06/01/x.jpg", holes=((100, 160),))
    api = minutes(lambda m: 300.0, 240, source="api")
    rs = cam + [r for r in api if T0 + timedelta(minutes=99) < r.timestamp < T0 + timedelta(minutes=160)]
    ev = analyse(rs, M01, CFG, now=T0 + timedelta(minutes=250)).events
    assert kinds(ev) == ["stale_camera"]
    assert ev[0].start == T0 + timedelta(minutes=99) and ev[0].end == T0 + timedelta(minutes=160)
    ev = analyse(cam, M01, CFG, now=T0 + timedelta(hours=6)).events
    assert ev[-1].kind == "stale_camera" and ev[-1].end == T0 + timedelta(hours=6)
    assert ev[-1].value == pytest.approx(2 * 3600 + 60)
    assert analyse(api, M01, CFG, now=T0 + timedelta(days=3)).events == []  # no camera: never stale


def test_statistics_load_duration_and_base_load() -> None:
    rs = minutes(lambda m: 2000.0 if m % 4 == 0 else 200.0, 24 * 60, sensor=True)
    s = analyse(rs, M01, CFG).stats
    curve = dict(s.load_duration)
    assert curve[10] == 2000.0 and curve[50] == 200.0 and curve[90] == 200.0
    assert s.base_load_w == 200.0 and s.peak_reported_w == 2000.0 and s.power_source == "sensor"
    assert s.mean_power_w == pytest.approx(650.0, rel=0.01)
    assert load_duration([]) == [] and load_duration([(3.0, 5.0)]) == [(p, 5.0) for p in (1, 5, 10, 25, 50,
                                                                                             75, 90, 99)]
    empty = analyse([], M01, CFG)
    assert empty.events == [] and empty.stats.readings == 0


def test_report_text_json_and_cli(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/r.db"
    settings = Settings(database={"url": url}, meters=[M01])
    rs = minutes(lambda m: 0.0 if 100 <= m < 130 else (7000.0 if 200 <= m < 220 else 300.0), 300, sensor=True)
    with open_database(url) as db:
        db.insert_readings(rs)
        rep = build_report(db, settings, now=T0 + timedelta(minutes=300))
    text = render_text(rep)
    assert "Meter m: 300 readings" in text and "anomalies: 2" in text
    assert "blackout" in text and "power_high" in text and "load duration (sensor)" in text
    cfg = tmp_path / "s.yaml"
    cfg.write_text(f"database:\n  url: {url}\nmeters:\n  - id: m\n    resolution_kwh: 0.01\n")
    res = CliRunner().invoke(cli, ["-c", str(cfg), "report", "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert [e["kind"] for e in data["meters"][0]["events"]] == ["blackout", "power_high"]
    res = CliRunner().invoke(cli, ["-c", str(cfg), "report", "--meter", "nope"])
    assert res.exit_code == 66 and "no such meter" in res.output
    res = CliRunner().invoke(cli, ["-c", str(cfg), "report", "--since", "2024-06-01T03:00:00Z"])
    assert res.exit_code == 0 and "anomalies: 1" in res.output


@pytest.mark.parametrize("sensor", [True, False])
def test_long_load_heater_left_on(sensor: bool) -> None:
    # 200 W base; a 2 kW heater runs 03:00-06:00 (3 h): one long_load event with those bounds.
    rs = minutes(lambda m: 2200.0 if 180 <= m < 360 else 200.0, 600, sensor=sensor)
    ev = [e for e in analyse(rs, M01, CFG).events if e.kind == "long_load"]
    assert len(ev) == 1
    assert abs((ev[0].start - (T0 + timedelta(minutes=180))).total_seconds()) <= 300
    assert abs((ev[0].end - (T0 + timedelta(minutes=360))).total_seconds()) <= 300
    assert 1800 <= ev[0].value <= 2200


def test_long_load_needs_the_full_duration_and_no_break() -> None:
    short = minutes(lambda m: 2200.0 if 180 <= m < 280 else 200.0, 600, sensor=True)  # 100 min < 2 h
    assert "long_load" not in kinds(analyse(short, M01, CFG).events)
    broken = minutes(lambda m: 2200.0 if 180 <= m < 360 and m != 250 else 200.0, 600, sensor=True)
    assert "long_load" not in kinds(analyse(broken, M01, CFG).events)
