"""MQTT ingest: meters without a camera publish readings; the server subscribes and stores them.

Topic ``settings.mqtt.topic`` (default ``smartmeter/+/reading``) where the ``+`` level is the meter id; the payload
is the JSON shape of ``server.payloads`` (one object or a list): the same pydantic request models as the HTTP API,
so a hostile payload (huge numbers, deep nesting, unknown keys) is a clear error on the error topic, never an
"internal error". Every message goes through the same validation as the HTTP API and the CSV import.

What is guaranteed:

- The subscription is QoS 1 with a persistent session and manual acknowledgement: a message is acknowledged only
  after it was stored (or definitively rejected), so a crash or a database outage loses nothing the broker
  holds; redelivered messages are duplicates and ``smartmeter.server.ingest`` skips them.
- A malformed payload, an unknown meter or readings rejected by validation never stop the loop: the reason is
  logged and published as JSON to the error topic of that meter (``smartmeter/<id>/error`` for the default topic:
  the topic filter with ``+`` replaced by the id and its last level by ``error``). Nothing stored is touched.
- A database failure is retried with backoff on the same message until it succeeds or the subscriber stops.
- A lost broker connection is retried by paho's network thread with exponential backoff
  (``RECONNECT_MIN_S`` doubling up to ``RECONNECT_MAX_S``); the subscription is renewed on every connect.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from smartmeter.errors import ConfigError, DatabaseError, SmartMeterError
from smartmeter.secrets import get_secret
from smartmeter.server.database import Database
from smartmeter.server.payloads import ReadingsRejected, check_meter_id, parse_body, submit_readings
from smartmeter.settings import Settings
from smartmeter.types import format_timestamp

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 60
DB_RETRY_MAX_S = 60.0
QUEUE_SIZE = 1000  # messages received but not yet stored; when full the network thread waits (backpressure)


@dataclass(frozen=True)
class Outcome:
    """What became of one message."""

    topic: str
    meter_id: str | None
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    error: str | None = None


@dataclass(frozen=True)
class _Incoming:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int  # connection the message came on; acks never cross a reconnect


def meter_level(topic_filter: str) -> int:
    """Index of the single ``+`` level of the topic filter (the meter id); ConfigError if there is not one."""
    levels = topic_filter.split("/")
    plus = [i for i, level in enumerate(levels) if level == "+"]
    if len(plus) != 1 or "#" in topic_filter or any("+" in lv and lv != "+" for lv in levels):
        raise ConfigError(f"mqtt.topic {topic_filter!r} must have exactly one '+' level (the meter id) and no '#'")
    return plus[0]


def error_topic(topic_filter: str, meter_id: str) -> str:
    """Where errors about ``meter_id`` are published: ``smartmeter/+/reading`` → ``smartmeter/<id>/error``."""
    levels = topic_filter.split("/")
    i = meter_level(topic_filter)
    levels[i] = meter_id
    if i == len(levels) - 1:
        levels.append("error")
    else:
        levels[-1] = "error"
    return "/".join(levels)


class MqttIngest:
    """Subscribe to readings and store them until ``stop`` is set. ``run()`` blocks; call ``stop.set()`` to end."""

    def __init__(self, settings: Settings, db_factory: Callable[[], Database],
                 stop: threading.Event | None = None, *, publish_errors: bool = True) -> None:
        self.settings = settings
        self.mqtt = settings.mqtt
        self.db_factory = db_factory
        self.stop = stop or threading.Event()
        self.publish_errors = publish_errors
        self.level = meter_level(self.mqtt.topic)
        self.ready = threading.Event()  # connected and subscribed (SUBACK received)
        self.connects = 0  # successful connections so far (tests and logs)
        self.outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()  # every handled message, for observers
        self._inbox: queue.Queue[_Incoming] = queue.Queue(QUEUE_SIZE)
        self._generation = 0
        self._db: Database | None = None
        self.client = self._make_client()

    # --- network thread (paho callbacks) ---------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.mqtt.client_id, clean_session=False,
                             manual_ack=True)
        password = get_secret("mqtt_password", required=False)
        if self.mqtt.username is not None or password is not None:
            client.username_pw_set(self.mqtt.username or "", password.get_secret_value() if password else None)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT broker %s:%d refused the connection: %s", self.mqtt.host, self.mqtt.port, reason)
            return
        self._generation += 1
        self.connects += 1
        client.subscribe(self.mqtt.topic, qos=1)
        log.info("MQTT connected to %s:%d", self.mqtt.host, self.mqtt.port)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[Any], props: Any) -> None:
        failed = [r for r in reasons if r.is_failure]
        if failed:  # e.g. the broker's ACL denies the topic: retrying will not help, but say so loudly
            log.error("MQTT broker refused the subscription to %s: %s", self.mqtt.topic, failed[0])
            return
        self.ready.set()
        log.info("MQTT subscribed to %s", self.mqtt.topic)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.ready.clear()
        if not self.stop.is_set():
            log.warning("MQTT connection to %s:%d lost (%s); reconnecting with backoff",
                        self.mqtt.host, self.mqtt.port, reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        item = _Incoming(msg.topic, bytes(msg.payload), msg.mid, msg.qos, self._generation)
        while not self.stop.is_set():
            try:
                self._inbox.put(item, timeout=0.5)
                return
            except queue.Full:
                log.debug("MQTT inbox full; waiting for the database")

    # --- processing thread (the one calling run) -------------------------------------------------------------

    def run(self) -> None:
        """Connect (retrying until the broker answers), store messages until ``stop`` is set, then disconnect."""
        log.info("MQTT ingest: broker %s:%d topic %s", self.mqtt.host, self.mqtt.port, self.mqtt.topic)
        self.client.connect_async(self.mqtt.host, self.mqtt.port, keepalive=30)
        self.client.loop_start()
        try:
            while not self.stop.is_set():
                try:
                    item = self._inbox.get(timeout=0.2)
                except queue.Empty:
                    continue
                self._process(item)
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            if self._db is not None:
                self._db.close()
                self._db = None
            log.info("MQTT ingest stopped after %d connection(s)", self.connects)

    def _process(self, item: _Incoming) -> None:
        delay = 0.5
        while True:
            try:
                outcome = self.handle(item.topic, item.payload)
                break
            except DatabaseError as exc:  # keep the message: retry until the database is back or we stop
                log.warning("database failed on %s (%s); retrying in %.1f s", item.topic, exc, delay)
                self._close_db()
                if self.stop.wait(delay):
                    return  # not acknowledged: the broker delivers it again next session
                delay = min(delay * 2, DB_RETRY_MAX_S)
        if item.qos > 0 and item.generation == self._generation:
            self.client.ack(item.mid, item.qos)
        self.outcomes.put(outcome)

    def _database(self) -> Database:
        if self._db is None:
            self._db = self.db_factory()
        return self._db

    def _close_db(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except SmartMeterError as exc:
                log.debug("closing a failed database: %s", exc)
            self._db = None

    def handle(self, topic: str, payload: bytes) -> Outcome:
        """Parse and store one message. Our errors (except DatabaseError) become an Outcome with the reason."""
        levels = topic.split("/")
        meter_id = levels[self.level] if self.level < len(levels) else None
        try:
            meter_id = check_meter_id(meter_id or "")
            readings = parse_body(payload, meter_id, "mqtt")
            report = submit_readings(self._database(), self.settings, meter_id, readings)
        except DatabaseError:
            raise
        except ReadingsRejected as exc:
            return self._reject(topic, meter_id, str(exc), rejected=len(exc.details), details=exc.details)
        except SmartMeterError as exc:
            return self._reject(topic, meter_id, str(exc))
        except Exception as exc:  # one bad message must never end the subscriber
            log.exception("unexpected failure on %s", topic)
            return self._reject(topic, meter_id, f"internal error: {type(exc).__name__}: {exc}")
        log.info("meter %s via MQTT: %d accepted, %d duplicates, %d rejected",
                 meter_id, report.accepted, report.duplicates, report.rejected_count)
        if report.rejected_count:
            self._publish_error(meter_id, f"{report.rejected_count} readings rejected by validation",
                                [{"timestamp": format_timestamp(r.timestamp), "reason": why}
                                 for r, why in report.rejected])
        return Outcome(topic, meter_id, report.accepted, report.duplicates, report.rejected_count)

    def _reject(self, topic: str, meter_id: str | None, reason: str, rejected: int = 0,
                details: list[dict[str, Any]] | None = None) -> Outcome:
        log.warning("MQTT message on %s rejected: %s", topic, reason)
        if meter_id is not None:
            self._publish_error(meter_id, reason, details)
        return Outcome(topic, meter_id, rejected=rejected, error=reason)

    def _publish_error(self, meter_id: str, reason: str, details: list[dict[str, Any]] | None = None) -> None:
        if not self.publish_errors:
            return
        try:
            target = error_topic(self.mqtt.topic, check_meter_id(meter_id))
        except SmartMeterError:
            return  # an id that is not a valid topic level gets no error topic; the log has it
        body: dict[str, Any] = {"error": reason}
        if details:
            body["rejected"] = details
        self.client.publish(target, json.dumps(body), qos=1)
