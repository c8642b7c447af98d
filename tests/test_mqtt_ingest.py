"""MQTT ingest (server.mqtt_ingest) against a real mosquitto broker that each test starts on a free port."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from smartmeter.errors import ConfigError
from smartmeter.server.database import open_database
from smartmeter.server.mqtt_ingest import MqttIngest, Outcome, error_topic, meter_level
from smartmeter.settings import MqttSettings, Settings

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """A mosquitto process with its own config; stop() and start() again keep the port."""

    def __init__(self, folder: Path, password_file: Path | None = None) -> None:
        if not os.access(MOSQUITTO, os.X_OK):
            pytest.fail(f"mosquitto not found at {MOSQUITTO}: install the Debian package (make setup does)")
        self.port = free_port()
        self.conf = folder / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", "log_dest stderr"]
        lines += (["allow_anonymous false", f"password_file {password_file}"] if password_file
                  else ["allow_anonymous true"])
        if os.geteuid() == 0:
            lines.append("user root")  # do not drop to the 'mosquitto' user (it cannot read the temp folder)
        self.conf.write_text("\n".join(lines) + "\n")
        self.log = folder / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail("mosquitto did not listen within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'readings.db'}"
    with open_database(url) as db:
        db.register_meter("meter1")
    return url


def settings_for(port: int, **mqtt: Any) -> Settings:
    return Settings(mqtt=MqttSettings(enabled=True, host="127.0.0.1", port=port, **mqtt))


class Subscriber:
    """Runs MqttIngest.run() in a thread, like `smartmeter mqtt` does in its main thread."""

    def __init__(self, settings: Settings, db_url: str) -> None:
        self.ingest = MqttIngest(settings, lambda: open_database(db_url))
        self.thread = threading.Thread(target=self.ingest.run, daemon=True)
        self.thread.start()

    def next(self, timeout: float = 10.0) -> Outcome:
        return self.ingest.outcomes.get(timeout=timeout)

    def close(self) -> None:
        self.ingest.stop.set()
        self.thread.join(15)
        assert not self.thread.is_alive(), "subscriber did not stop"


@pytest.fixture
def subscriber(broker: Broker, db_url: str) -> Iterator[Subscriber]:
    s = Subscriber(settings_for(broker.port), db_url)
    assert s.ingest.ready.wait(10), "subscriber did not subscribe"
    yield s
    s.close()


class Client:
    """A plain paho client: publishes readings, collects what arrives on the error topics."""

    def __init__(self, port: int, subscribe: str | None = "smartmeter/+/error") -> None:
        self.received: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{time.monotonic_ns()}")
        self.c.on_message = lambda c, u, m: self.received.put((m.topic, json.loads(m.payload)))
        subscribed = threading.Event()
        self.c.on_subscribe = lambda *a: subscribed.set()
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        if subscribe:
            self.c.subscribe(subscribe, qos=1)
            assert subscribed.wait(5)

    def publish(self, topic: str, payload: Any) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.c.publish(topic, data, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def rows(start_min: int, values: list[float]) -> list[dict[str, Any]]:
    return [{"timestamp": f"2014-12-12T10:{start_min + i:02d}:00Z", "contatore": v, "potenza": 0.25}
            for i, v in enumerate(values)]


def stored(db_url: str, meter_id: str = "meter1") -> list[tuple[str, float, float | None, str]]:
    with open_database(db_url) as db:
        return [(r.timestamp.isoformat(), r.value_kwh, r.power_w, r.source) for r in db.readings(meter_id)]


def test_readings_land_and_bad_messages_are_rejected(broker: Broker, subscriber: Subscriber, db_url: str) -> None:
    client = Client(broker.port)
    try:
        client.publish("smartmeter/meter1/reading", rows(0, [10.0, 10.01, 10.02]))
        out = subscriber.next()
        assert (out.meter_id, out.accepted, out.duplicates, out.rejected, out.error) == ("meter1", 3, 0, 0, None)
        assert stored(db_url) == [(f"2014-12-12T10:0{i}:00+00:00", v, 250.0, "mqtt")
                                  for i, v in enumerate([10.0, 10.01, 10.02])]
        before = stored(db_url)

        bad = rows(3, [10.03, 10.04])
        bad[1]["potenza"] = "lots"
        client.publish("smartmeter/meter1/reading", bad)
        out = subscriber.next()
        assert out.error == 'readings[1].potenza: must be a number, got "lots"' and out.accepted == 0
        topic, body = client.received.get(timeout=5)
        assert topic == "smartmeter/meter1/error" and body == {"error": out.error}

        client.publish("smartmeter/meter1/reading", b"\x00garbage")
        assert "not valid JSON" in (subscriber.next().error or "")
        assert "not valid JSON" in client.received.get(timeout=5)[1]["error"]

        client.publish("smartmeter/ghost/reading", rows(3, [1.0]))
        out = subscriber.next()
        assert out.meter_id == "ghost" and "unknown meter 'ghost'" in (out.error or "")
        assert client.received.get(timeout=5)[0] == "smartmeter/ghost/error"

        client.publish("smartmeter/meter1/reading", rows(3, [9.0, 9.5]))  # register goes backwards
        out = subscriber.next()
        assert out.rejected == 2 and "rejected by validation" in (out.error or "")
        _, body = client.received.get(timeout=5)
        assert [x["timestamp"] for x in body["rejected"]] == ["2014-12-12T10:03:00Z", "2014-12-12T10:04:00Z"]
        assert all("backwards" in x["reason"] for x in body["rejected"])
        assert stored(db_url) == before

        # the loop is still alive; a resent message is a duplicate, not an error
        client.publish("smartmeter/meter1/reading", rows(2, [10.02, 10.03]))
        out = subscriber.next()
        assert (out.accepted, out.duplicates, out.error) == (1, 1, None)
        assert len(stored(db_url)) == 4
        assert client.received.empty()
    finally:
        client.close()


@pytest.mark.fault("hostile API/MQTT input", proves="every payload gets a clear error on the error topic, never "
                   "'internal error'; nothing stored before is touched; the loop goes on")
def test_hostile_payloads_get_a_clear_error(broker: Broker, subscriber: Subscriber, db_url: str) -> None:
    client = Client(broker.port)
    try:
        client.publish("smartmeter/meter1/reading", rows(0, [10.0]))
        assert subscriber.next().accepted == 1
        before = stored(db_url)
        hostile = [b'{"timestamp": "2014-12-12T10:01:00Z", "contatore": 1' + b"0" * 400 + b"}",
                   b'{"timestamp": "2014-12-12T10:01:00Z", "contatore": 1' + b"0" * 5000 + b"}",
                   b"[" * 5000 + b"]" * 5000,
                   b'{"timestamp": "0001-01-01T00:00:00Z", "contatore": 10.5}']
        for payload in hostile:
            client.publish("smartmeter/meter1/reading", payload)
            out = subscriber.next()
            assert out.error and "internal error" not in out.error and len(out.error) < 300, out.error
            assert "internal error" not in client.received.get(timeout=5)[1]["error"]
        assert stored(db_url) == before
        client.publish("smartmeter/meter1/reading", rows(1, [10.01]))
        assert subscriber.next().accepted == 1
    finally:
        client.close()


def test_subscriber_reconnects_after_broker_restart(broker: Broker, subscriber: Subscriber, db_url: str) -> None:
    client = Client(broker.port, subscribe=None)
    client.publish("smartmeter/meter1/reading", rows(0, [10.0]))
    assert subscriber.next().accepted == 1
    client.close()

    broker.stop()  # the broker forgets every session (no persistence): the subscription must be renewed
    deadline = time.monotonic() + 10
    while subscriber.ingest.ready.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not subscriber.ingest.ready.is_set()
    time.sleep(1.5)  # a few failed reconnect attempts while the broker is down
    broker.start()
    t0 = time.monotonic()
    assert subscriber.ingest.ready.wait(15), "subscriber did not reconnect"
    reconnect_s = time.monotonic() - t0
    assert subscriber.ingest.connects == 2

    client = Client(broker.port, subscribe=None)
    try:
        client.publish("smartmeter/meter1/reading", rows(1, [10.01]))
        assert subscriber.next().accepted == 1
    finally:
        client.close()
    assert [v for _, v, _, _ in stored(db_url)] == [10.0, 10.01]
    assert reconnect_s < 10


def test_messages_sent_while_subscriber_is_down_are_delivered(broker: Broker, db_url: str) -> None:
    settings = settings_for(broker.port, client_id="ingest-offline-test")
    first = Subscriber(settings, db_url)
    assert first.ingest.ready.wait(10)
    first.close()  # persistent session: the broker keeps queueing QoS 1 messages for this client id

    client = Client(broker.port, subscribe=None)
    try:
        client.publish("smartmeter/meter1/reading", rows(0, [10.0]))
        client.publish("smartmeter/meter1/reading", rows(1, [10.01]))
    finally:
        client.close()
    second = Subscriber(settings, db_url)
    try:
        assert sum(second.next().accepted for _ in range(2)) == 2
    finally:
        second.close()
    assert [v for _, v, _, _ in stored(db_url)] == [10.0, 10.01]


@pytest.mark.fault("database down", proves="readings lost: 0 (an MQTT message is kept until the database stores it)")
def test_database_outage_keeps_the_message_until_stored(broker: Broker, tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the database folder should be")
    url = f"sqlite:///{blocker / 'readings.db'}"
    sub = Subscriber(settings_for(broker.port), url)
    client = Client(broker.port, subscribe=None)
    try:
        assert sub.ingest.ready.wait(10)
        client.publish("smartmeter/meter1/reading", rows(0, [10.0]))
        with pytest.raises(queue.Empty):
            sub.next(timeout=1.2)  # database cannot open: the message is held and retried
        blocker.unlink()
        with open_database(url) as db:
            db.register_meter("meter1")
        out = sub.next(timeout=10)
        assert out.accepted == 1 and out.error is None
    finally:
        client.close()
        sub.close()
    assert [v for _, v, _, _ in stored(url)] == [10.0]


def test_broker_password_comes_from_the_secret(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    passwords = tmp_path / "passwd"
    passwords.touch()
    subprocess.run([MOSQUITTO_PASSWD, "-b", str(passwords), "ingest", "pa55word"], check=True)
    broker = Broker(tmp_path, password_file=passwords)
    broker.start()
    try:
        settings = settings_for(broker.port, username="ingest")
        monkeypatch.setenv("SMARTMETER_MQTT_PASSWORD", "wrong")
        refused = Subscriber(settings, db_url)
        try:
            assert not refused.ingest.ready.wait(1.5)
        finally:
            refused.close()
        monkeypatch.setenv("SMARTMETER_MQTT_PASSWORD", "pa55word")
        accepted = Subscriber(settings, db_url)
        try:
            assert accepted.ingest.ready.wait(10)
        finally:
            accepted.close()
    finally:
        broker.stop()


def test_topic_filter_and_error_topic() -> None:
    assert meter_level("smartmeter/+/reading") == 1
    assert error_topic("smartmeter/+/reading", "m1") == "smartmeter/m1/error"
    assert error_topic("home/meters/+", "m1") == "home/meters/m1/error"
    for bad in ("smartmeter/reading", "smartmeter/+/+", "smartmeter/#", "a/x+/b", "+/+"):
        with pytest.raises(ConfigError, match="exactly one"):
            meter_level(bad)


def test_smartmeter_mqtt_runs_until_sigterm(broker: Broker, db_url: str, tmp_path: Path) -> None:
    config = tmp_path / "smartmeter.yaml"
    config.write_text(f"database:\n  url: {db_url}\nmqtt:\n  enabled: true\n  host: 127.0.0.1\n"
                      f"  port: {broker.port}\n  client_id: cli-test\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTMETER_")}
    proc = subprocess.Popen([sys.executable, "-m", "smartmeter.cli", "-v", "-c", str(config), "mqtt"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    client = Client(broker.port, subscribe=None)
    try:
        deadline = time.monotonic() + 20
        while not stored(db_url):  # resend until the subscriber is up (a resent reading is a duplicate)
            assert proc.poll() is None and time.monotonic() < deadline, "nothing stored by `smartmeter mqtt`"
            client.publish("smartmeter/meter1/reading", rows(0, [10.0]))
            time.sleep(0.3)
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=20)[0].decode()
    assert proc.returncode == 0, out
    assert "received SIGTERM" in out and "stopped after 1 connection" in out
    assert stored(db_url) == [("2014-12-12T10:00:00+00:00", 10.0, 250.0, "mqtt")]


def test_smartmeter_mqtt_refuses_when_disabled(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "smartmeter.cli", "mqtt"], capture_output=True, text=True,
                       timeout=30, env={k: v for k, v in os.environ.items() if not k.startswith("SMARTMETER_")},
                       cwd=tmp_path)
    assert r.returncode == 2 and "MQTT ingest is disabled" in r.stderr and "mqtt.enabled: true" in r.stderr


def test_message_not_stored_is_not_acknowledged(broker: Broker, tmp_path: Path) -> None:
    """Stopped while the database is down: the broker keeps the message and delivers it to the next run."""
    blocker = tmp_path / "data"
    blocker.write_text("a file where the database folder should be")
    url = f"sqlite:///{blocker / 'readings.db'}"
    settings = settings_for(broker.port, client_id="ingest-ack-test")
    first = Subscriber(settings, url)
    client = Client(broker.port, subscribe=None)
    try:
        assert first.ingest.ready.wait(10)
        client.publish("smartmeter/meter1/reading", rows(0, [10.0]))
        with pytest.raises(queue.Empty):
            first.next(timeout=1.0)
    finally:
        client.close()
        first.close()
    blocker.unlink()
    with open_database(url) as db:
        db.register_meter("meter1")
    second = Subscriber(settings, url)
    try:
        out = second.next(timeout=10)
        assert out.accepted == 1 and out.error is None
    finally:
        second.close()
    assert [v for _, v, _, _ in stored(url)] == [10.0]
