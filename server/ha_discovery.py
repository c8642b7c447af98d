"""Home Assistant: MQTT discovery of every meter, and its state (settings ``homeassistant:``, broker ``mqtt:``).

Discovery (retained, re-sent whenever ``<prefix>/status`` says ``online``, i.e. Home Assistant restarted) under
``<prefix>/<component>/<node_id>/<meter>_<object>/config`` — HA's ``<discovery_prefix>/<component>/[<node_id>/]
<object_id>/config`` — one device per meter with these entities, all reading one JSON state topic
``<state_prefix>/<meter>/state`` (retained):

- ``energy``: ``device_class: energy``, ``state_class: total_increasing``, kWh (the Energy dashboard's source);
- ``power``: ``device_class: power``, ``state_class: measurement``, W (the sensor's, else from the last two readings);
- ``cost``: ``device_class: monetary`` in the billing currency, the current period's bill so far (with tariffs);
- ``problem``: a ``binary_sensor`` with ``device_class: problem``: ON while the analysis has a blackout, power above
  the threshold or a stale camera, or an alert rule holds;
- ``last_photo``: ``device_class: timestamp``, the newest reading taken from a photo.

Availability: ``<state_prefix>/status`` is ``online`` (retained) while connected; the broker publishes the last will
``offline`` (retained) when the connection drops.

Only current (validated) readings are published — of a camera meter the newest one followed by
``validation.consensus_frames`` later photos, past the point where validation could still overrule it (a confident
misread is withdrawn by its neighbours, a wrong value by the consensus of later frames) — and the energy never goes
down: the largest value published is
kept in the database (table ``ha_published``), and a reading later corrected below it holds the published value until
the register passes it again — Home Assistant never sees a reset (which ``total_increasing`` would count as a new
meter cycle) or a drop and jump back.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from smartmeter import __version__
from smartmeter.secrets import get_secret
from smartmeter.server import alerts_repo
from smartmeter.server.database import Database, now_ms, to_ms
from smartmeter.server.events import stored_state
from smartmeter.settings import Settings
from smartmeter.types import Reading, format_timestamp

log = logging.getLogger(__name__)

ENTITIES: dict[str, tuple[str, dict[str, Any]]] = {  # object -> (component, config fields)
    "energy": ("sensor", {"name": "Energy", "device_class": "energy", "state_class": "total_increasing",
                          "unit_of_measurement": "kWh", "value_template": "{{ value_json.energy_kwh }}"}),
    "power": ("sensor", {"name": "Power", "device_class": "power", "state_class": "measurement",
                         "unit_of_measurement": "W", "value_template": "{{ value_json.power_w }}"}),
    "cost": ("sensor", {"name": "Cost this period", "device_class": "monetary",
                        "value_template": "{{ value_json.cost }}"}),
    "problem": ("binary_sensor", {"name": "Problem", "device_class": "problem", "payload_on": "ON",
                                  "payload_off": "OFF", "value_template": "{{ value_json.problem }}"}),
    "last_photo": ("sensor", {"name": "Last photo", "device_class": "timestamp",
                              "value_template": "{{ value_json.last_photo }}"}),
}


def discovery(settings: Settings, meter_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(config topic, config payload) of every entity of one meter."""
    ha = settings.homeassistant
    out = []
    for obj, (component, fields) in ENTITIES.items():
        if obj == "cost" and not settings.billing.tariffs:
            continue
        cfg = {**fields, "unique_id": f"{ha.node_id}_{meter_id}_{obj}", "object_id": f"{meter_id}_{obj}",
               "state_topic": f"{ha.state_prefix}/{meter_id}/state", "availability_topic": f"{ha.state_prefix}/status",
               "payload_available": "online", "payload_not_available": "offline",
               "device": {"identifiers": [f"{ha.node_id}_{meter_id}"], "name": f"SmartMeter {meter_id}",
                          "manufacturer": "SmartMeter", "model": "meter reader", "sw_version": __version__}}
        if obj == "cost":
            cfg["unit_of_measurement"] = settings.billing.currency
        out.append((f"{ha.discovery_prefix}/{component}/{ha.node_id}/{meter_id}_{obj}/config", cfg))
    return out


def state(db: Database, settings: Settings, meter_id: str, cost: str | None = None) -> dict[str, Any] | None:
    """The state to publish, from current readings only; updates the monotone energy kept in ``ha_published``."""
    last = db.last_reading(meter_id)
    if last is None:
        return None
    used: Reading = last  # photos: the newest reading that validation can no longer overrule
    for _ in range(settings.validation.consensus_frames if last.source.startswith("image:") else 0):
        earlier = db.last_reading(meter_id, used.timestamp)
        if earlier is None:
            return None
        used = earlier
    prev = db.last_reading(meter_id, used.timestamp)
    power = used.power_w
    if power is None and prev is not None:
        dt = (used.timestamp - prev.timestamp).total_seconds()
        if 0 < dt <= settings.analysis.gap_s:
            power = max(used.value_kwh - prev.value_kwh, 0.0) * 3.6e6 / dt
    held = alerts_repo.ha_last(db, meter_id)
    energy = used.value_kwh
    if held is not None and held[0] >= energy:
        energy = held[0]  # a correction below what HA has seen: hold, never a reset or a drop
    else:
        alerts_repo.ha_save(db, meter_id, energy, to_ms(used.timestamp), now_ms())
    st = stored_state(db, meter_id) or {}
    problem = bool(st.get("blackout") or st.get("superamento") or st.get("camera_stale")) or any(
        s.active for s in alerts_repo.states(db) if s.meter_id == meter_id)
    photos = [last] if last.source.startswith("image:") else db.readings(
        meter_id, last.timestamp - timedelta(days=2), last.timestamp, sources="image:")  # meters with a camera too
    return {"energy_kwh": round(energy, 4), "power_w": None if power is None else round(power, 1),
            "cost": cost, "problem": "ON" if problem else "OFF",
            "last_photo": format_timestamp(photos[-1].timestamp) if photos else None,
            "reading_at": format_timestamp(used.timestamp)}


class HaPublisher:
    """Keeps the discovery and the states of ``meters`` on the broker; :meth:`publish_states` each pass."""

    def __init__(self, settings: Settings, meters: list[str]) -> None:
        self.settings, self.meters = settings, list(meters)
        ha, m = settings.homeassistant, settings.mqtt
        self.status_topic = f"{ha.discovery_prefix}/status"
        self.avail_topic = f"{ha.state_prefix}/status"
        self.connected = threading.Event()
        self.last: dict[str, str] = {}  # meter -> payload last published
        self.discoveries = 0  # times the discovery was sent (tests)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{m.client_id}-ha")
        if m.username:
            pw = get_secret("mqtt_password", required=False)
            self.client.username_pw_set(m.username, pw.get_secret_value() if pw else None)
        self.client.will_set(self.avail_topic, "offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.reconnect_delay_set(1, 30)
        self.client.connect_async(m.host, m.port)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        if rc.is_failure:
            log.warning("Home Assistant MQTT connect failed: %s", rc)
            return
        client.subscribe(self.status_topic, qos=1)
        self.send_discovery()
        client.publish(self.avail_topic, "online", qos=1, retain=True)
        for meter_id, payload in self.last.items():  # states again after a reconnect
            client.publish(f"{self.settings.homeassistant.state_prefix}/{meter_id}/state", payload, 1, True)
        self.connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self.status_topic and msg.payload.strip() == b"online":
            log.info("Home Assistant is online: discovery sent again")
            self.send_discovery()
            for meter_id, payload in self.last.items():
                client.publish(f"{self.settings.homeassistant.state_prefix}/{meter_id}/state", payload, 1, True)

    def send_discovery(self) -> None:
        for meter_id in self.meters:
            for topic, cfg in discovery(self.settings, meter_id):
                self.client.publish(topic, json.dumps(cfg), qos=1, retain=True)
        self.discoveries += 1

    def add_meters(self, meters: list[str]) -> None:
        new = [m for m in meters if m not in self.meters]
        if new:
            self.meters += new
            if self.connected.is_set():
                self.send_discovery()

    def publish_states(self, db: Database, costs: dict[str, str] | None = None) -> int:
        """Publish every meter's state that changed; returns how many were published."""
        n = 0
        for meter_id in self.meters:
            with db.transaction():
                st = state(db, self.settings, meter_id, (costs or {}).get(meter_id))
            if st is None:
                continue
            payload = json.dumps(st, sort_keys=True)
            if self.last.get(meter_id) == payload:
                continue
            self.last[meter_id] = payload
            self.client.publish(f"{self.settings.homeassistant.state_prefix}/{meter_id}/state", payload, 1, True)
            n += 1
        return n

    def close(self) -> None:
        """Say offline (retained) and disconnect: a clean disconnect does not fire the last will."""
        try:
            self.client.publish(self.avail_topic, "offline", qos=1, retain=True).wait_for_publish(2)
        except (RuntimeError, ValueError) as exc:
            log.debug("offline not published: %s", exc)
        self.client.loop_stop()
        self.client.disconnect()
