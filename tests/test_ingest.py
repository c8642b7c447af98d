"""Validation of camera-less readings (CSV, API, MQTT) in server.ingest."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from smartmeter.errors import DatabaseError
from smartmeter.server.database import Database
from smartmeter.server.ingest import IngestReport, ingest_readings, register_digits
from smartmeter.settings import MeterSettings, Settings
from smartmeter.types import Reading

T0 = datetime(2024, 3, 1, tzinfo=UTC)
SETTINGS = Settings(meters=[MeterSettings(id="m1", max_power_w=10_000, backwards_tolerance_kwh=0.05,
                                          resolution_kwh=0.01)])


def r(minute: float, value: float, source: str = "api", meter: str = "m1", power: float | None = None) -> Reading:
    return Reading(meter, T0 + timedelta(minutes=minute), value, source, power_w=power)


def test_good_series_in_any_order(db: Database) -> None:
    rs = [r(i, 100 + 0.02 * i) for i in range(10)]
    rep = ingest_readings(db, SETTINGS, list(reversed(rs)))
    assert (rep.accepted, rep.duplicates, rep.rejected) == (10, 0, [])
    assert db.readings("m1") == rs


def test_backwards_beyond_tolerance_rejected_and_does_not_block(db: Database) -> None:
    rs = [r(0, 100.0), r(1, 100.02), r(2, 99.9), r(3, 100.0), r(4, 100.05)]
    rep = ingest_readings(db, SETTINGS, rs)
    assert [x[0] for x in rep.rejected] == [rs[2]]
    assert "backwards" in rep.rejected[0][1] and "0.120" in rep.rejected[0][1]
    # 100.0 after 100.02 is within the 0.05 tolerance (last-digit jitter): accepted
    assert [x.value_kwh for x in db.readings("m1")] == [100.0, 100.02, 100.0, 100.05]


def test_spike_judged_against_last_accepted(db: Database) -> None:
    # 10 kW max: 1 minute allows at most 0.1667 (+ one 0.01 step) kWh
    rs = [r(0, 100.0), r(1, 100.1), r(2, 150.0), r(3, 100.2), r(4, 100.3)]
    rep = ingest_readings(db, SETTINGS, rs)
    assert len(rep.rejected) == 1 and rep.rejected[0][0] is rs[2]
    assert "implied power" in rep.rejected[0][1] and "above the maximum" in rep.rejected[0][1]
    assert [x.value_kwh for x in db.readings("m1")] == [100.0, 100.1, 100.2, 100.3]


def test_single_register_step_in_a_short_interval_is_fine(db: Database) -> None:
    rs = [Reading("m1", T0, 100.0, "api"), Reading("m1", T0 + timedelta(seconds=1), 100.01, "api")]
    assert ingest_readings(db, SETTINGS, rs).accepted == 2  # 0.01 kWh in 1 s is quantisation, not 36 kW


def test_compared_with_last_stored_reading(db: Database) -> None:
    assert ingest_readings(db, SETTINGS, [r(0, 100.0)]).accepted == 1
    rep = ingest_readings(db, SETTINGS, [r(1, 99.0), r(2, 130.0), r(60, 101.0)])
    assert [x[0].value_kwh for x in rep.rejected] == [99.0, 130.0]
    assert rep.accepted == 1


@pytest.mark.fault("duplicate delivery", proves="a reading delivered twice (CSV, MQTT) is stored once; a different "
                   "value at the same time is refused")
def test_duplicates_and_conflicts(db: Database) -> None:
    first = ingest_readings(db, SETTINGS, [r(0, 100.0, "csv:a.csv"), r(1, 100.01, "csv:a.csv")])
    assert first.accepted == 2
    again = ingest_readings(db, SETTINGS, [r(0, 100.0, "csv:a.csv"), r(1, 100.01, "mqtt"), r(2, 100.02)])
    assert (again.accepted, again.duplicates, again.rejected) == (1, 2, [])
    conflict = ingest_readings(db, SETTINGS, [r(1, 100.015, "mqtt")])
    assert conflict.accepted == 0 and "conflicts with 100.010" in conflict.rejected[0][1]
    in_batch = ingest_readings(db, SETTINGS, [r(5, 100.1), r(5, 100.1, "mqtt"), r(5, 100.12, "x")])
    assert (in_batch.accepted, in_batch.duplicates, len(in_batch.rejected)) == (1, 1, 1)
    assert db.count_readings("m1") == 4


def test_backfill_must_fit_between_stored_neighbours(db: Database) -> None:
    ingest_readings(db, SETTINGS, [r(0, 100.0), r(60, 101.0)])
    rep = ingest_readings(db, SETTINGS, [r(20, 100.3), r(30, 101.5), r(40, 100.6)])
    assert [x[0].value_kwh for x in rep.rejected] == [101.5]
    assert "stored reading after it" in rep.rejected[0][1]
    assert [x.value_kwh for x in db.readings("m1")] == [100.0, 100.3, 100.6, 101.0]


def test_bad_values_rejected(db: Database) -> None:
    nan = r(1, 1.0)
    object.__setattr__(nan, "value_kwh", math.nan)
    neg_power = r(2, 100.0, power=-1.0)
    huge_power = r(3, 100.0, power=50_000.0)
    future = Reading("m1", datetime.now(UTC) + timedelta(hours=2), 100.0, "api")
    rep = ingest_readings(db, SETTINGS, [r(0, 100.0), nan, neg_power, huge_power, future, r(4, 100.0, power=300)])
    reasons = [why for _, why in rep.rejected]
    assert len(reasons) == 4 and rep.accepted == 2
    assert "not a number" in reasons[0] and "power -1" in reasons[1]
    assert "above the meter maximum" in reasons[2] and "future" in reasons[3]
    assert db.readings("m1")[-1].power_w == 300


def test_unknown_meter_uses_defaults_and_meters_are_independent(db: Database) -> None:
    rep = ingest_readings(db, SETTINGS, [r(0, 5.0, meter="other"), r(0, 100.0), r(1, 4.0, meter="other")])
    assert rep.accepted == 2 and rep.rejected[0][0].meter_id == "other"
    assert db.meter_exists("other")


@pytest.mark.fault("database down", proves="a failing database stores nothing of the batch and keeps what was stored")
def test_database_failure_stores_nothing(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    ingest_readings(db, SETTINGS, [r(0, 100.0)])
    calls = {"n": 0}
    real = db.executemany

    def failing(sql: str, rows: object) -> int:
        calls["n"] += 1
        real(sql, rows)  # the rows are written inside the transaction, then the "disk" fails
        raise DatabaseError("disk I/O error (injected)")

    monkeypatch.setattr(db, "executemany", failing)
    with pytest.raises(DatabaseError, match="injected"):
        ingest_readings(db, SETTINGS, [r(1, 100.01), r(2, 100.02)])
    monkeypatch.undo()
    assert calls["n"] == 1 and [x.value_kwh for x in db.readings("m1")] == [100.0]


@pytest.mark.fault("bad first reading", proves="an absurd first reading is refused, so the real ones after it land")
def test_first_reading_must_fit_the_meters_digits_and_range(db: Database) -> None:
    rep = ingest_readings(db, SETTINGS, [r(0, 1e300), r(1, 100.0), r(2, 100.01)])
    assert rep.accepted == 2 and rep.rejected_count == 1
    assert "does not fit the meter's 8 digits" in rep.rejected[0][1] and "1e+300" in rep.rejected[0][1]
    ranged = Settings(meters=[MeterSettings(id="m1", digits=5, min_kwh=50.0, max_kwh=90_000.0)])
    rep = ingest_readings(db, ranged, [r(10, 123_456.0), r(11, 10.0), r(12, 95_000.0), r(13, 100.02)])
    assert rep.accepted == 1 and [why.split(" kWh")[0] for _, why in rep.rejected] == [
        "register value 123456", "register value 10", "register value 95000"]
    assert "below the meter's min_kwh 50" in rep.rejected[1][1]
    assert "above the meter's max_kwh 90000" in rep.rejected[2][1]


def test_digits_come_from_the_profile(db: Database, resources: Path) -> None:
    profile = next((resources / "photos").glob("*.yaml"))
    meter = MeterSettings(id="m1", profile=profile)
    digits = register_digits(meter)
    assert 3 <= digits <= 8
    rep = ingest_readings(db, Settings(meters=[meter]), [r(0, 10.0 ** digits), r(1, 10.0 ** digits - 1)])
    assert rep.accepted == 1 and f"meter's {digits} digits" in rep.rejected[0][1]


def test_rejections_are_counted_and_streamed_not_kept(db: Database) -> None:
    seen: list[str] = []
    report = IngestReport(keep=3, on_reject=lambda reading, why: seen.append(why))
    ingest_readings(db, SETTINGS, [r(0, 100.0)] + [r(i, 50.0 - i / 100) for i in range(1, 101)], report=report)
    assert report.rejected_count == 100 and len(report.rejected) == 3 and len(seen) == 100
    assert report.summary() == "1 accepted, 0 duplicates, 100 rejected"
