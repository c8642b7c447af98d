"""The SSE live stream and its statistics (server.web.stream) on a real uvicorn server and a real SQLite file."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest
from web_live import live_server

from smartmeter.server.api import create_app
from smartmeter.server.database import open_database, to_ms
from smartmeter.settings import MeterSettings, Settings
from smartmeter.types import Reading

TOKEN = "stream-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = datetime.now(UTC).replace(second=0, microsecond=0)
START = NOW - timedelta(hours=2)
SPIKES = {30, 31, 32}  # minutes (from START) at 5 kW; the rest at 1 kW


def register_series() -> list[Reading]:
    """A reading every minute for two hours up to now: 1 kW, three minutes at 5 kW."""
    out, kwh = [], 1000.0
    for i in range(121):
        out.append(Reading("home", START + timedelta(minutes=i), kwh, "api"))
        kwh += (5.0 if i in SPIKES else 1.0) / 60
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('stream') / 'readings.db'}"
    with open_database(url) as db:
        db.register_meter("home")
        db.register_meter("empty")
        db.insert_readings(register_series())
    mp = pytest.MonkeyPatch()
    mp.setenv("SMARTMETER_API_TOKEN", TOKEN)
    settings = Settings(meters=[MeterSettings(id="home", resolution_kwh=0.001)], web={"heartbeat_s": 0.3})
    with live_server(create_app(settings, lambda: open_database(url))) as base:
        yield base
    mp.undo()


def events(base: str, params: dict[str, Any], n: int, headers: dict[str, str] | None = None,
           timeout: float = 30) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """The first ``n`` power events (data, ids) and the comment lines seen before them."""
    data: list[dict[str, Any]] = []
    ids: list[str] = []
    comments: list[str] = []
    with httpx.stream("GET", base + "/api/stream", params=params, headers={**AUTH, **(headers or {})},
                      timeout=timeout) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith(":"):
                comments.append(line)
            elif line.startswith("id: "):
                ids.append(line[4:])
            elif line.startswith("data: "):
                data.append(json.loads(line[6:]))
                if len(data) == n:
                    break
    return data, ids, comments


def test_replay_averages_each_interval_and_resumes(server: str) -> None:
    start = START + timedelta(minutes=29, seconds=50)
    t0 = time.monotonic()
    got, ids, _ = events(server, {"meter": "home", "interval": "5", "start": start.isoformat()}, 4)
    took = time.monotonic() - t0
    assert 13 <= took < 25, f"replay is paced one interval per interval: {took:.1f} s"  # 3 waits of 5 s
    assert [g["start"] for g in got] == [(start + timedelta(seconds=5 * k)).strftime("%Y-%m-%dT%H:%M:%SZ")
                                         for k in range(4)]
    assert ids == [str(to_ms(start) + 5000 * (k + 1)) for k in range(4)]
    # 10 s before minute 30 at 1 kW, then the 5 kW minute: the average follows the register exactly
    assert [round(g["power_w"]) for g in got] == [1000, 1000, 5000, 5000]
    assert got[2]["energy_kwh"] == pytest.approx(5000 * 5 / 3.6e6, rel=1e-6)
    assert not any(g["estimated"] for g in got)
    # Last-Event-ID: a reconnecting client goes on after the last event it saw
    again, ids2, _ = events(server, {"meter": "home", "interval": "5"}, 1, headers={"Last-Event-ID": ids[-1]})
    assert ids2 == [str(int(ids[-1]) + 5000)] and again[0]["start"] == got[-1]["end"]


def test_start_index_is_seconds_since_midnight(server: str) -> None:
    since_midnight = (START + timedelta(minutes=40)) - NOW.replace(hour=0, minute=0)
    if since_midnight.total_seconds() < 0:
        pytest.skip("the test data starts before today's midnight (run between 00:00 and 01:20 UTC)")
    got, _, _ = events(server, {"meter": "home", "interval": "1", "start_index": int(since_midnight.total_seconds())},
                       2)
    assert got[0]["start"] == (START + timedelta(minutes=40)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert round(got[0]["power_w"]) == 1000


def test_live_stream_and_heartbeats(server: str) -> None:
    """Live: each event is the interval that just ended; the readings stop at the minute before, so the power is
    the latest estimate, marked so. A 60 s interval is idle long enough to see the heartbeats."""
    got, ids, _ = events(server, {"meter": "home", "interval": "1"}, 2)
    assert int(ids[1]) - int(ids[0]) == 1000 and int(ids[1]) <= time.time() * 1000 + 100
    assert all(g["estimated"] and g["power_w"] is not None for g in got) or all(not g["estimated"] for g in got)
    comments: list[str] = []
    with httpx.stream("GET", server + "/api/stream", params={"meter": "home", "interval": "60"}, headers=AUTH,
                      timeout=10) as r:
        for line in r.iter_lines():
            if line == ": heartbeat":
                comments.append(line)
                if len(comments) == 2:
                    break
    assert comments == [": heartbeat", ": heartbeat"]


@pytest.mark.parametrize(("params", "status", "needle"), [
    ({"meter": "home", "interval": "7"}, 422, "interval: '7' is not one of the allowed intervals 1, 5, 10, 15"),
    ({"meter": "ghost", "interval": "5"}, 404, "unknown meter 'ghost'; meters: empty, home"),
    ({"interval": "5"}, 422, "meter: missing; meters: empty, home"),
    ({"meter": "home", "start": "yesterday"}, 422, "start: not an ISO 8601"),
    ({"meter": "home", "start": "2999-01-01T00:00:00Z"}, 422, "in the future"),
    ({"meter": "home", "start_index": "90000"}, 422, "start_index: '90000' is not 0..86399"),
])
def test_bad_stream_requests_name_what_is_allowed(server: str, params: dict[str, str], status: int,
                                                  needle: str) -> None:
    r = httpx.get(server + "/api/stream", params=params, headers=AUTH, timeout=10)
    assert r.status_code == status and needle in r.json()["error"], r.text
    assert httpx.get(server + "/api/stream", params={"meter": "home"}).status_code == 401


def test_stream_stats(server: str) -> None:
    r = httpx.get(server + "/api/stream/stats", params={"meter": "home", "window": "6h", "interval": "60"},
                  headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    s = r.json()["power_w"]
    expected = np.array([5000.0 if i in SPIKES else 1000.0 for i in range(120)])
    assert s["n"] == 120 and s["mean"] == pytest.approx(expected.mean())
    assert s["std"] == pytest.approx(expected.std())
    assert (s["q1"], s["median"], s["q3"], s["iqr"]) == pytest.approx((1000, 1000, 1000, 0))
    assert s["outliers"] == 3 and s["outlier_share"] == pytest.approx(3 / 120)
    r = httpx.get(server + "/api/stream/stats", params={"meter": "home", "window": "2y"}, headers=AUTH)
    assert r.status_code == 422 and "window: '2y' is not one of 15m, 1h, 6h, 24h, 7d" in r.json()["error"]
    empty = httpx.get(server + "/api/stream/stats", params={"meter": "empty"}, headers=AUTH).json()
    assert empty["power_w"]["n"] == 0 and empty["power_w"]["mean"] is None
