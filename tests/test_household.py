"""Synthetic household: reproducible, components add up, profiles and seasons differ, events are injected."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from smartmeter.cli import cli
from smartmeter.errors import InputError
from smartmeter.simulator.dataset import read_csv, sample, write_csv
from smartmeter.simulator.events import Event, load_events, plan_events
from smartmeter.simulator.household import generate, paint

JAN1 = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday


def test_same_seed_same_data_other_seed_other_data() -> None:
    a = generate("day-worker", 2, JAN1, seed=3)
    b = generate("day-worker", 2, JAN1, seed=3)
    c = generate("day-worker", 2, JAN1, seed=4)
    assert np.array_equal(a.power_w, b.power_w)
    assert not np.array_equal(a.power_w, c.power_w)


@pytest.mark.parametrize("profile", ["day-worker", "office", "shift-worker"])
def test_components_sum_to_total_and_register_integrates_power(profile: str) -> None:
    hh = generate(profile, 2, JAN1, seed=1)
    assert hh.power_w.shape == (2 * 86400,)
    assert {"standby", "fridge", "water_heater", "ac", "cooking", "lighting", "noise"} <= set(hh.components)
    total = np.sum([v.astype(np.float64) for v in hh.components.values()], axis=0)
    assert np.allclose(total, hh.power_w, atol=1e-2)
    assert hh.power_w.min() >= 0
    reg = hh.register_kwh
    assert reg[0] == hh.start_kwh and np.all(np.diff(reg) >= 0)
    assert reg[-1] == pytest.approx(hh.start_kwh + hh.power_w[:-1].sum(dtype=np.float64) / 3.6e6)
    kwh_day = (reg[-1] - reg[0]) / 2
    assert 3 < kwh_day < 40, kwh_day


def test_without_noise_there_is_no_noise_component() -> None:
    hh = generate("day-worker", 1, JAN1, seed=1, noise=False)
    assert "noise" not in hh.components
    noisy = generate("day-worker", 1, JAN1, seed=1, noise=True)
    assert np.allclose(noisy.power_w - noisy.components["noise"], hh.power_w, atol=1e-2)
    assert 1.0 < float(np.abs(noisy.components["noise"]).mean()) < 20.0


def test_components_false_keeps_only_the_total() -> None:
    full = generate("office", 1, JAN1, seed=2)
    lean = generate("office", 1, JAN1, seed=2, components=False)
    assert lean.components == {} and np.array_equal(full.power_w, lean.power_w)


def _local_hours_mean(hh, day: int, h0: int, h1: int) -> float:  # type: ignore[no-untyped-def]
    # Europe/Rome is UTC+1 in January
    a, b = day * 86400 + (h0 - 1) * 3600, day * 86400 + (h1 - 1) * 3600
    return float(hh.power_w[a:b].mean())


def test_day_worker_is_away_on_weekdays_home_on_weekends() -> None:
    hh = generate("day-worker", 7, JAN1, seed=1)
    weekday = np.mean([_local_hours_mean(hh, d, 10, 16) for d in range(5)])
    weekend = np.mean([_local_hours_mean(hh, d, 10, 16) for d in (5, 6)])
    assert weekend > weekday + 50, (weekday, weekend)


def test_office_is_busy_in_working_hours_only() -> None:
    hh = generate("office", 7, JAN1, seed=1)
    open_hours = np.mean([_local_hours_mean(hh, d, 9, 17) for d in range(5)])
    nights = np.mean([_local_hours_mean(hh, d, 1, 5) for d in range(7)])
    weekend = np.mean([_local_hours_mean(hh, d, 9, 17) for d in (5, 6)])
    assert open_hours > 3 * nights and open_hours > 3 * weekend


def test_shift_worker_weeks_differ() -> None:
    hh = generate("shift-worker", 21, JAN1, seed=1, components=True)
    cook = hh.components["cooking"].reshape(21, 86400)
    week_profiles = [cook[w * 7:w * 7 + 5].reshape(5, 24, 3600).mean(axis=(0, 2)) for w in range(3)]
    assert np.argmax(week_profiles[0]) != np.argmax(week_profiles[1]) or \
        np.argmax(week_profiles[1]) != np.argmax(week_profiles[2])


def test_air_conditioning_follows_the_season() -> None:
    july = generate("day-worker", 7, datetime(2024, 7, 15, tzinfo=UTC), seed=1)
    april = generate("day-worker", 7, datetime(2024, 4, 20, tzinfo=UTC), seed=1)
    assert july.components["ac"].mean() > 3 * april.components["ac"].mean() + 10


def test_water_heater_is_a_thermostat() -> None:
    hh = generate("day-worker", 3, JAN1, seed=5, noise=False)
    wh = hh.components["water_heater"]
    assert set(np.unique(wh).tolist()) <= {0.0, 2000.0}
    on = np.diff((wh > 0).astype(np.int8))
    assert 6 <= int((on == 1).sum()) <= 60  # several cycles a day: draws and standing losses


def test_fridge_cycles() -> None:
    hh = generate("day-worker", 1, JAN1, seed=1, noise=False)
    starts = int((np.diff((hh.components["fridge"] > 0).astype(np.int8)) == 1).sum())
    assert 15 <= starts <= 45


def test_paint_is_exact_over_long_spans() -> None:
    n = 3_000_000
    starts = np.arange(0, n, 1000)
    out = paint(n, starts, starts + 500, 2200.0)
    assert set(np.unique(out).tolist()) == {0.0, 2200.0}
    assert out[-1] == 0.0 and out[n - 1000] == 2200.0


def test_events_are_injected() -> None:
    evs = plan_events(JAN1, 3 * 86400, seed=1, power_threshold_w=6000.0)
    assert {e.kind for e in evs} == {"blackout", "heater_left_on", "threshold_exceedance", "stale_camera"}
    for a, b in zip(evs, evs[1:], strict=False):
        assert a.end <= b.start  # disjoint: one never hides another
    hh = generate("day-worker", 3, JAN1, seed=1, events=evs)

    def span(e: Event) -> slice:
        return slice(int((e.start - JAN1).total_seconds()), int((e.end - JAN1).total_seconds()))

    by = {e.kind: e for e in evs}
    s = span(by["blackout"])
    assert np.all(hh.power_w[s] == 0)
    assert hh.register_kwh[s.start] == hh.register_kwh[s.stop - 1]  # frozen
    assert np.all(hh.components["portable_heater"][span(by["heater_left_on"])] == 2000.0)
    assert np.all(hh.power_w[span(by["threshold_exceedance"])] > 6000.0)


def test_bad_arguments() -> None:
    with pytest.raises(InputError):
        generate("student", 1)
    with pytest.raises(InputError):
        generate("office", 0)
    with pytest.raises(InputError):
        Event("meteor", JAN1, JAN1 + timedelta(hours=1))
    with pytest.raises(InputError):
        Event("blackout", JAN1, JAN1)


def test_csv_roundtrip_and_power_matches_register(tmp_path: Path) -> None:
    hh = generate("day-worker", 1, JAN1, seed=1)
    path = tmp_path / "d.csv"
    rows = write_csv(hh, path, step=60)
    assert rows == 1440
    lines = path.read_text().splitlines()
    assert lines[0] == "timestamp,contatore,potenza"
    assert lines[1].startswith("2024-01-01T00:00:00Z,1000.0000,")
    series = read_csv(path)
    idx, reg, power = sample(hh, 60)
    assert np.allclose(series.register_kwh, reg, atol=1e-4)
    energy_kwh = power[1:].sum() / 60  # kW * (1/60 h)
    assert energy_kwh == pytest.approx(reg[-1] - reg[0], rel=1e-6)
    assert series.register_at(JAN1 + timedelta(seconds=90)) == pytest.approx((reg[1] + reg[2]) / 2, abs=1e-4)


def test_read_csv_names_the_bad_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_text("timestamp,contatore,potenza\n2024-01-01T00:00:00Z,1.0,0.1\n2024-01-01T00:01:00Z,oops,0.1\n")
    with pytest.raises(InputError, match="bad.csv:3"):
        read_csv(p)


def test_cli_household_writes_dataset_events_and_components(tmp_path: Path) -> None:
    out = tmp_path / "h" / "data.csv"
    res = CliRunner().invoke(cli, ["simulate", "household", "--profile", "office", "--days", "2", "--out", str(out),
                                   "--step", "300", "--seed", "2", "--components"])
    assert res.exit_code == 0, res.output
    assert len(out.read_text().splitlines()) == 1 + 2 * 288
    assert (tmp_path / "h" / "data.components.csv").read_text().startswith("timestamp,standby,fridge,")
    events = json.loads((tmp_path / "h" / "events.json").read_text())
    assert len(events) == 4 and len(load_events(tmp_path / "h" / "events.json")) == 4
    assert (tmp_path / "h" / "events.csv").read_text().startswith("kind,start,end,details")
    bad = CliRunner().invoke(cli, ["simulate", "household", "--days", "0", "--out", str(out)])
    assert bad.exit_code == 65 and "days" in bad.output
