"""Benchmark: time from an event stored (as `smartmeter analyse` stores it) to the alert arriving on each channel —
a real mosquitto (own process), a local webhook HTTP server and a local SMTP server (aiosmtpd) — side by side for
poll intervals (``alerts.poll_s``) 0.5 s (the default) and 0.1 s, and for the event-to-outbox step alone.

Usage: ``python bench/alerts.py [--events 20]``. Target: every alert on every channel within 2 s of its event.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from local_servers import MqttWatcher, SmtpServer, WebhookServer, free_port  # noqa: E402

from smartmeter.server.alerts_service import AlertService  # noqa: E402
from smartmeter.server.database import Database, open_database  # noqa: E402
from smartmeter.settings import Settings  # noqa: E402


def mosquitto(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = folder / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", "persistence false", "allow_anonymous true"]
    conf.write_text("\n".join(lines + (["user root"] if os.geteuid() == 0 else [])) + "\n")
    proc = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc, port


def store_event(db: Database, i: int, now_ms: int, is_open: int) -> None:
    db.execute("INSERT INTO events (meter_id, kind, start_ms, end_ms, is_open, value, detail, updated_ms) "
               "VALUES ('m1', 'blackout', ?, ?, ?, 0, 'bench', ?) ON CONFLICT (meter_id, kind, start_ms) DO UPDATE "
               "SET is_open = excluded.is_open, end_ms = excluded.end_ms", (i, now_ms, is_open, now_ms))


def run(poll_s: float, events: int, folder: Path) -> dict[str, list[float]]:
    proc, port = mosquitto(folder)
    hook, smtp = WebhookServer(), SmtpServer().start()
    os.environ["SMARTMETER_ALERTS_WEBHOOK_SECRET"] = "bench"
    db = open_database(f"sqlite:///{folder}/bench-{poll_s}.db")
    db.register_meter("m1")
    s = Settings.model_validate({"mqtt": {"host": "127.0.0.1", "port": port}, "alerts": {
        "rules": [{"name": "outage", "events": ["blackout"]}], "quiet_s": 0, "poll_s": poll_s,
        "mqtt_topic": "smartmeter/{meter}/alert",
        "webhook_url": hook.url, "smtp_host": "127.0.0.1", "smtp_port": smtp.port, "smtp_starttls": False,
        "mail_to": ["a@example.org"]}})
    watch = MqttWatcher(port, "smartmeter/+/alert")
    service = AlertService(s, db)
    stop = threading.Event()
    loop = threading.Thread(target=service.run, args=(stop,), daemon=True)
    loop.start()
    out: dict[str, list[float]] = {"mqtt": [], "webhook": [], "email": [], "worst": []}
    try:
        for i in range(events):
            for is_open in (1, 0):  # the alert, then its recovery
                t = time.monotonic()
                store_event(db, i, int(time.time() * 1000), is_open)
                got = [watch.received.get(timeout=10)[0], hook.received.get(timeout=10)[0],
                       smtp.received.get(timeout=10)[0]]
                for name, at in zip(("mqtt", "webhook", "email"), got, strict=True):
                    out[name].append(at - t)
                out["worst"].append(max(got) - t)
                time.sleep(poll_s * 0.37)  # events arrive at any phase of the poll
    finally:
        stop.set()
        loop.join(5)
        service.close()
        watch.close()
        hook.close()
        smtp.stop()
        db.close()
        proc.terminate()
        proc.wait(5)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=20)
    args = ap.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for poll in (0.5, 0.1):
            rows[poll] = run(poll, args.events, Path(tmp))
    print(f"{2 * args.events} alerts/recoveries each; seconds from the event stored to arrival "
          f"(median / max), load avg {os.getloadavg()[0]:.1f}")
    print(f"{'channel':<9}" + "".join(f"{f'poll {p} s':>22}" for p in rows))
    for name in ("mqtt", "webhook", "email", "worst"):
        print(f"{name:<9}" + "".join(f"{statistics.median(r[name]):>12.3f} / {max(r[name]):<7.3f}"
                                     for r in rows.values()))
    worst = max(max(r["worst"]) for r in rows.values())
    print(f"target: all within 2 s -> {'met' if worst < 2 else 'MISSED'} (worst {worst:.3f} s)")


if __name__ == "__main__":
    main()
