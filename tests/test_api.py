"""The HTTP API (server.api) against a real SQLite file, through FastAPI's TestClient."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smartmeter.server.api import create_app
from smartmeter.server.database import Database, open_database
from smartmeter.server.payloads import MAX_BYTES
from smartmeter.settings import Settings, parse_settings
from smartmeter.types import Reading


def rows(start_min: int, values: list[float], power_kw: float | None = 0.5) -> list[dict[str, Any]]:
    return [{"timestamp": f"2014-12-12T10:{start_min + i:02d}:00Z", "contatore": v, "potenza": power_kw}
            for i, v in enumerate(values)]


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'readings.db'}"


TOKEN = "test-token-1234"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """A client sending the machine token (auth is on by default: see test_auth.py for the refusals)."""
    monkeypatch.setenv("SMARTMETER_API_TOKEN", TOKEN)
    monkeypatch.delenv("SMARTMETER_API_TOKEN_FILE", raising=False)
    app = create_app(Settings(), lambda: open_database(db_url))
    with TestClient(app, headers=AUTH) as c:
        yield c


def stored(db_url: str, meter_id: str) -> list[tuple[str, float, float | None, str]]:
    with open_database(db_url) as db:
        return [(r.timestamp.isoformat(), r.value_kwh, r.power_w, r.source) for r in db.readings(meter_id)]


def test_healthz(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_register_and_list_meters(client: TestClient) -> None:
    r = client.post("/api/meters")
    assert r.status_code == 201
    generated = r.json()["id"]
    assert generated.startswith("m-") and r.json()["created"] is True
    r = client.post("/api/meters", json={"id": "garage", "name": "Garage sub-meter"})
    assert r.status_code == 201 and r.json() == {"id": "garage", "created": True}
    again = client.post("/api/meters", json={"id": "garage"})  # a meter that restarts registers again
    assert again.status_code == 200 and again.json() == {"id": "garage", "created": False}
    assert client.get("/api/meters").json() == {"meters": sorted(["garage", generated])}


@pytest.mark.parametrize(("body", "needle"), [
    (b"[1]", '"id" and "name"'),
    (b'{"id": "x", "colour": "red"}', "meter.colour: unknown key"),
    (b'{"id": "../etc"}', "meter id"),
    (b'{"id": 7}', "meter.id: must be a string, got 7"),
    (b'{"name": 3}', "name"),
    (b"{", "not valid JSON"),
])
def test_register_rejects_bad_bodies(client: TestClient, body: bytes, needle: str) -> None:
    r = client.post("/api/meters", content=body)
    assert r.status_code == 400
    assert needle in r.json()["error"]
    assert client.get("/api/meters").json() == {"meters": []}


def test_post_and_get_readings(client: TestClient, db_url: str) -> None:
    client.post("/api/meters", json={"id": "meter1"})
    r = client.post("/api/meters/meter1/readings", json=rows(0, [10.0, 10.01, 10.02]))
    assert r.status_code == 201
    assert r.json() == {"accepted": 3, "duplicates": 0, "rejected": 0, "rejections": []}
    # one object works too; resending is idempotent
    r = client.post("/api/meters/meter1/readings", json=rows(3, [10.03])[0])
    assert r.status_code == 201 and r.json()["accepted"] == 1
    r = client.post("/api/meters/meter1/readings", json=rows(0, [10.0, 10.01]))
    assert r.status_code == 201 and r.json()["accepted"] == 0 and r.json()["duplicates"] == 2
    assert [(v, p, s) for _, v, p, s in stored(db_url, "meter1")] == [
        (10.0, 500.0, "api"), (10.01, 500.0, "api"), (10.02, 500.0, "api"), (10.03, 500.0, "api")]

    got = client.get("/api/meters/meter1/readings").json()
    assert got["count"] == 4
    assert got["readings"][0] == {"timestamp": "2014-12-12T10:00:00Z", "contatore": 10.0, "potenza": 0.5,
                                  "source": "api", "confidence": 1.0}
    window = client.get("/api/meters/meter1/readings",
                        params={"start": "2014-12-12T10:01:00Z", "end": "2014-12-12T11:02:00+01:00"}).json()
    assert [x["contatore"] for x in window["readings"]] == [10.01]  # start inclusive, end exclusive


def test_malformed_body_is_400_and_touches_nothing(client: TestClient, db_url: str) -> None:
    client.post("/api/meters", json={"id": "meter1"})
    client.post("/api/meters/meter1/readings", json=rows(0, [10.0, 10.01]))
    before = stored(db_url, "meter1")
    bad = rows(2, [10.02, 10.03])
    bad[1]["contatore"] = "ten"
    r = client.post("/api/meters/meter1/readings", json=bad)
    assert r.status_code == 400
    assert r.json()["error"] == 'readings[1].contatore: must be a number, got "ten"'
    for body in (b"", b"not json", b'{"timestamp": "2014-12-12T10:05:00Z"}', b"\xff"):
        r = client.post("/api/meters/meter1/readings", content=body)
        assert r.status_code == 400 and r.json()["error"]
    assert stored(db_url, "meter1") == before


def test_unknown_meter_is_404(client: TestClient, db_url: str) -> None:
    r = client.post("/api/meters/nobody/readings", json=rows(0, [1.0]))
    assert r.status_code == 404
    assert "unknown meter 'nobody'" in r.json()["error"] and "POST /api/meters" in r.json()["hint"]
    assert client.get("/api/meters/nobody/readings").status_code == 404
    assert client.get("/api/meters").json() == {"meters": []}  # not registered on the fly
    assert client.post("/api/meters/bad%20id/readings", json=rows(0, [1.0])).status_code == 400


def test_validation_rejections(client: TestClient, db_url: str) -> None:
    client.post("/api/meters", json={"id": "meter1"})
    client.post("/api/meters/meter1/readings", json=rows(0, [10.0, 10.01]))
    before = stored(db_url, "meter1")
    # every reading goes backwards: 409 with each reason, nothing stored
    r = client.post("/api/meters/meter1/readings", json=rows(2, [9.0, 9.01]))
    assert r.status_code == 409
    body = r.json()
    assert "all 2 readings of meter 'meter1' rejected" in body["error"]
    assert [x["timestamp"] for x in body["rejected"]] == ["2014-12-12T10:02:00Z", "2014-12-12T10:03:00Z"]
    assert all("backwards" in x["reason"] for x in body["rejected"])
    assert stored(db_url, "meter1") == before
    # partly rejected: 201, the good ones stored, the bad one reported (impossible power)
    r = client.post("/api/meters/meter1/readings", json=rows(2, [10.02, 10.03]) + rows(4, [10.04], power_kw=900))
    assert r.status_code == 201
    assert r.json()["accepted"] == 2 and r.json()["rejected"] == 1
    assert "above the meter maximum" in r.json()["rejections"][0]["reason"]
    assert len(stored(db_url, "meter1")) == 4


@pytest.mark.parametrize(("params", "needle"), [
    ({"start": "yesterday"}, "start: not an ISO 8601 timestamp"),
    ({"end": "2014-13-01"}, "end: not an ISO 8601"),
    ({"start": "2014-12-12T11:00:00Z", "end": "2014-12-12T10:00:00Z"}, "must be after start"),
])
def test_bad_query_bounds(client: TestClient, params: dict[str, str], needle: str) -> None:
    client.post("/api/meters", json={"id": "meter1"})
    for path in ("readings", "events", "power", "statistics"):
        r = client.get(f"/api/meters/meter1/{path}", params=params)
        assert r.status_code == 422 and needle in r.json()["error"], (path, r.text)


def test_oversized_body_is_413(client: TestClient) -> None:
    client.post("/api/meters", json={"id": "meter1"})
    r = client.post("/api/meters/meter1/readings", content=b" " * (MAX_BYTES + 1),
                    headers={"content-type": "application/json"})
    assert r.status_code == 413 and "at most" in r.json()["error"]

    def chunks() -> Iterator[bytes]:  # no content-length: the stream is cut off while reading
        for _ in range(MAX_BYTES // 65536 + 2):
            yield b" " * 65536

    r = client.post("/api/meters/meter1/readings", content=chunks())
    assert r.status_code == 413 and "over" in r.json()["error"]


def test_api_token_guards_writes(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cret-token\n")
    monkeypatch.delenv("SMARTMETER_API_TOKEN", raising=False)
    monkeypatch.setenv("SMARTMETER_API_TOKEN_FILE", str(secret))
    with TestClient(create_app(Settings(), lambda: open_database(db_url))) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-token"}):
            r = client.post("/api/meters", json={"id": "meter1"}, headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            assert r.json()["error"] == ("writing needs credentials" if not headers else "missing or wrong API token")
            assert client.post("/api/meters/meter1/readings", json=rows(0, [1.0]), headers=headers).status_code == 401
        good = {"Authorization": "Bearer s3cret-token"}
        assert client.get("/api/meters", headers=good).json() == {"meters": []}
        assert client.post("/api/meters", json={"id": "meter1"}, headers=good).status_code == 201
        assert client.post("/api/meters/meter1/readings", json=rows(0, [1.0]), headers=good).status_code == 201
        assert client.get("/api/meters/meter1/readings", headers=good).json()["count"] == 1
        # reads need credentials too (no open network configured); health is open
        assert client.get("/api/meters/meter1/readings").status_code == 401
        assert client.get("/healthz").status_code == 200


@pytest.mark.fault("database down", proves="the API answers 503 (not 500) while the database is unreachable and "
                   "heals without a restart")
def test_database_failure_is_503_and_heals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMARTMETER_API_TOKEN", TOKEN)
    blocker = tmp_path / "data"
    blocker.write_text("a file where the database folder should be")
    url = f"sqlite:///{blocker / 'readings.db'}"
    opened: list[Database] = []

    def factory() -> Database:
        db = open_database(url)
        opened.append(db)
        return db

    with TestClient(create_app(Settings(), factory), headers=AUTH) as client:
        r = client.get("/healthz")
        assert r.status_code == 503 and "cannot create the database folder" in r.json()["error"]
        assert client.post("/api/meters", json={"id": "meter1"}).status_code == 503
        blocker.unlink()  # the disk is back
        assert client.get("/healthz").status_code == 200
        assert client.post("/api/meters", json={"id": "meter1"}).status_code == 201
        # the handle breaks under the app (e.g. a lost PostgreSQL connection): 503 once, then reopened
        opened[-1].close()
        r = client.post("/api/meters/meter1/readings", json=rows(0, [1.0]))
        assert r.status_code == 503 and "database" in r.json()["error"]
        r = client.post("/api/meters/meter1/readings", json=rows(0, [1.0]))
        assert r.status_code == 201 and r.json()["accepted"] == 1
    assert len(opened) == 2


def test_openapi_lists_the_endpoints(client: TestClient) -> None:
    paths = json.loads(client.get("/openapi.json").text)["paths"]
    assert {"/healthz", "/api/meters", "/api/meters/{meter_id}/readings"} <= set(paths)


def test_smartmeter_serve_runs_the_api_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "smartmeter.yaml"
    config.write_text(f"database:\n  url: sqlite:///{tmp_path / 'readings.db'}\napi:\n  host: 127.0.0.1\n"
                      f"  port: {port}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTMETER_")}
    (tmp_path / "token").write_text(TOKEN + "\n")
    env["SMARTMETER_API_TOKEN_FILE"] = str(tmp_path / "token")
    proc = subprocess.Popen([sys.executable, "-m", "smartmeter.cli", "-c", str(config), "serve"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "server did not come up"
            time.sleep(0.1)
        assert httpx.post(f"{base}/api/meters", json={"id": "meter1"}).status_code == 401  # auth by default
        assert httpx.post(f"{base}/api/meters", json={"id": "meter1"}, headers=AUTH).status_code == 201
        r = httpx.post(f"{base}/api/meters/meter1/readings", json=rows(0, [1.0, 1.01]), headers=AUTH)
        assert r.status_code == 201 and r.json()["accepted"] == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    # uvicorn shuts down gracefully, then re-raises SIGTERM (systemd counts that as a clean stop)
    assert proc.returncode in (0, -signal.SIGTERM), out.decode()
    assert "Finished server process" in out.decode()
    assert len(stored(f"sqlite:///{tmp_path / 'readings.db'}", "meter1")) == 2


def test_smartmeter_serve_fails_fast_on_a_bad_database(tmp_path: Path) -> None:
    config = tmp_path / "smartmeter.yaml"
    config.write_text("database:\n  url: mysql://nowhere/db\n")
    r = subprocess.run([sys.executable, "-m", "smartmeter.cli", "-c", str(config), "serve"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 74 and "unsupported database url" in r.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_install_guide_settings_example_is_valid() -> None:
    guide = (Path(__file__).parent.parent / "install_server.md").read_text(encoding="utf-8")
    example = guide.split("```yaml\n", 1)[1].split("```", 1)[0]
    settings = parse_settings(example, "install_server.md")
    assert settings.mqtt.enabled and settings.database.url.startswith("sqlite:////")
    sections = set(Settings.model_fields) - {"camera"}  # the camera section belongs to the Pi
    assert sections <= set(yaml.safe_load(example)), "the example must show every server section"


HOSTILE = {
    "400 zeros (OverflowError)": b'{"timestamp": "2014-12-12T10:00:00Z", "contatore": 1' + b"0" * 400 + b"}",
    "5,001 digits (ValueError)": b'{"timestamp": "2014-12-12T10:00:00Z", "contatore": 1' + b"0" * 5000 + b"}",
    "nested 5,000 deep (RecursionError)": b"[" * 5000 + b"]" * 5000,
    "nested objects": b'{"a":' * 3000 + b"1" + b"}" * 3000,
}


@pytest.mark.fault("hostile API/MQTT input", proves="no 5xx, a short message, nothing stored before is touched")
@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_bodies_are_400_with_a_short_message(client: TestClient, db_url: str, name: str) -> None:
    client.post("/api/meters", json={"id": "meter1"})
    client.post("/api/meters/meter1/readings", json=rows(0, [10.0]))
    before = stored(db_url, "meter1")
    r = client.post("/api/meters/meter1/readings", content=HOSTILE[name])
    assert r.status_code == 400, r.text
    assert 0 < len(r.json()["error"]) < 200
    assert stored(db_url, "meter1") == before


@pytest.mark.parametrize(("ts", "needle"), [
    ("0001-01-01T00:00:00Z", "before 2000-01-01T00:00:00Z"),
    ("1999-12-31T23:59:59Z", "before 2000-01-01T00:00:00Z"),
    ("2999-01-01T00:00:00Z", "ahead of the server clock"),
])
def test_timestamps_out_of_bounds_are_refused(client: TestClient, db_url: str, ts: str, needle: str) -> None:
    client.post("/api/meters", json={"id": "meter1"})
    r = client.post("/api/meters/meter1/readings", json={"timestamp": ts, "contatore": 10.0})
    assert r.status_code == 409 and needle in r.json()["error"]
    assert r.json()["rejected"][0]["timestamp"].startswith(ts[:4])  # four-digit year, also for year 1
    assert stored(db_url, "meter1") == []


def test_absurd_first_reading_is_refused_and_later_real_ones_land(client: TestClient, db_url: str) -> None:
    client.post("/api/meters", json={"id": "meter1"})
    r = client.post("/api/meters/meter1/readings", json={"timestamp": "2014-12-12T10:00:00Z", "contatore": 1e300})
    assert r.status_code == 409 and "does not fit the meter's 8 digits" in r.json()["error"]
    r = client.post("/api/meters/meter1/readings", json=rows(1, [10.0, 10.01]))
    assert r.status_code == 201 and r.json()["accepted"] == 2


def test_openapi_shows_the_request_models(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/api/meters/{meter_id}/readings"]["post"]["requestBody"]["content"]["application/json"]
    refs = json.dumps(body["schema"])
    assert "#/components/schemas/ReadingIn" in refs
    reading = schema["components"]["schemas"]["ReadingIn"]
    assert set(reading["properties"]) == {"timestamp", "contatore", "potenza"}
    assert reading["additionalProperties"] is False and reading["required"] == ["timestamp", "contatore"]
    meter = schema["paths"]["/api/meters"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert meter == {"$ref": "#/components/schemas/MeterIn"}
    assert "MeterIn" in schema["components"]["schemas"]


def minute_series(db_url: str, n: int, meter: str = "meter1", start: datetime | None = None) -> list[Reading]:
    """``n`` readings a minute apart at a constant 1.2 kW, stored."""
    t0 = start or datetime(2014, 12, 12, tzinfo=UTC)
    rs = [Reading(meter, t0 + timedelta(minutes=i), 100 + 0.02 * i, "csv:x.csv") for i in range(n)]
    with open_database(db_url) as db:
        db.register_meter(meter)
        db.insert_readings(rs)
    return rs


def test_readings_are_paginated_with_a_cursor(client: TestClient, db_url: str) -> None:
    """No full-history answers: pages of at most `limit`, `next_cursor` to go on (the old API sent everything)."""
    minute_series(db_url, 25)
    pages, cursor = [], None
    while True:
        r = client.get("/api/meters/meter1/readings", params={"limit": 10, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        pages.append([x["timestamp"] for x in r.json()["readings"]])
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [10, 10, 5]
    every = [t for p in pages for t in p]
    assert every == sorted(set(every)) and len(every) == 25
    assert client.get("/api/meters/meter1/readings").json()["count"] == 25  # default page 1000
    window = client.get("/api/meters/meter1/readings", params={"start": "2014-12-12T00:05:00Z", "limit": 3}).json()
    assert [x["timestamp"][11:16] for x in window["readings"]] == ["00:05", "00:06", "00:07"]
    for params, needle in (({"limit": 100001}, "limit: 100001 is over the most one page holds (5000)"),
                           ({"limit": 0}, "limit:"), ({"cursor": "@@not-ours"}, "cursor: not a next_cursor")):
        r = client.get("/api/meters/meter1/readings", params=params)
        assert r.status_code == 422 and needle in r.json()["error"], r.text


def test_latest_power_summary_statistics(client: TestClient, db_url: str) -> None:
    assert client.get("/api/meters/meter1/latest").status_code == 404
    client.post("/api/meters", json={"id": "meter1"})
    assert client.get("/api/meters/meter1/latest").json() == {"meter_id": "meter1", "reading": None, "age_s": None}
    rs = minute_series(db_url, 181)  # 3 hours at 1.2 kW
    latest = client.get("/api/meters/meter1/latest").json()
    assert latest["reading"]["timestamp"] == "2014-12-12T03:00:00Z" and latest["reading"]["contatore"] == 103.6
    assert latest["age_s"] > 3600
    r = client.get("/api/meters/meter1/power", params={"start": "2014-12-11T23:00:00Z",
                                                       "end": "2014-12-12T04:00:00Z", "step": "1h"})
    body = r.json()
    assert body["t"][0] == int(datetime(2014, 12, 11, 23, tzinfo=UTC).timestamp())
    # hours outside the readings are unknown (null), never zero; inside: the register's 1.2 kW
    assert body["power_w"][0] is None and body["power_w"][4] is None
    assert body["power_w"][1:4] == pytest.approx([1200, 1200, 1200])
    assert sum(body["energy_kwh"][1:4]) == pytest.approx(rs[-1].value_kwh - rs[0].value_kwh)
    r = client.get("/api/meters/meter1/power", params={"step": "7s"})
    assert r.status_code == 422 and r.json()["error"].startswith("step: '7s' is not one of 1m, 5m")
    r = client.get("/api/meters/meter1/power", params={"start": "2000-01-01T00:00:00Z", "step": "1m"})
    assert r.status_code == 422 and "at most 5000" in r.json()["error"]
    summary = client.get("/api/meters/meter1/summary").json()
    assert summary["register_kwh"] == 103.6 and summary["today_kwh"] is None  # nothing this year
    stats = client.get("/api/meters/meter1/statistics").json()
    assert stats["readings"] == 181 and stats["energy_kwh"] == pytest.approx(3.6)
    assert stats["mean_power_w"] == pytest.approx(1200)


def test_summary_today_month_year(client: TestClient, db_url: str) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    if (now - timedelta(minutes=29)).date() != now.date():
        pytest.skip("the half hour of test data would straddle midnight")
    minute_series(db_url, 30, start=now - timedelta(minutes=29))
    with open_database(db_url) as db:  # a reading last year, long before: its energy is not today's
        db.insert_readings([Reading("meter1", now.replace(month=1, day=1, hour=0, minute=0) - timedelta(days=1),
                                    90.0, "csv:x.csv")])
    s = client.get("/api/meters/meter1/summary").json()
    assert (s["today_kwh"], s["month_kwh"], s["year_kwh"]) == pytest.approx((0.58, 0.58, 0.58))
    assert s["register_kwh"] == pytest.approx(100.58)
    midnight = now.replace(hour=0, minute=0)  # readings across midnight: the register interpolated at it
    minute_series(db_url, 11, meter="m2", start=midnight - timedelta(minutes=5))
    if midnight.day != 1:
        assert client.get("/api/meters/m2/summary").json()["today_kwh"] == pytest.approx(0.1)


def test_review_queue_and_photo(client: TestClient, db_url: str) -> None:
    from smartmeter.server import photos_repo, review_repo
    from smartmeter.server.photos_repo import PhotoRow
    from smartmeter.types import DigitValue

    ts = datetime(2014, 12, 12, 10, tzinfo=UTC)
    with open_database(db_url) as db:
        db.register_meter("cam")
        photos_repo.record(db, PhotoRow("cam_20141212T100000Z.jpg", "h1", "cam", ts, "name", "rejected", 1234.5,
                                        "01234.5", [DigitValue(1.0, 0.9), DigitValue(None, 0.1)], confidence=0.3,
                                        reason="digit 2 unreadable"))
        review_repo.open_item(db, "cam_20141212T100000Z.jpg", "cam", ts, 1234.5, "digit 2 unreadable")
    photo = client.get("/api/meters/cam/photo").json()
    assert photo["status"] == "rejected" and photo["digits"] == [[1.0, 0.9], [None, 0.1]]
    assert photo["timestamp"] == "2014-12-12T10:00:00Z" and photo["image"] == "/api/meters/cam/photo.jpg"
    queue = client.get("/api/review", params={"meter": "cam"}).json()
    assert [i["key"] for i in queue["items"]] == ["cam_20141212T100000Z.jpg"]
    for body in ({"value": "x"}, {"value": -1}, {"v": 1}, [1]):
        r = client.post("/api/review/cam_20141212T100000Z.jpg", json=body)
        assert r.status_code == 400, (body, r.text)
    assert client.post("/api/review/nope.jpg", json={"value": 1.0}).status_code == 404
    r = client.post("/api/review/cam_20141212T100000Z.jpg", json={"value": 1234.6})
    assert r.status_code == 200, r.text
    assert stored(db_url, "cam") == [("2014-12-12T10:00:00+00:00", 1234.6, None,
                                      "review:cam_20141212T100000Z.jpg")]
    assert client.get("/api/review", params={"meter": "cam"}).json()["count"] == 0
    assert client.get("/api/meters/nobody/photo").status_code == 404


def test_metrics(client: TestClient, db_url: str) -> None:
    minute_series(db_url, 5)
    text = client.get("/metrics").text
    assert 'smartmeter_readings_stored{meter="meter1"} 5' in text
    assert "smartmeter_review_queue_open 0" in text
    age = [ln for ln in text.splitlines() if ln.startswith('smartmeter_last_reading_age_seconds{meter="meter1"}')]
    assert len(age) == 1 and float(age[0].split()[-1]) > 3600
    assert "# TYPE smartmeter_photos_unreadable_ratio gauge" in text


def test_openapi_documents_the_new_endpoints(client: TestClient) -> None:
    paths = set(client.get("/openapi.json").json()["paths"])
    assert {"/api/meters/{meter_id}/latest", "/api/meters/{meter_id}/power", "/api/meters/{meter_id}/summary",
            "/api/meters/{meter_id}/statistics", "/api/meters/{meter_id}/photo", "/api/review", "/api/review/{key}",
            "/api/stream", "/api/stream/stats", "/metrics", "/api/session"} <= paths


QUERY_TEXT = st.one_of(st.text(max_size=30), st.sampled_from(
    ["", "0", "-1", "1e400", "nan", "10000000000000000000000", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00Z",
     "2014-12-12T10:00:00Z", "2999-01-01T00:00:00Z", "1m", "15m", "1h", "1d", "7d", "5", "60", "MTox", "@@"]))
GET_PATHS = ["/api/meters/{m}/readings", "/api/meters/{m}/latest", "/api/meters/{m}/power", "/api/meters/{m}/summary",
             "/api/meters/{m}/statistics", "/api/meters/{m}/events", "/api/meters/{m}/health", "/api/meters/{m}/photo",
             "/api/meters/{m}/state", "/api/review", "/api/stream/stats", "/metrics"]


@pytest.mark.fault("hostile API/MQTT input", proves="fuzzed query parameters on every read endpoint: never a 5xx, "
                   "always a message, nothing stored is changed")
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(GET_PATHS), meter=st.sampled_from(["meter1", "ghost", "bad id!", "x" * 70]),
       params=st.dictionaries(st.sampled_from(["start", "end", "limit", "cursor", "step", "interval", "window",
                                               "meter", "hours", "include_resolved"]), QUERY_TEXT, max_size=4))
def test_fuzz_read_parameters(fuzz_client: tuple[TestClient, str], path: str, meter: str,
                              params: dict[str, str]) -> None:
    client, db_url = fuzz_client
    r = client.get(path.format(m=meter), params=params)
    assert r.status_code < 500, (path, params, r.status_code, r.text[:300])
    if r.status_code >= 400:
        assert 0 < len(r.json()["error"]) < 500
    assert len(stored(db_url, "meter1")) == 30


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzzget') / 'readings.db'}"
    minute_series(url, 30)
    mp = pytest.MonkeyPatch()
    mp.setenv("SMARTMETER_API_TOKEN", TOKEN)
    with TestClient(create_app(Settings(), lambda: open_database(url)), headers=AUTH,
                    raise_server_exceptions=False) as c:
        yield c, url
    mp.undo()
