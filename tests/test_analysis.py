"""Local-time statistics from the rollups (DST days of 23 and 25 hours), and event detection against constructed
series with known events."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest

from smartmeter.server import events
from smartmeter.server.analysis import statistics
from smartmeter.server.database import Database, open_database, to_ms
from smartmeter.server.detectors import Event
from smartmeter.settings import MeterSettings, Settings
from smartmeter.types import Reading

T0 = datetime(2024, 6, 1, tzinfo=UTC)  # a Saturday
M01 = MeterSettings(id="m", resolution_kwh=0.01)
SETTINGS = Settings(meters=[M01])  # power threshold 3 kW, 12 kWh/day, blackout 300 s, stale camera 1800 s


def minutes(power: Callable[[int], float], n: int, res: float = 0.01, sensor: bool = True,
            holes: tuple[tuple[int, int], ...] = (), source: str = "csv:x.csv", start: datetime = T0,
            meter: str = "m") -> list[Reading]:
    """One reading per minute (minute m held at power(m) W); readings in holes [a, b) minutes are missing."""
    out, energy = [], 500.0
    for m in range(n):
        if not any(a <= m < b for a, b in holes):
            shown = round(math.floor(energy / res + 1e-9) * res, 6)
            out.append(Reading(meter, start + timedelta(minutes=m), shown, source, 1.0, "",
                               power(m) if sensor else None))
        energy += power(m) * 60 / 3.6e6
    return out


@pytest.fixture
def mem() -> Database:
    return open_database("sqlite:///:memory:")


def found(db: Database, rs: list[Reading], settings: Settings = SETTINGS, now: datetime | None = None) -> list[Event]:
    db.insert_readings(rs)
    events.analyse_meter(db, settings, rs[0].meter_id, now=now or rs[-1].timestamp)
    return events.stored_events(db, rs[0].meter_id)


def kinds(evs: list[Event]) -> list[str]:
    return [e.kind for e in evs]


def at(minute: int) -> int:
    return to_ms(T0 + timedelta(minutes=minute))


def test_sensor_blackout_and_power_high_exact_bounds(db: Database) -> None:  # SQLite and PostgreSQL
    evs = found(db, minutes(lambda m: 0.0 if 100 <= m < 130 else (3500.0 if 200 <= m < 220 else 300.0), 300))
    assert kinds(evs) == ["blackout", "power_high"]
    assert (evs[0].start_ms, evs[0].end_ms, evs[0].value) == (at(100), at(130), 1800)
    assert (evs[1].start_ms, evs[1].end_ms, evs[1].value) == (at(200), at(220), 3500.0)
    assert not any(e.is_open for e in evs)


def test_short_zero_and_zero_sensor_with_moving_register_are_not_blackouts(mem: Database) -> None:
    assert found(mem, minutes(lambda m: 0.0 if 100 <= m < 104 else 300.0, 240)) == []
    broken = [Reading("z", r.timestamp, r.value_kwh, r.source, power_w=0.0 if 100 <= i < 160 else 300.0)
              for i, r in enumerate(minutes(lambda m: 300.0, 240))]  # the register keeps counting 300 W
    assert found(mem, broken) == []


def test_camera_blackout_needs_photos_arriving_and_a_stale_camera_is_never_one(mem: Database) -> None:
    # photos every minute, 300 W (a 0.01 kWh step every 2 min), the supply off 100-145: the register stops
    cam = minutes(lambda m: 0.0 if 100 <= m < 145 else 300.0, 300, sensor=False, source="image:a.jpg")
    evs = found(mem, cam)
    assert kinds(evs) == ["blackout"] and "photos kept arriving" in evs[0].detail
    assert abs(evs[0].start_ms - at(100)) <= 120_000 and abs(evs[0].end_ms - at(145)) <= 120_000
    # the same consumption, but no photos 100-145: the camera was stale, not the supply
    stale = minutes(lambda m: 300.0, 300, sensor=False, source="image:a.jpg", holes=((100, 145),), meter="s")
    evs = found(mem, stale)
    assert "blackout" not in kinds(evs) and "camera_stale" in kinds(evs)
    e = next(e for e in evs if e.kind == "camera_stale")
    assert (e.start_ms, e.end_ms) == (at(99), at(145))


def test_open_events_close_when_the_condition_ends_and_the_dictionary(db: Database) -> None:
    mem = db  # SQLite and PostgreSQL
    profile = lambda m: 0.0 if m >= 100 else 300.0  # noqa: E731 - the supply goes off at minute 100 and stays off
    rs = minutes(profile, 400)
    mem.insert_readings(rs[:130])
    state = events.analyse_meter(mem, SETTINGS, "m", now=T0 + timedelta(minutes=130))
    assert state["blackout"] is True and state["superamento"] is False
    evs = events.stored_events(mem, "m")
    assert kinds(evs) == ["blackout"] and evs[0].is_open and evs[0].end_ms == at(129)
    again = events.analyse_meter(mem, SETTINGS, "m", now=T0 + timedelta(minutes=130))  # a restart: same rows
    assert events.stored_events(mem, "m") == evs and again["open_events"] == state["open_events"]
    power = minutes(lambda m: 3500.0 if m >= 130 else profile(m), 400)
    mem.insert_readings(power[130:150])
    state = events.analyse_meter(mem, SETTINGS, "m", now=T0 + timedelta(minutes=150))
    assert state == {**state, "blackout": False, "superamento": True}
    evs = events.stored_events(mem, "m")
    assert kinds(evs) == ["blackout", "power_high"]
    assert (evs[0].start_ms, evs[0].end_ms, evs[0].is_open) == (at(100), at(130), False)
    assert evs[1].is_open and evs[1].start_ms == at(130)
    assert events.stored_state(mem, "m") == state


def test_incremental_passes_store_what_one_full_pass_stores(tmp_path: object) -> None:
    def profile(m: int) -> float:
        if 300 <= m < 340 or 3000 <= m < 3030:
            return 0.0
        if 700 <= m < 720 or 2000 <= m < 2010:
            return 3600.0
        if 1000 <= m < 1200:
            return 2300.0
        return 250.0 + 150.0 * (m % 7 == 0)

    rs = minutes(profile, 4 * 1440, holes=((1500, 1530),))
    inc = open_database(f"sqlite:///{tmp_path}/inc.db")
    for i in range(0, len(rs), 20):  # every twenty minutes, as `analyse --every 20m` would
        inc.insert_readings(rs[i:i + 20])
        events.analyse_meter(inc, SETTINGS, "m", now=rs[min(i + 19, len(rs) - 1)].timestamp)
    full = open_database(f"sqlite:///{tmp_path}/full.db")
    full.insert_readings(rs)
    events.analyse_meter(full, SETTINGS, "m", now=rs[-1].timestamp, full=True)
    a, b = events.stored_events(inc, "m"), events.stored_events(full, "m")
    assert a == b
    assert set(kinds(a)) >= {"blackout", "power_high", "long_load", "gap", "energy_day"}
    # a correction far back re-opens that part only, and a re-analysis is the same again
    before = kinds(a).count("power_high")
    for db in (inc, full):
        db.execute("UPDATE readings SET power_w = 4000.0, status = 'corrected' WHERE meter_id = 'm' AND ts_ms >= ? "
                   "AND ts_ms < ?", (at(500), at(520)))
    events.analyse_meter(inc, SETTINGS, "m", now=rs[-1].timestamp)
    events.analyse_meter(full, SETTINGS, "m", now=rs[-1].timestamp, full=True)
    assert events.stored_events(inc, "m") == events.stored_events(full, "m")
    assert kinds(events.stored_events(inc, "m")).count("power_high") == before + 1


def test_long_load_heater_left_on_from_sensor_and_from_register(mem: Database) -> None:
    for sensor, meter in ((True, "a"), (False, "b")):
        rs = minutes(lambda m: 2200.0 if 180 <= m < 360 else 200.0, 600, sensor=sensor, meter=meter)
        ev = [e for e in found(mem, rs) if e.kind == "long_load"]
        assert len(ev) == 1
        assert abs(ev[0].start_ms - at(180)) <= 600_000 and abs(ev[0].end_ms - at(360)) <= 600_000
        assert 1800 <= ev[0].value <= 2200
    short = minutes(lambda m: 2200.0 if 180 <= m < 280 else 200.0, 600, meter="c")  # 100 min < 2 h
    assert "long_load" not in kinds(found(mem, short))


def test_energy_per_local_day_on_dst_days_and_the_threshold() -> None:
    db = open_database("sqlite:///:memory:")
    rome = MeterSettings(id="m", resolution_kwh=0.01, timezone="Europe/Rome")
    settings = Settings(meters=[rome])
    start = datetime(2024, 3, 29, 23, tzinfo=UTC)  # local midnight of Saturday 30 March (UTC+1)
    rs = minutes(lambda m: 1000.0, 3 * 1440, start=start)  # 1 kW for three days: 24, 23 (DST) and 24 kWh
    db.insert_readings(rs)
    st = statistics(db, rome)
    days = st.days
    assert [d.date() for d in days.index] == [date(2024, 3, 30), date(2024, 3, 31), date(2024, 4, 1),
                                               date(2024, 4, 2)]
    assert days["length_h"].tolist() == [24, 23, 24, 24]
    assert days["kwh"].iloc[:3].tolist() == pytest.approx([24.0, 23.0, 24.0], abs=0.02)
    assert st.energy_kwh == pytest.approx(72.0 - 1 / 60, abs=0.02)
    assert st.base_load_w == pytest.approx(1000.0, abs=1) and st.peak_sensor_w == 1000.0
    assert st.night_kwh == pytest.approx(3 * 8, abs=0.1)  # 23:00-07:00 local, 8 h a night
    assert st.profile["weekend"][12] == pytest.approx(1000.0, abs=1)
    autumn = datetime(2024, 10, 26, 22, tzinfo=UTC)  # local midnight of Sunday 27 October (UTC+2)
    db.insert_readings(minutes(lambda m: 1000.0, 1440 + 60, start=autumn, meter="n"))
    st = statistics(db, rome.model_copy(update={"id": "n"}), autumn, autumn + timedelta(hours=25))
    assert st.days["length_h"].tolist() == [25] and st.days["kwh"].tolist() == pytest.approx([25.0], abs=0.02)
    assert st.previous["energy_kwh"] == 0.0  # nothing stored in the 25 h before
    evs = found(db, rs[:1], settings, now=rs[-1].timestamp)
    assert [round(e.value) for e in evs if e.kind == "energy_day"] == [24, 23, 24]


def test_unusual_hours_against_the_hour_of_week_baseline(mem: Database) -> None:
    # four weeks of the same day: 300 W, 1.3 kW between 19:00 and 20:00; in the last week 3 kW from 3:00 to 4:00
    def profile(m: int) -> float:
        hour, week = (m // 60) % 24, m // (7 * 1440)
        if week == 3 and m // 1440 == 3 * 7 + 2 and hour == 3:
            return 2900.0
        return 1300.0 if hour == 19 else 300.0

    evs = [e for e in found(mem, minutes(profile, 4 * 7 * 1440)) if e.kind == "unusual"]
    assert len(evs) == 1
    assert evs[0].start_ms == to_ms(T0 + timedelta(days=23, hours=3)) and evs[0].value == pytest.approx(2.6, 0.02)


def camera_with_fine(db: Database, meter: str, power: Callable[[int], float], n: int, res: float = 0.1,
                     holes: tuple[tuple[int, int], ...] = (), mid_step: bool = False) -> list[Reading]:
    """Photos every minute of a ``res`` register (stored readings from image: sources) with the last drum's fine
    position in the photos table (jitter 1 % of a step; ``mid_step``: the reader's mid-step estimate instead)."""
    import random

    from smartmeter.server import photos_repo
    from smartmeter.server.photos_repo import PhotoRow

    rnd = random.Random(7)
    rs, energy = [], 500.0
    for m in range(n):
        if not any(a <= m < b for a, b in holes):
            shown = round(math.floor(energy / res + 1e-9) * res, 6)
            key = f"{meter}/{m}.jpg"
            ts = T0 + timedelta(minutes=m)
            fine = shown + res / 2 if mid_step else min(max(energy + rnd.gauss(0, 0.01 * res), shown), shown + res)
            photos_repo.record(db, PhotoRow(key, f"h{meter}{m}", meter, ts, "name", "published", shown, fine_kwh=fine))
            photos_repo.set_outcome(db, key, "published", "", shown)
            rs.append(Reading(meter, ts, shown, f"image:{key}", 1.0, "", None))
        energy += power(m) * 60 / 3.6e6
    return rs


def test_camera_blackout_from_the_last_drums_fine_position(mem: Database) -> None:
    # ~100 W on a 0.1 kWh register: a step per hour, so a 45-minute outage leaves no missing step to see
    settings = Settings(meters=[MeterSettings(id=k, resolution_kwh=0.1) for k in ("f", "s", "h", "q")])
    prof = lambda m: 0.0 if 2000 <= m < 2045 else 100.0 + 20.0 * (m % 40 < 20)  # noqa: E731
    evs = found(mem, camera_with_fine(mem, "f", prof, 2200), settings)
    assert kinds(evs) == ["blackout"] and "last drum did not turn" in evs[0].detail
    assert abs(evs[0].start_ms - at(2000)) <= 3 * 60_000 and abs(evs[0].end_ms - at(2045)) <= 3 * 60_000
    # no outage: the same meter, never a blackout
    evs = found(mem, camera_with_fine(mem, "q", lambda m: 100.0 + 20.0 * (m % 40 < 20), 2200), settings)
    assert "blackout" not in kinds(evs)
    # no photos for 45 minutes: the camera was stale, not the supply
    evs = found(mem, camera_with_fine(mem, "s", lambda m: 110.0, 2200, holes=((2000, 2045),)), settings)
    assert "blackout" not in kinds(evs) and "camera_stale" in kinds(evs)
    # the drum never matched (fine = mid-step estimate): a still fine value proves nothing
    evs = found(mem, camera_with_fine(mem, "h", prof, 2200, mid_step=True), settings)
    assert "blackout" not in kinds(evs)


def test_camera_blackout_from_the_fine_position_is_open_while_it_lasts(db: Database) -> None:
    mem = db  # SQLite and PostgreSQL
    settings = Settings(meters=[MeterSettings(id="f", resolution_kwh=0.1)])
    rs = camera_with_fine(mem, "f", lambda m: 0.0 if m >= 2000 else 110.0, 2060)
    mem.insert_readings(rs)
    state = events.analyse_meter(mem, settings, "f", now=rs[-1].timestamp)
    assert state["blackout"] is True and state["camera_stale"] is False
    [e] = [e for e in events.stored_events(mem, "f") if e.kind == "blackout"]
    assert e.is_open and e.end_ms == at(2059)


def test_a_fridge_that_stopped_cycling_from_the_simulated_household(mem: Database) -> None:
    import numpy as np

    from smartmeter.simulator.dataset import sample
    from smartmeter.simulator.events import Event as Injected
    from smartmeter.simulator.household import generate

    stop = Injected("fridge_failure", T0 + timedelta(days=5, hours=20), T0 + timedelta(days=6, hours=16))
    settings = Settings(meters=[MeterSettings(id=k, resolution_kwh=0.001) for k in ("w", "ok")])
    for mid, evs in (("w", [stop]), ("ok", [])):
        hh = generate("day-worker", 8.0, T0, seed=3, components=False, events=evs)
        idx, reg, kw = sample(hh, 60)
        rs = [Reading(mid, T0 + timedelta(seconds=int(s)), float(r), "csv:x.csv", 1.0, "", float(p) * 1000)
              for s, r, p in zip(idx, np.round(reg, 3), kw, strict=True)]
        got = [e for e in found(mem, rs, settings) if e.kind == "fridge_stopped"]
        if mid == "ok":
            assert got == []  # a working fridge cycles every hour: never reported
        else:
            assert len(got) == 1 and "stopped cycling" in got[0].detail
            assert to_ms(stop.start) <= got[0].start_ms and got[0].end_ms <= to_ms(stop.end) + 3_600_000
            assert got[0].end_ms - got[0].start_ms >= 3 * 3_600_000


def test_the_state_is_published_retained_on_mqtt_when_the_analysis_changes_it(tmp_path: object) -> None:
    import json

    from local_servers import MqttWatcher
    from test_mqtt_ingest import Broker

    from smartmeter.server import alerts_repo
    from smartmeter.server.alerts_channels import channels_from, deliver_due
    from smartmeter.settings import AnalysisSettings, MqttSettings

    broker = Broker(tmp_path)  # type: ignore[arg-type]
    broker.start()
    try:
        s = Settings(meters=[M01], mqtt=MqttSettings(host="127.0.0.1", port=broker.port),
                     analysis=AnalysisSettings(state_topic="smartmeter/{meter}/state"))
        db = open_database("sqlite:///:memory:")
        rs = minutes(lambda m: 0.0 if m >= 100 else 300.0, 200)
        db.insert_readings(rs[:90])
        events.analyse_meter(db, s, "m", now=rs[89].timestamp)  # the first pass: both False
        db.insert_readings(rs[90:130])
        for _ in range(2):  # the blackout opens; the second pass changes nothing and queues nothing
            assert events.analyse_meter(db, s, "m", now=rs[129].timestamp)["blackout"] is True
        queued = [json.loads(r.payload) for r in alerts_repo.outbox(db) if r.channel == "mqtt_state"]
        assert queued == [{"meter": "m", "blackout": False, "superamento": False},
                          {"meter": "m", "blackout": True, "superamento": False}]
        channels = channels_from(s)
        try:
            assert deliver_due(db, channels, s, 2**62) == (2, 0)
        finally:
            for ch in channels.values():
                ch.close()
        late = MqttWatcher(broker.port, "smartmeter/+/state")  # subscribes after: gets the retained last state
        topic, payload, retained = late.drain(1.0)[0]
        assert (topic, json.loads(payload), retained) == ("smartmeter/m/state",
                                                          {"blackout": True, "superamento": False}, True)
        assert alerts_repo.outbox(db, pending_only=True) == []
        late.close()
    finally:
        broker.stop()


def test_fine_blackouts_incremental_passes_store_what_one_full_pass_stores(tmp_path: object) -> None:
    settings = Settings(meters=[MeterSettings(id="f", resolution_kwh=0.1)])
    prof = lambda m: 0.0 if 1500 <= m < 1550 or 2300 <= m < 2340 else 110.0  # noqa: E731
    inc, full = (open_database(f"sqlite:///{tmp_path}/{n}.db") for n in ("inc", "full"))
    rs = camera_with_fine(inc, "f", prof, 2400)
    camera_with_fine(full, "f", prof, 2400)
    for i in range(0, len(rs), 30):
        inc.insert_readings(rs[i:i + 30])
        events.analyse_meter(inc, settings, "f", now=rs[min(i + 29, len(rs) - 1)].timestamp)
    full.insert_readings(rs)
    events.analyse_meter(full, settings, "f", now=rs[-1].timestamp, full=True)
    a = events.stored_events(inc, "f")
    assert a == events.stored_events(full, "f")
    assert kinds(a).count("blackout") == 2
