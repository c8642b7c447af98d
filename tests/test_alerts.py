"""Alerts (server.alerts, alerts_channels, alerts_service) delivered to a real mosquitto, a local webhook server and a
local SMTP server (aiosmtpd); the outbox in the database; time simulated where minutes would pass."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from local_servers import MqttWatcher, SmtpServer, WebhookServer, free_port
from test_mqtt_ingest import Broker

from smartmeter.server import alerts_repo
from smartmeter.server.alerts import Evaluator
from smartmeter.server.alerts_channels import SmtpChannel, WebhookChannel, deliver_due, signature
from smartmeter.server.alerts_service import AlertService
from smartmeter.server.database import Database, open_database, to_ms
from smartmeter.settings import Settings
from smartmeter.types import Reading

SECRET = "s3cret-hook"
T0 = to_ms(datetime(2026, 11, 10, 12, tzinfo=UTC))


def settings(**alerts: Any) -> Settings:
    base: dict[str, Any] = {"rules": [{"name": "outage", "events": ["blackout"]}], "mqtt_topic": None,
                            "smtp_starttls": False, "mail_to": ["home@example.org"]}
    mqtt = alerts.pop("_mqtt", {})
    return Settings.model_validate({"meters": [{"id": "m1", "timezone": "Europe/Rome"}],
                                    "alerts": {**base, **alerts}, "mqtt": mqtt})


def open_event(db: Database, start_ms: int, now_ms: int, kind: str = "blackout") -> None:
    """What `smartmeter analyse` stores while a condition holds (server.events)."""
    db.execute("INSERT INTO events (meter_id, kind, start_ms, end_ms, is_open, value, detail, updated_ms) "
               "VALUES ('m1', ?, ?, ?, 1, 0, 'no power', ?)", (kind, start_ms, now_ms, now_ms))


def close_event(db: Database, start_ms: int, end_ms: int) -> None:
    db.execute("UPDATE events SET is_open = 0, end_ms = ? WHERE meter_id = 'm1' AND start_ms = ?", (end_ms, start_ms))


@pytest.fixture
def mdb(tmp_path: Path) -> Database:
    db = open_database(f"sqlite:///{tmp_path}/a.db")
    db.register_meter("m1")
    return db


def test_an_event_reaches_mqtt_webhook_and_email_within_2_s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             mdb: Database) -> None:
    monkeypatch.setenv("SMARTMETER_ALERTS_WEBHOOK_SECRET", SECRET)
    broker, hook, smtp = Broker(tmp_path), WebhookServer(), SmtpServer().start()
    broker.start()
    watch = MqttWatcher(broker.port, "smartmeter/+/alert")
    s = settings(mqtt_topic="smartmeter/{meter}/alert", webhook_url=hook.url, smtp_host="127.0.0.1",
                 smtp_port=smtp.port, poll_s=0.2, _mqtt={"host": "127.0.0.1", "port": broker.port})
    service = AlertService(s, mdb)
    stop = threading.Event()
    loop = threading.Thread(target=service.run, args=(stop,), daemon=True)
    loop.start()
    try:
        time.sleep(0.5)  # a pass with nothing to say
        t_event = time.monotonic()
        now = int(time.time() * 1000)
        open_event(mdb, now - 600_000, now)
        arrived_mqtt, _, payload, _ = watch.received.get(timeout=5)
        arrived_hook, headers, body = hook.received.get(timeout=5)
        arrived_mail, envelope = smtp.received.get(timeout=5)
        latency = max(arrived_mqtt, arrived_hook, arrived_mail) - t_event
        assert latency < 2.0, f"alert took {latency:.2f} s"
        msg = json.loads(payload)
        assert (msg["meter"], msg["rule"], msg["kind"]) == ("m1", "outage", "alert") and "no power" in msg["detail"]
        assert headers["X-SmartMeter-Signature"] == signature(SECRET.encode(), headers["X-SmartMeter-Timestamp"], body)
        assert json.loads(body)["id"] == msg["id"] == "m1/outage/1"
        assert envelope.rcpt_tos == ["home@example.org"] and b"Subject: SmartMeter m1: outage" in envelope.content
        # the condition ends: one recovery on each channel
        close_event(mdb, now - 600_000, now + 1000)
        assert json.loads(watch.received.get(timeout=5)[2])["kind"] == "recovery"
        assert json.loads(hook.received.get(timeout=5)[2])["kind"] == "recovery"
        assert b"is over" in smtp.received.get(timeout=5)[1].content
        time.sleep(0.6)  # nothing more: de-duplicated
        assert watch.received.empty() and hook.received.empty() and smtp.received.empty()
    finally:
        stop.set()
        loop.join(5)
        service.close()
        watch.close()
        hook.close()
        smtp.stop()
        broker.stop()


def test_a_flapping_condition_sends_at_most_one_alert_per_quiet_period(mdb: Database) -> None:
    s = settings(quiet_s=1800, smtp_host="127.0.0.1")  # the rule names all three channels; e-mail is configured
    ev = Evaluator()
    made = []
    for i in range(120):  # two hours: a blackout opens and closes every minute (simulated clock)
        now = T0 + i * 60_000
        if i % 2 == 0:
            open_event(mdb, now, now)
        else:
            close_event(mdb, now - 60_000, now)
        made += ev.evaluate(mdb, s, now)
    alerts = [m for m in made if m["kind"] == "alert"]
    # 0, 30 and 60 min after the first one (quiet 30 min): 4 alerts in 120 minutes, each followed by its recovery
    assert [(m["at"][11:16]) for m in alerts] == ["12:00", "12:30", "13:00", "13:30"]
    assert len([m for m in made if m["kind"] == "recovery"]) == 4
    assert alerts_repo.load_state(mdb, "m1", "outage").suppressed == 56
    assert {r.channel for r in alerts_repo.outbox(mdb)} == {"email"} and len(alerts_repo.outbox(mdb)) == 8


def test_smtp_down_for_10_minutes_delays_never_loses_the_alert(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    port = free_port()  # nothing listens yet: the SMTP server is down
    s = settings(smtp_host="127.0.0.1", smtp_port=port, retry_s=10, retry_max_s=120, timeout_s=2,
                 rules=[{"name": "outage", "events": ["blackout"], "channels": ["email"]}])
    db = open_database(url)
    db.register_meter("m1")
    open_event(db, T0 - 60_000, T0)
    assert len(Evaluator().evaluate(db, s, T0)) == 1
    channels: dict[str, Any] = {"email": SmtpChannel(s)}
    tries = 0
    t = T0
    while t < T0 + 600_000:  # ten minutes of passes every 5 s: every due try fails
        sent, failed = deliver_due(db, channels, s, t)
        assert sent == 0
        tries += failed
        t += 5_000
    [row] = alerts_repo.outbox(db, pending_only=True)
    assert row.attempts == tries and 5 <= tries <= 12 and "SMTP 127.0.0.1" in row.last_error
    db.close()  # the server restarts while the SMTP server is still down
    smtp = SmtpServer(port).start()
    try:
        db = open_database(url)
        delivered_at = None
        while delivered_at is None and t < T0 + 900_000:
            if deliver_due(db, {"email": SmtpChannel(s)}, s, t)[0]:
                delivered_at = t
            t += 5_000
        assert delivered_at is not None and delivered_at - T0 <= 600_000 + 120_000 + 5_000  # within one max backoff
        _, envelope = smtp.received.get(timeout=5)
        assert b"SmartMeter m1: outage" in envelope.content and smtp.received.empty()
        assert alerts_repo.outbox(db, pending_only=True) == []
        assert deliver_due(db, {"email": SmtpChannel(s)}, s, t + 3_600_000) == (0, 0)  # sent once
        db.close()
    finally:
        smtp.stop()


def test_webhook_errors_are_retried_and_signed() -> None:
    hook = WebhookServer()
    try:
        ch = WebhookChannel(hook.url, b"k", 5)
        hook.status = 500
        with pytest.raises(Exception, match="answered 500"):
            ch.send({"id": "x", "meter": "m1"})
        hook.status = 200
        ch.send({"id": "x", "meter": "m1"})
        _, headers, body = hook.received.get(timeout=5)
        assert headers["X-SmartMeter-Signature"] == signature(b"k", headers["X-SmartMeter-Timestamp"], body)
        assert signature(b"other", headers["X-SmartMeter-Timestamp"], body) != headers["X-SmartMeter-Signature"]
    finally:
        hook.close()


def test_projected_bill_rules(mdb: Database) -> None:
    # local October (745 h: the 25th has 25) at 10/24 kWh an hour = 310.417 kWh x 0.25 = 77.60; local November up
    # to the 11th 00:00 at 20 kWh a day: projected 30 x 20 = 600 kWh x 0.25 = 150.00, 93 % above October's
    nov = datetime(2026, 10, 31, 23, tzinfo=UTC)
    t, v, rows = datetime(2026, 9, 30, 22, tzinfo=UTC), 1000.0, []
    while t <= datetime(2026, 11, 10, 23, tzinfo=UTC):
        rows.append(Reading("m1", t, round(v, 6), "csv:t"))
        v += (10 if t < nov else 20) / 24
        t += timedelta(hours=1)
    mdb.insert_readings(rows)
    tariff = {"name": "flat", "start": "2020-01-01", "energy": [{"tiers": [{"price": 0.25}]}]}
    base = Settings.model_validate({"meters": [{"id": "m1", "timezone": "Europe/Rome"}],
                                    "billing": {"tariffs": [tariff]}})
    for rule, fires in [({"bill_above": 140}, True), ({"bill_above": 160}, False),
                        ({"bill_above_last_percent": 90}, True), ({"bill_above_last_percent": 100}, False)]:
        s = base.model_copy(update={"alerts": settings(rules=[{"name": "bill", **rule}]).alerts})
        made = Evaluator().evaluate(mdb, s, T0)
        assert bool(made) == fires, rule
        if fires:
            assert "150.00 EUR" in made[0]["detail"]
        mdb.execute("DELETE FROM alert_state")


def test_outbox_and_state_on_both_backends(db: Database) -> None:
    """The alert tables (migration 007) on SQLite and PostgreSQL: made once, delivered once, retried on failure."""
    db.register_meter("m1")
    hook = WebhookServer()
    try:
        s = settings(rules=[{"name": "outage", "events": ["blackout"], "channels": ["webhook"]}],
                     webhook_url=hook.url, retry_s=10)
        open_event(db, T0 - 60_000, T0)
        ev = Evaluator()
        assert [m["kind"] for m in ev.evaluate(db, s, T0)] == ["alert"] and ev.evaluate(db, s, T0 + 1000) == []
        ch: dict[str, Any] = {"webhook": WebhookChannel(hook.url, b"k", 5)}
        hook.status = 503
        assert deliver_due(db, ch, s, T0) == (0, 1)
        assert deliver_due(db, ch, s, T0 + 5_000) == (0, 0)  # not due before retry_s
        hook.status = 200
        assert deliver_due(db, ch, s, T0 + 10_000) == (1, 0)
        assert json.loads(hook.received.get(timeout=5)[2])["id"] == "m1/outage/1"
        [row] = alerts_repo.outbox(db)
        assert row.attempts == 2 and row.sent_ms == T0 + 10_000 and row.last_error == ""
    finally:
        hook.close()


def test_cli_alerts_run_once_and_outbox(tmp_path: Path) -> None:
    import yaml
    from click.testing import CliRunner

    from smartmeter.cli import cli

    url = f"sqlite:///{tmp_path}/c.db"
    with open_database(url) as db:
        db.register_meter("m1")
        now = int(time.time() * 1000)
        open_event(db, now - 60_000, now)
    port = free_port()  # SMTP down
    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml.safe_dump({"database": {"url": url}, "alerts": {
        "rules": [{"name": "outage", "events": ["blackout"]}], "mqtt_topic": None, "smtp_host": "127.0.0.1",
        "smtp_port": port, "smtp_starttls": False, "mail_to": ["a@example.org"], "timeout_s": 2}}))
    res = CliRunner().invoke(cli, ["-c", str(cfg), "alerts", "run", "--once"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == {"made": 1, "sent": 0, "failed": 1, "ha_states": 0}
    res = CliRunner().invoke(cli, ["-c", str(cfg), "alerts", "outbox", "--pending"])
    assert res.exit_code == 0 and res.output.startswith("m1/outage/1/email  email   waiting")
    cfg.write_text(cfg.read_text().replace("smtp_port: ", "smtp_port: x"))
    res = CliRunner().invoke(cli, ["-c", str(cfg), "alerts", "outbox"])
    assert res.exit_code == 2 and "smtp_port" in res.output  # a bad settings file: a clear error


def test_a_down_channel_is_tried_once_a_pass_and_does_not_hold_up_the_others(mdb: Database) -> None:
    hook = WebhookServer()
    try:
        s = settings(webhook_url=hook.url, smtp_host="127.0.0.1", smtp_port=free_port(), timeout_s=2, quiet_s=0)
        ev = Evaluator()
        for i in range(3):  # three alerts (quiet 0): open, judged, closed, judged
            open_event(mdb, T0 + i * 10_000, T0 + i * 10_000)
            ev.evaluate(mdb, s, T0 + i * 10_000)
            close_event(mdb, T0 + i * 10_000, T0 + i * 10_000 + 1)
            ev.evaluate(mdb, s, T0 + i * 10_000 + 5_000)
        assert len(alerts_repo.outbox(mdb, pending_only=True)) == 12  # 6 messages x (webhook, email)
        chans: dict[str, Any] = {"webhook": WebhookChannel(hook.url, b"k", 5), "email": SmtpChannel(s)}
        assert deliver_due(mdb, chans, s, T0 + 60_000) == (6, 1)  # SMTP refused once; the webhook got all six
        assert hook.received.qsize() == 6
        pending = alerts_repo.outbox(mdb, pending_only=True)
        assert [r.attempts for r in pending] == [1, 0, 0, 0, 0, 0]
    finally:
        hook.close()


def test_a_blackout_found_by_the_analysis_raises_the_alert(mdb: Database) -> None:
    """The real path: readings -> `analyse` stores an open blackout -> the rule alerts; power back -> recovery."""
    from smartmeter.server.events import analyse_meter

    t0 = datetime(2026, 11, 10, 10, tzinfo=UTC)
    rows = [Reading("m1", t0 + timedelta(minutes=i), round(100 + 0.01 * min(i, 60), 4), "mqtt",
                    power_w=600.0 if i < 60 else 0.0) for i in range(81)]  # 600 W for an hour, then 20 min at 0 W
    mdb.insert_readings(rows)
    s = settings(smtp_host="127.0.0.1")
    now = t0 + timedelta(minutes=80, seconds=30)
    state = analyse_meter(mdb, s, "m1", now)
    assert state["blackout"]
    ev = Evaluator()
    [msg] = ev.evaluate(mdb, s, to_ms(now))
    assert msg["kind"] == "alert" and msg["events"][0]["kind"] == "blackout" and msg["events"][0]["open"]
    mdb.insert_readings([Reading("m1", t0 + timedelta(minutes=81 + i), 100.6 + 0.01 * i, "mqtt", power_w=600.0)
                         for i in range(5)])
    later = t0 + timedelta(minutes=86)
    assert not analyse_meter(mdb, s, "m1", later)["blackout"]
    assert [m["kind"] for m in ev.evaluate(mdb, s, to_ms(later))] == ["recovery"]
