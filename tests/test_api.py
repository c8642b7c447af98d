"""The HTTP API (server.api) against a real SQLite file, through FastAPI's TestClient."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from local_servers import clean_env, free_port, smartmeter_serve

from smartmeter.server.api import create_app
from smartmeter.server.database import Database, open_database
from smartmeter.server.payloads import MAX_BYTES
from smartmeter.settings import Settings, parse_settings


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
    (tmp_path / "token").write_text(TOKEN + "\n")
    env = clean_env(SMARTMETER_API_TOKEN_FILE=str(tmp_path / "token"))
    log = tmp_path / "serve.log"
    with smartmeter_serve(config, port, env, log, timeout=20) as proc:
        base = f"http://127.0.0.1:{port}"
        assert httpx.post(f"{base}/api/meters", json={"id": "meter1"}).status_code == 401  # auth by default
        assert httpx.post(f"{base}/api/meters", json={"id": "meter1"}, headers=AUTH).status_code == 201
        r = httpx.post(f"{base}/api/meters/meter1/readings", json=rows(0, [1.0, 1.01]), headers=AUTH)
        assert r.status_code == 201 and r.json()["accepted"] == 2
    out = log.read_text()
    # uvicorn shuts down gracefully, then re-raises SIGTERM (systemd counts that as a clean stop)
    assert proc.returncode in (0, -signal.SIGTERM), out
    assert "Finished server process" in out
    assert len(stored(f"sqlite:///{tmp_path / 'readings.db'}", "meter1")) == 2


def test_smartmeter_serve_fails_fast_on_a_bad_database(tmp_path: Path) -> None:
    config = tmp_path / "smartmeter.yaml"
    config.write_text("database:\n  url: mysql://nowhere/db\n")
    r = subprocess.run([sys.executable, "-m", "smartmeter.cli", "-c", str(config), "serve"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 74 and "unsupported database url" in r.stderr


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
    # 1.8e305 kW is a finite float, but stored in W it overflowed to inf, and the rejection echoing it was a 500
    # (found by tests/test_fuzz_api.py)
    "power that overflows in W": b'[{"contatore": 0.0, "timestamp": "2000-01-01T00:00:00Z", '
                                 b'"potenza": 1.797693134862316e+305}]',
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

