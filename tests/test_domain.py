"""The domain rules written once (smartmeter/domain.py): the meter id, the current statuses, the register step,
and that every place that applied them applies the same rule."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from smartmeter.domain import CURRENT_STATUSES, READING_STATUSES, check_meter_id, is_meter_id, step_violation
from smartmeter.errors import InputError
from smartmeter.server import payloads
from smartmeter.server.frames import Rules
from smartmeter.server.ingest import check_step
from smartmeter.settings import MeterSettings
from smartmeter.types import Reading, parse_photo_name

T0 = datetime(2025, 3, 1, tzinfo=UTC)
GOOD = ["m1", "a" * 64, "House_2.main-meter", "0"]
BAD = ["", "a" * 65, "m 1", "m/1", "m1\n", "\nm1", "m1\x00", "città", "m1;DROP"]


@pytest.mark.parametrize("meter_id", GOOD)
def test_a_valid_meter_id_is_accepted_everywhere(meter_id: str) -> None:
    assert check_meter_id(meter_id) == meter_id == payloads.check_meter_id(meter_id)
    assert MeterSettings(id=meter_id).id == meter_id
    assert parse_photo_name(f"20250301T120000Z_{meter_id}.jpg")[0] == meter_id


@pytest.mark.parametrize("meter_id", BAD)
def test_an_invalid_meter_id_is_refused_everywhere(meter_id: str) -> None:
    """A trailing newline passed ``re.match(r"^...$")`` in the HTTP/MQTT ingest and the worker before."""
    assert not is_meter_id(meter_id)
    with pytest.raises(InputError, match="is not 1-64 letters, digits"):
        check_meter_id(meter_id)
    with pytest.raises(InputError):
        payloads.check_meter_id(meter_id)
    with pytest.raises(ValidationError):
        MeterSettings(id=meter_id)
    with pytest.raises(InputError):
        parse_photo_name(f"20250301T120000Z_{meter_id}.jpg")


def test_not_a_string_is_not_a_meter_id() -> None:
    for value in (None, 12, b"m1", ["m1"]):
        assert not is_meter_id(value)
        with pytest.raises(InputError):
            check_meter_id(value)


def test_statuses_match_the_schema() -> None:
    """The ``readings.status`` CHECK constraint lists exactly the statuses the domain knows."""
    sql = (Path(__file__).parent.parent / "server/migrations/001_readings.sql").read_text(encoding="utf-8")
    m = re.search(r"CHECK \(status IN \(([^)]*)\)\)", sql)
    assert m is not None
    assert tuple(s.strip().strip("'") for s in m[1].split(",")) == READING_STATUSES
    assert set(CURRENT_STATUSES) < set(READING_STATUSES) and "superseded" not in CURRENT_STATUSES


def test_step_rule() -> None:
    ms = MeterSettings(id="m", resolution_kwh=0.01, max_power_w=6000, backwards_tolerance_kwh=0.02)
    assert step_violation(600, 1.0 + 0.01, ms) is None  # 6 kW for 10 minutes plus one register step
    v = step_violation(600, 1.2, ms)
    assert v is not None and v.kind == "power" and v.amount == pytest.approx(1.19 * 6 * 1000)  # W: 1.19 kWh in 1/6 h
    assert step_violation(600, -0.02, ms) is None  # last-digit jitter
    assert step_violation(600, -0.05, ms) == step_violation(0, -0.05, ms)
    assert step_violation(0, -0.05, ms).kind == "backwards"  # type: ignore[union-attr]
    assert step_violation(0, 0.01, ms) is None  # same instant: one drum caught mid-roll
    assert step_violation(0, 0.03, ms).amount == float("inf")  # type: ignore[union-attr]
    assert step_violation(100.0, 100.02 - 100.0 + 0.01 - 0.01, ms) is None  # float rounding is not a step


def test_validation_and_ingest_apply_the_same_step_rule() -> None:
    """``frames.Rules.fits`` (cross-frame validation) and ``ingest.check_step`` (CSV, HTTP, MQTT) agree on every
    step, at and just beyond each bound. Before, ingest's slack was 1e-9 kWh and validation's a thousandth of a
    register step, so a rise 5e-6 kWh over the power bound was fine for one and refused by the other."""
    for res, power, tol in ((0.1, 3 * 63 * 230.0, 0.0), (0.01, 6000.0, 0.02), (1.0, 3000.0, 0.5)):
        ms = MeterSettings(id="m", resolution_kwh=res, max_power_w=power, backwards_tolerance_kwh=tol)
        rules = Rules(meter=ms)
        for dt, slack in itertools.product((0.0, 1.0, 60.0, 3600.0), (-2e-3, -5e-6, 0.0, 5e-6, 2e-3)):
            for dv in (power * dt / 3.6e6 + res + slack * res, -tol + slack * res, slack * res):
                earlier = Reading("m", T0, 1000.0, "csv:x")
                later = Reading("m", T0 + timedelta(seconds=dt), 1000.0 + dv, "csv:x")
                fits = rules.fits(T0.timestamp(), 1000.0, later.timestamp.timestamp(), 1000.0 + dv)
                assert fits == (check_step(earlier, later, ms) is None), (res, dt, dv)
                assert fits == (step_violation(dt, later.value_kwh - earlier.value_kwh, ms) is None)
