"""A tiny demo end to end (a few hours, real OCR, worker, import and report), and the step plumbing."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from web_live import free_port

from smartmeter.cli import cli
from smartmeter.errors import InputError
from smartmeter.simulator.demo import (
    STEPS,
    Demo,
    StepSkipped,
    accuracy_lines,
    demo_settings,
    fresh_folder,
    match_events,
    run_demo,
    serve_dashboard,
)
from smartmeter.simulator.events import Event
from smartmeter.simulator.meter_render import Truth


def test_tiny_demo_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    res = CliRunner().invoke(cli, ["demo", "--out", str(out), "--days", "0.25", "--every", "300", "--no-serve"])
    assert res.exit_code == 0, res.output
    text = res.output
    for step in ("household", "camera", "import", "worker", "accuracy", "report"):
        assert f"] {step}:" in text
    assert "SKIPPED" not in text, text
    assert "360 rows -> meter house1: 360 accepted" in text
    assert "Meter house1: 360 readings" in text and "Meter sim1:" in text
    assert "injected events vs anomalies found:" in text
    assert "blackout" in text and "OCR read a value:" in text
    for f in ("data.csv", "events.json", "events.csv", "truth.csv", "profile/profile.yaml", "smartmeter.db"):
        assert (out / f).exists(), f
    photos = list((out / "images").glob("*_sim1.jpg"))
    assert 40 <= len(photos) <= 73  # 6 h every 5 min, minus the stale-camera window
    # a second run starts from a fresh folder
    assert "dashboard: http" not in text  # --no-serve: the command ends after the steps
    serves_the_dashboard(out)
    again = CliRunner().invoke(cli, ["demo", "--out", str(out), "--days", "0.1", "--every", "600", "--no-serve"])
    assert again.exit_code == 0, again.output
    assert len(list((out / "images").glob("*.jpg"))) <= 15


def serves_the_dashboard(out: Path) -> None:
    """What ``demo`` ends with (without --no-serve): the dashboard's URL printed and served on the demo's data,
    viewing open on loopback, until the stop event (Ctrl-C in the command)."""
    lines: list[str] = []
    stop = threading.Event()
    port = free_port()
    thread = threading.Thread(target=serve_dashboard, args=(demo_settings(out), "127.0.0.1", port, stop,
                                                             lines.append), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not lines and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert lines and lines[0].startswith(f"dashboard: http://127.0.0.1:{port}/"), lines
        base = f"http://127.0.0.1:{port}"
        page = httpx.get(base + "/", timeout=10)
        assert page.status_code == 200 and '<option value="sim1">' in page.text  # no login on loopback
        meters = httpx.get(base + "/api/meters", timeout=10).json()["meters"]
        assert sorted(meters) == ["house1", "sim1"]
        readings = httpx.get(base + "/api/meters/house1/readings", params={"limit": 5}, timeout=10).json()
        assert readings["count"] == 5
        invoice = httpx.get(base + "/meters/house1/invoice", params={"period": "2024-07-01"}, timeout=10)
        assert invoice.status_code == 200 and '<table class="invoice-lines">' in invoice.text
        refused = httpx.post(base + "/api/meters/house1/readings", json=[], timeout=10)
        assert refused.status_code == 401  # writes still need a login
    finally:
        stop.set()
        thread.join(15)
    assert not thread.is_alive()
    taken = httpx_fails(f"http://127.0.0.1:{port}/healthz")
    assert taken, "the dashboard still answers after the stop event"


def httpx_fails(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
    except httpx.TransportError:
        return True
    return False


def test_demo_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(InputError):
        fresh_folder(tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "precious"


def test_a_missing_part_is_reported_as_skipped(tmp_path: Path) -> None:
    def needs_missing(d: Demo) -> None:
        raise StepSkipped("server.dashboard is not available")

    lines: list[str] = []
    d = Demo(tmp_path / "d", demo_settings(tmp_path / "d"), days=0.1, echo=lines.append)
    status = run_demo(d, [STEPS[0], ("dashboard", "serve the dashboard", needs_missing)])
    assert status == {"household": "ok", "dashboard": "skipped: server.dashboard is not available"}
    assert any("SKIPPED: server.dashboard" in x for x in lines)
    assert (tmp_path / "d" / "data.csv").exists()


def _truth(value: float) -> Truth:
    return Truth(datetime(2024, 1, 1, tzinfo=UTC), value, (), f"{value:.1f}", value, (0, 0), 1.0, False, False)


def test_accuracy_counts() -> None:
    truth = {"a": _truth(10.0), "b": _truth(10.1), "c": _truth(10.2), "d": _truth(10.3)}
    outcomes = [("a", 10.0, 10.0, "published"), ("b", 10.2, None, "held"), ("c", 19.2, None, "rejected"),
                ("d", None, None, "read"), ("zz", 1.0, 1.0, "published")]
    lines = accuracy_lines(outcomes, truth, 0.1)
    assert lines[0].startswith("photos with ground truth: 4")
    assert "OCR read a value: 3/4 (75.0%); exact: 1/4 (25.0%); off by one last-digit step: 1/4 (25.0%); " \
           "wrong by more: 1/4 (25.0%)" in lines[1]
    assert "published after validation: 1/4 (25.0%); exact: 1/1 (100.0%)" in lines[2]


def test_match_events() -> None:
    t = datetime(2024, 1, 1, tzinfo=UTC)
    evs = [Event("blackout", t, t + timedelta(hours=1)), Event("stale_camera", t + timedelta(hours=3),
                                                               t + timedelta(hours=4))]
    report = {"meters": [{"meter": "m", "events": [
        {"kind": "blackout", "start": "2024-01-01T00:10:00Z", "end": "2024-01-01T00:50:00Z"},
        {"kind": "stale_camera", "start": "2024-01-01T05:00:00Z", "end": "2024-01-01T06:00:00Z"}]}]}
    lines = match_events(evs, report)
    assert lines[0].endswith("-> m:blackout") and lines[1].endswith("-> NOT FOUND")
