"""``smartmeter report`` (text | json | md | html | pdf), ``smartmeter analyse`` (once and --every), the API's state and
events endpoints, and the scheduled analysis inside the worker loop."""

from __future__ import annotations

import json
import math
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from smartmeter.cli import cli
from smartmeter.server import events
from smartmeter.server.cli_analyse import parse_every
from smartmeter.server.database import open_database
from smartmeter.server.report import build_report, render_text
from smartmeter.settings import MeterSettings, Settings
from smartmeter.types import Reading

T0 = datetime(2024, 6, 1, tzinfo=UTC)


def readings(n: int = 600, meter: str = "m") -> list[Reading]:
    out, kwh = [], 500.0
    for m in range(n):
        w = 0.0 if 100 <= m < 130 else (3500.0 if 200 <= m < 220 else 300.0)
        out.append(Reading(meter, T0 + timedelta(minutes=m), round(math.floor(kwh * 100) / 100, 2), "csv:x", 1.0,
                           "", w))
        kwh += w * 60 / 3.6e6
    return out


@pytest.fixture
def config(tmp_path: Path) -> tuple[Path, str]:
    url = f"sqlite:///{tmp_path}/r.db"
    with open_database(url) as db:
        db.insert_readings(readings())
    cfg = tmp_path / "s.yaml"
    cfg.write_text(f"database:\n  url: {url}\nmeters:\n  - id: m\n    resolution_kwh: 0.01\n"
                   "    timezone: Europe/Rome\n", encoding="utf-8")
    return cfg, url


def test_report_text_states_its_period_and_lists_events(config: tuple[Path, str]) -> None:
    cfg, url = config
    settings = Settings(database={"url": url}, meters=[MeterSettings(id="m", resolution_kwh=0.01)])
    with open_database(url) as db:
        rep = build_report(db, settings, now=T0 + timedelta(minutes=600))
        text = render_text(rep)
    assert "Meter m: 600 readings, 2024-06-01T00:00:00Z .. 2024-06-01T09:59:00Z" in text
    assert "asked for the first reading .. the last reading" in text
    assert "blackout" in text and "power_high" in text and "energy per local day" in text
    res = CliRunner().invoke(cli, ["-c", str(cfg), "report", "--from", "2024-06-01T03:00:00Z", "--to",
                                   "2024-06-01T08:00:00Z"])
    assert res.exit_code == 0, res.output
    assert "asked for 2024-06-01T03:00:00Z .. 2024-06-01T08:00:00Z" in res.output
    assert "local time Europe/Rome" in res.output
    assert "power_high" in res.output and "blackout" not in res.output.split("events:")[1]
    assert "previous period" in res.output


def test_report_json_md_html_pdf(config: tuple[Path, str], tmp_path: Path) -> None:
    cfg, _ = config
    run = CliRunner().invoke
    res = run(cli, ["-c", str(cfg), "report", "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    m = data["meters"][0]
    assert [e["kind"] for e in m["events"]] == ["blackout", "power_high"]
    assert m["state"] == {"blackout": False, "superamento": False, "camera_stale": False}
    assert m["days"][0]["day"] == "2024-06-01" and m["timezone"] == "Europe/Rome"
    assert len(m["profile_w"]["weekend"]) == 24  # 1 June 2024 is a Saturday
    res = run(cli, ["-c", str(cfg), "report", "--format", "md"])
    assert res.exit_code == 0 and res.output.startswith("## Meter m")
    for fmt, magic in (("html", b"<!doctype html>"), ("pdf", b"%PDF")):
        out = tmp_path / f"r.{fmt}"
        res = run(cli, ["-c", str(cfg), "report", "--format", fmt, "-o", str(out)])
        assert res.exit_code == 0, res.output
        assert out.read_bytes().startswith(magic)
    assert b"data:image/png;base64," in (tmp_path / "r.html").read_bytes()


def test_report_and_analyse_errors(config: tuple[Path, str]) -> None:
    cfg, _ = config
    run = CliRunner().invoke
    res = run(cli, ["-c", str(cfg), "report", "--meter", "nope"])
    assert res.exit_code == 66 and "no such meter" in res.output
    res = run(cli, ["-c", str(cfg), "report", "--from", "2024-06-02", "--to", "2024-06-01"])
    assert res.exit_code == 65 and "is not after" in res.output
    res = run(cli, ["-c", str(cfg), "analyse", "--every", "soon"])
    assert res.exit_code == 65 and "--every 'soon'" in res.output
    assert (parse_every("5m"), parse_every("30"), parse_every("1h")) == (300, 30, 3600)


def test_analyse_prints_the_dictionary_and_stores_events(config: tuple[Path, str]) -> None:
    cfg, url = config
    res = CliRunner().invoke(cli, ["-c", str(cfg), "analyse"])
    assert res.exit_code == 0, res.output
    state = json.loads(res.output.splitlines()[0])
    assert (state["meter"], state["blackout"], state["superamento"]) == ("m", False, False)
    with open_database(url) as db:
        assert [e.kind for e in events.stored_events(db, "m")] == ["blackout", "power_high"]
        db.insert_readings([Reading("m", T0 + timedelta(minutes=600 + i), 600.0, "csv:x", 1.0, "", 0.0)
                            for i in range(10)])  # the supply goes off and stays off
    res = CliRunner().invoke(cli, ["-c", str(cfg), "analyse", "--meter", "m"])
    assert json.loads(res.output)["blackout"] is True


def test_api_state_and_events(config: tuple[Path, str]) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from smartmeter.server.api import create_app

    _, url = config
    settings = Settings(database={"url": url}, meters=[MeterSettings(id="m", resolution_kwh=0.01)],
                        auth={"open_read_networks": ["127.0.0.0/8"]})  # reads need a login, but from here
    with TestClient(create_app(settings, lambda: open_database(url)), client=("127.0.0.1", 50000)) as client:
        r = client.get("/api/meters/m/state")
        assert r.status_code == 200 and (r.json()["blackout"], r.json()["superamento"]) == (False, False)
        r = client.get("/api/meters/m/events", params={"start": "2024-06-01T03:00:00Z"})
        assert r.status_code == 200 and [e["kind"] for e in r.json()["events"]] == ["power_high"]
        assert client.get("/api/meters/nope/state").status_code == 404
        assert client.get("/api/meters/m/events", params={"start": "yesterday"}).status_code == 422


def test_worker_loop_runs_the_scheduled_analysis(config: tuple[Path, str], tmp_path: Path) -> None:
    from smartmeter.server.worker import Worker
    from smartmeter.store.local import LocalStore

    _, url = config
    settings = Settings(database={"url": url}, meters=[MeterSettings(id="m", resolution_kwh=0.01)],
                        worker={"analyse_every_s": 3600, "poll_interval_s": 0.05})
    with open_database(url) as db:
        worker = Worker(settings, db, LocalStore(tmp_path / "images"))
        thread = threading.Thread(target=worker.run)
        thread.start()
        try:
            for _ in range(1200):  # up to a minute on a loaded machine
                if events.stored_state(db, "m") is not None:
                    break
                threading.Event().wait(0.05)
        finally:
            worker.stop()
            thread.join(10)
        state = events.stored_state(db, "m")
        assert state is not None and state["superamento"] is False
        assert [e.kind for e in events.stored_events(db, "m")] == ["blackout", "power_high"]


def test_report_capture_health_for_a_camera_meter(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    settings = Settings(database={"url": url}, meters=[MeterSettings(id="cam", resolution_kwh=0.1)],
                        camera={"interval_s": 600})
    with open_database(url) as db:  # a photo every 10 minutes for 6 hours, none 02:00-03:00
        db.insert_readings([Reading("cam", T0 + timedelta(minutes=10 * i), 100 + 0.1 * (i // 3), f"image:{i}.jpg",
                                    0.9) for i in range(36) if not 12 <= i < 18])
        rep = build_report(db, settings, now=T0 + timedelta(hours=6))
    cap = rep["meters"][0]["capture"]
    assert (cap["photos_expected"], cap["photo_readings"], cap["hours_with_photos"]) == (36, 30, 5)
    assert cap["photos_seen"] == 0 and cap["unreadable_share"] is None
    assert "photos: 30 readings from photos of ~36 expected (5 hours with photos)" in render_text(rep)
    assert [e["kind"] for e in rep["meters"][0]["events"]] == ["camera_stale", "gap"]
