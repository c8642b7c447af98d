"""Home Assistant MQTT discovery (server.ha_discovery) against a real mosquitto: retained configs of HA's shapes,
re-sent when HA comes online, availability with a last will, a monotone energy series from validated readings only."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from local_servers import MqttWatcher
from test_mqtt_ingest import Broker

from smartmeter.server import readings_repo
from smartmeter.server.database import Database, open_database
from smartmeter.server.ha_discovery import HaPublisher
from smartmeter.settings import Settings
from smartmeter.types import Reading

T0 = datetime(2026, 11, 2, 8, tzinfo=UTC)
NODE = "homeassistant/sensor/smartmeter"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


def ha_settings(port: int, tariffs: bool = True) -> Settings:
    billing = {"tariffs": [{"name": "flat", "start": "2020-01-01", "energy": [{"tiers": [{"price": 0.25}]}]}]}
    return Settings.model_validate({"mqtt": {"host": "127.0.0.1", "port": port, "client_id": "sm-test"},
                                    "homeassistant": {"enabled": True}, "billing": billing if tariffs else {}})


def db_with(tmp_path: Path, *values: float, source: str = "mqtt") -> Database:
    db = open_database(f"sqlite:///{tmp_path}/h.db")
    db.register_meter("m1")
    db.insert_readings([Reading("m1", T0 + timedelta(minutes=i), v, source.format(i=i)) for i, v in enumerate(values)])
    return db


def configs(msgs: list[tuple[str, bytes, bool]]) -> dict[str, dict[str, object]]:
    return {t: json.loads(p) for t, p, _ in msgs if t.endswith("/config")}


def test_discovery_shapes_retained_and_resent_when_ha_comes_online(broker: Broker, tmp_path: Path) -> None:
    db = db_with(tmp_path, 100.0, 100.02, 100.04, 100.06, 100.08, source="image:p{i}.jpg")
    pub = HaPublisher(ha_settings(broker.port), ["m1"])
    try:
        assert pub.connected.wait(5)
        watch = MqttWatcher(broker.port, "homeassistant/#", "smartmeter/ha/#")  # subscribes later: retained
        got = watch.drain(1.0)
        cfg = configs(got)
        energy = cfg[f"{NODE}/m1_energy/config"]
        assert {k: energy[k] for k in ("device_class", "state_class", "unit_of_measurement")} == \
            {"device_class": "energy", "state_class": "total_increasing", "unit_of_measurement": "kWh"}
        power = cfg[f"{NODE}/m1_power/config"]
        assert (power["device_class"], power["state_class"], power["unit_of_measurement"]) == \
            ("power", "measurement", "W")
        assert cfg[f"{NODE}/m1_cost/config"]["unit_of_measurement"] == "EUR"
        assert cfg[f"{NODE}/m1_last_photo/config"]["device_class"] == "timestamp"
        problem = cfg["homeassistant/binary_sensor/smartmeter/m1_problem/config"]
        assert (problem["device_class"], problem["payload_on"], problem["payload_off"]) == ("problem", "ON", "OFF")
        assert len({c["unique_id"] for c in cfg.values()}) == 5
        for c in cfg.values():
            assert c["state_topic"] == "smartmeter/ha/m1/state" and c["availability_topic"] == "smartmeter/ha/status"
            assert c["device"]["identifiers"] == ["smartmeter_m1"]  # type: ignore[index]
        late = MqttWatcher(broker.port, "homeassistant/#", "smartmeter/ha/status")  # after all were published
        got_late = late.drain(1.0)
        late.close()
        assert len(configs(got_late)) == 5 and all(retained for _, _, retained in got_late)
        assert ("smartmeter/ha/status", b"online", True) in got_late
        # the state: validated readings only
        assert pub.publish_states(db, {"m1": "1.50"}) == 1
        st = watch.json_on("smartmeter/ha/m1/state")
        assert st["energy_kwh"] == 100.02 and st["power_w"] == pytest.approx(1200.0) and st["problem"] == "OFF"
        # photos: the newest reading followed by validation.consensus_frames (3) later ones is published
        assert st["reading_at"] == "2026-11-02T08:01:00Z"
        assert st["cost"] == "1.50" and st["last_photo"] == "2026-11-02T08:04:00Z"
        assert pub.publish_states(db) == 1 and pub.publish_states(db) == 0  # cost gone; then unchanged: nothing
        # Home Assistant restarts: it says online, the discovery comes again
        before = pub.discoveries
        watch.drain(0.2)
        watch.publish("homeassistant/status", "online")
        again = configs(watch.drain(1.0))
        assert pub.discoveries == before + 1 and set(again) == set(cfg)
        watch.close()
    finally:
        pub.close()
        db.close()


def test_no_cost_entity_without_tariffs_and_last_will_on_a_dropped_connection(broker: Broker,
                                                                             tmp_path: Path) -> None:
    pub = HaPublisher(ha_settings(broker.port, tariffs=False), ["m1"])
    try:
        assert pub.connected.wait(5)
        watch = MqttWatcher(broker.port, "homeassistant/#", "smartmeter/ha/status")
        got = watch.drain(1.0)
        assert f"{NODE}/m1_cost/config" not in configs(got) and len(configs(got)) == 4
        sock = pub.client.socket()
        assert sock is not None
        sock.close()  # the connection drops without a DISCONNECT: the broker sends the will
        seen = [p for t, p, _ in watch.drain(4.0) if t == "smartmeter/ha/status"]
        assert b"offline" in seen
        watch.close()
    finally:
        pub.close()


def test_a_corrected_reading_never_makes_ha_see_a_drop_or_a_jump(broker: Broker, tmp_path: Path) -> None:
    db = db_with(tmp_path, 100.0, 100.5, source="csv:p{i}")  # a meter without a camera: its last reading is used
    pub = HaPublisher(ha_settings(broker.port), ["m1"])
    try:
        assert pub.connected.wait(5)
        watch = MqttWatcher(broker.port, "smartmeter/ha/m1/state")
        series = []
        pub.publish_states(db)
        series.append(watch.json_on("smartmeter/ha/m1/state")["energy_kwh"])
        # the 100.5 was a misread: a person corrects it to 100.1 (audited correction)
        readings_repo.correct(db, "m1", T0 + timedelta(minutes=1), "csv:p1", 100.1)
        db.insert_readings([Reading("m1", T0 + timedelta(minutes=2), 100.2, "csv:p2")])
        db.insert_readings([Reading("m1", T0 + timedelta(minutes=3), 150.0, "csv:p3")], status="superseded")
        pub.publish_states(db)
        series.append(watch.json_on("smartmeter/ha/m1/state")["energy_kwh"])
        db.insert_readings([Reading("m1", T0 + timedelta(minutes=4), 100.7, "csv:p4")])
        pub.publish_states(db)
        series.append(watch.json_on("smartmeter/ha/m1/state")["energy_kwh"])
        assert series == [100.5, 100.5, 100.7]  # held at what HA saw; the superseded 150.0 never published
        pub.close()
        # a restart keeps the series monotone (the value published is in the database)
        pub = HaPublisher(ha_settings(broker.port), ["m1"])
        assert pub.connected.wait(5)
        readings_repo.correct(db, "m1", T0 + timedelta(minutes=4), "csv:p4", 100.3)
        pub.publish_states(db)
        assert watch.json_on("smartmeter/ha/m1/state")["energy_kwh"] == 100.7
        watch.close()
        time.sleep(0.1)
    finally:
        pub.close()
        db.close()


def test_a_camera_misread_withdrawn_by_validation_is_never_published(broker: Broker, tmp_path: Path) -> None:
    # photos: 100.0 .. 100.3, then a confident misread 150.0 that the next frames withdraw (validation's kink rule)
    db = db_with(tmp_path, 100.0, 100.1, 100.2, 100.3, 150.0, source="image:p{i}.jpg")
    pub = HaPublisher(ha_settings(broker.port), ["m1"])
    try:
        assert pub.connected.wait(5)
        watch = MqttWatcher(broker.port, "smartmeter/ha/m1/state")
        series = []
        pub.publish_states(db)
        series.append(watch.json_on("smartmeter/ha/m1/state")["energy_kwh"])
        readings_repo.supersede(db, "m1", T0 + timedelta(minutes=4), "image:p4.jpg")
        db.insert_readings([Reading("m1", T0 + timedelta(minutes=5 + i), 100.4 + 0.1 * i, f"image:q{i}.jpg")
                            for i in range(3)])
        pub.publish_states(db)
        series.append(watch.json_on("smartmeter/ha/m1/state")["energy_kwh"])
        assert series == [100.1, 100.3]  # 150.0 never reached Home Assistant: no jump, no hold at a wrong value
        watch.close()
    finally:
        pub.close()
        db.close()
