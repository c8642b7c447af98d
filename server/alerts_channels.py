"""Alert delivery: the channels behind one interface, and the outbox that retries them (table ``alert_outbox``).

A :class:`Channel` has a ``name`` and ``send(message)``, which returns once the message is handed over and raises
:class:`DeliveryError` otherwise:

- :class:`MqttChannel`: QoS 1 publish to ``alerts.mqtt_topic`` on the ``mqtt:`` broker (password
  SMARTMETER_MQTT_PASSWORD); returns when the broker acknowledged it (PUBACK). Channel ``mqtt_state``: the same,
  retained, to ``analysis.state_topic`` with the analysis's ``{"blackout", "superamento"}`` per meter.
- :class:`WebhookChannel`: HTTP POST of the JSON to ``alerts.webhook_url`` with ``X-SmartMeter-Timestamp: <unix s>``
  and ``X-SmartMeter-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>." + body>`` keyed by the secret
  SMARTMETER_ALERTS_WEBHOOK_SECRET; any 2xx is delivered.
- :class:`SmtpChannel`: one e-mail per message (STARTTLS and login when configured; password
  SMARTMETER_ALERTS_SMTP_PASSWORD).

:func:`deliver_due` sends every due outbox row; a failure is kept with its error and tried again after
``retry_s`` doubling up to ``retry_max_s``, forever: an outage delays a message, never loses it. The outbox is in the
database, so a restart resumes where the last process stopped.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import threading
import time
import urllib.error
import urllib.request
from email.message import EmailMessage
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from smartmeter.errors import SmartMeterError
from smartmeter.secrets import get_secret
from smartmeter.server import alerts_repo
from smartmeter.server.database import Database
from smartmeter.settings import Settings

log = logging.getLogger(__name__)


class DeliveryError(SmartMeterError):
    """A channel could not hand a message over (retried from the outbox)."""


class Channel(Protocol):
    name: str

    def send(self, message: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The webhook signature: ``sha256=`` + hex HMAC-SHA256 of ``<timestamp>.<body>``."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookChannel:
    name = "webhook"

    def __init__(self, url: str, secret: bytes, timeout_s: float) -> None:
        self.url, self.secret, self.timeout_s = url, secret, timeout_s

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message, sort_keys=True).encode()
        ts = str(int(time.time()))
        req = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "X-SmartMeter-Timestamp": ts,
            "X-SmartMeter-Signature": signature(self.secret, ts, body)})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 (configured URL)
                if not 200 <= resp.status < 300:
                    raise DeliveryError(f"webhook answered {resp.status}")
        except urllib.error.HTTPError as exc:
            raise DeliveryError(f"webhook answered {exc.code}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise DeliveryError(f"webhook {self.url} unreachable: {exc}") from exc

    def close(self) -> None:
        pass


class SmtpChannel:
    name = "email"

    def __init__(self, settings: Settings) -> None:
        self.cfg = settings.alerts
        pw = get_secret("alerts_smtp_password", required=bool(self.cfg.smtp_username))
        self.password = pw.get_secret_value() if pw else None

    def send(self, message: dict[str, Any]) -> None:
        cfg = self.cfg
        mail = EmailMessage()
        mail["From"], mail["To"] = cfg.mail_from, ", ".join(cfg.mail_to)
        mail["Subject"] = message["title"]
        mail["Message-ID"] = f"<{message['id'].replace('/', '.')}@smartmeter>"  # the same message keeps its id
        mail.set_content(f"{message['title']}\n\n{message['detail']}\n\nat {message['at']}\nkey {message['id']}\n")
        try:
            with smtplib.SMTP(cfg.smtp_host or "", cfg.smtp_port, timeout=cfg.timeout_s) as smtp:
                if cfg.smtp_starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if cfg.smtp_username:
                    smtp.login(cfg.smtp_username, self.password or "")
                smtp.send_message(mail)
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {cfg.smtp_host}:{cfg.smtp_port}: {exc}") from exc

    def close(self) -> None:
        pass


class MqttChannel:
    name = "mqtt"

    def __init__(self, settings: Settings, topic: str, retain: bool = False, fields: tuple[str, ...] = (),
                 name: str = "alerts") -> None:
        """``fields``: publish only these keys of the message (all when empty); ``name``: the client id's suffix."""
        self.topic, self.timeout_s, self.retain, self.fields = topic, settings.alerts.timeout_s, retain, fields
        m = settings.mqtt
        self.connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{m.client_id}-{name}")
        if m.username:
            pw = get_secret("mqtt_password", required=False)
            self.client.username_pw_set(m.username, pw.get_secret_value() if pw else None)
        self.client.on_connect = lambda c, u, f, rc, p: self.connected.set() if not rc.is_failure else None
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.reconnect_delay_set(1, 30)
        self.client.connect_async(m.host, m.port)
        self.client.loop_start()

    def send(self, message: dict[str, Any]) -> None:
        if not self.connected.wait(min(self.timeout_s, 2.0)):  # a broker that is down fails fast
            raise DeliveryError("MQTT broker not connected")
        body = {k: message[k] for k in self.fields} if self.fields else message
        info = self.client.publish(self.topic.format(meter=message["meter"]), json.dumps(body), qos=1,
                                   retain=self.retain)
        try:
            info.wait_for_publish(self.timeout_s)
        except (RuntimeError, ValueError) as exc:
            raise DeliveryError(f"MQTT publish failed: {exc}") from exc
        if not info.is_published():
            raise DeliveryError("MQTT broker did not acknowledge the alert in time")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def channels_from(settings: Settings) -> dict[str, Channel]:
    """The channels the settings configure."""
    cfg = settings.alerts
    names = cfg.configured()
    out: dict[str, Channel] = {}
    if "mqtt" in names and cfg.mqtt_topic:
        out["mqtt"] = MqttChannel(settings, cfg.mqtt_topic)
    if settings.analysis.state_topic:  # the analysis's {'blackout', 'superamento'} per meter, retained
        out["mqtt_state"] = MqttChannel(settings, settings.analysis.state_topic, retain=True,
                                        fields=("blackout", "superamento"), name="state")
    if "webhook" in names and cfg.webhook_url:
        secret = get_secret("alerts_webhook_secret")
        assert secret is not None
        out["webhook"] = WebhookChannel(cfg.webhook_url, secret.get_secret_value().encode(), cfg.timeout_s)
    if "email" in names:
        out["email"] = SmtpChannel(settings)
    return out


def deliver_due(db: Database, channels: dict[str, Channel], settings: Settings, now_ms: int) -> tuple[int, int]:
    """Send the due outbox rows; returns (delivered, failed). A row of an unconfigured channel waits; after a
    channel's first failure in a pass its other rows wait for the next pass (a down server is tried once a pass)."""
    cfg = settings.alerts
    sent = failed = 0
    down: set[str] = set()
    for row in alerts_repo.due(db, now_ms):
        if row.channel in down:
            continue
        ch = channels.get(row.channel)
        try:
            if ch is None:
                raise DeliveryError(f"channel {row.channel} is not configured")
            ch.send(json.loads(row.payload))
        except DeliveryError as exc:
            wait_s = min(cfg.retry_s * 2 ** row.attempts, cfg.retry_max_s)
            alerts_repo.mark_failed(db, row.id, now_ms + int(wait_s * 1000), str(exc))
            log.warning("alert %s via %s failed (try %d, next in %.0f s): %s", row.id, row.channel,
                        row.attempts + 1, wait_s, exc)
            failed += 1
            down.add(row.channel)
            continue
        alerts_repo.mark_sent(db, row.id, now_ms)
        sent += 1
    return sent, failed
