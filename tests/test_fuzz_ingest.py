"""Fuzzing the ways readings come in (hypothesis): JSON over HTTP, MQTT payloads, the CSV importer.

For any input: no 5xx, no exception escapes (every refusal is one of our errors with a message), and the
readings stored before are all still there, unchanged. Real parts: the FastAPI app through its TestClient, the
MQTT subscriber's message handler, the CSV importer, each on a real SQLite file.

Budget: ``FUZZ_EXAMPLES`` examples per test (default 150: a few seconds each); raise it with
``SMARTMETER_FUZZ_EXAMPLES=5000`` for a longer hunt. Found so far (all fixed, each also in a plain test):
OverflowError on times past year 9999 / before year 1 in UTC (``9999-12-31T23:59:59-01:00``), integers beyond
float range, JSON nesting (RecursionError), 4,300+ digit integers (ValueError).
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smartmeter.errors import SmartMeterError
from smartmeter.server.api import create_app
from smartmeter.server.csv_import import import_csv
from smartmeter.server.database import Database, open_database
from smartmeter.server.mqtt_ingest import MqttIngest
from smartmeter.settings import MqttSettings, Settings
from smartmeter.types import Reading

FUZZ_EXAMPLES = int(os.environ.get("SMARTMETER_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
T0 = datetime(2014, 12, 12, tzinfo=UTC)
BASELINE = [Reading("fz", T0 + timedelta(minutes=i), 100.0 + i / 100, "csv:base.csv") for i in range(5)]

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.integers(min_value=10**300, max_value=10**400),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(float), st.just(1e300), st.just(-0.0))
stamps = st.one_of(
    st.datetimes(timezones=st.sampled_from([UTC, None])).map(lambda d: d.isoformat()),
    st.datetimes(min_value=datetime(2014, 12, 12, 0, 5), max_value=datetime(2014, 12, 13)).map(
        lambda d: d.isoformat() + "Z"),
    st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00",
                     "2999-01-01T00:00:00Z", "", "Z", "2014-13-01T00:00:00Z", "2014-12-12T10:00:00+25:00"]),
    st.text(max_size=30))
json_leaf = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20))
json_values = st.recursive(json_leaf, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
    st.text(max_size=10), kids, max_size=4), max_leaves=20)
reading_like = st.fixed_dictionaries(
    {"timestamp": stamps, "contatore": st.one_of(numbers, json_values)},
    optional={"potenza": st.one_of(numbers, json_values), "extra": json_values})
bodies = st.one_of(
    reading_like.map(lambda d: json.dumps(d).encode()),
    st.lists(reading_like, min_size=0, max_size=5).map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.integers(min_value=1, max_value=6000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=300, max_value=6000).map(
        lambda n: b'{"timestamp": "2014-12-12T01:00:00Z", "contatore": 1' + b"0" * n + b"}"))


def baseline_intact(db: Database) -> bool:
    stored = {(r.timestamp, r.source): r.value_kwh for r in db.readings("fz")}
    return all(stored.get((r.timestamp, r.source)) == r.value_kwh for r in BASELINE)


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}"
    with open_database(url) as db:
        db.register_meter("fz")
        db.insert_readings(BASELINE)
    yield url


@pytest.fixture(scope="module")
def client(db_url: str) -> Iterator[TestClient]:
    mp = pytest.MonkeyPatch()
    mp.setenv("SMARTMETER_API_TOKEN", "fuzz-token")  # writes need credentials: fuzz past the auth check
    mp.delenv("SMARTMETER_API_TOKEN_FILE", raising=False)
    with TestClient(create_app(Settings(), lambda: open_database(db_url)), raise_server_exceptions=False,
                    headers={"Authorization": "Bearer fuzz-token"}) as c:
        yield c
    mp.undo()


@pytest.mark.fault("hostile API/MQTT input", proves="fuzzed bodies: never a 5xx, always a message, nothing stored "
                   "before is lost")
@FUZZ
@given(body=bodies, meter=st.sampled_from(["fz", "fz", "ghost", "bad id!", "x" * 65]))
def test_fuzz_http_readings(client: TestClient, db_url: str, body: bytes, meter: str) -> None:
    r = client.post(f"/api/meters/{meter}/readings", content=body, headers={"content-type": "application/json"})
    assert r.status_code < 500, (r.status_code, r.text[:300])
    if r.status_code >= 400:
        assert r.json()["error"] and len(r.json()["error"]) < 500
    with open_database(db_url) as db:
        assert baseline_intact(db)


@FUZZ
@given(body=st.one_of(json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=100)))
def test_fuzz_http_register_meter(client: TestClient, body: bytes) -> None:
    r = client.post("/api/meters", content=body)
    assert r.status_code < 500, (r.status_code, r.text[:300])


@pytest.fixture(scope="module")
def ingest(db_url: str) -> Iterator[MqttIngest]:
    handler = MqttIngest(Settings(mqtt=MqttSettings(enabled=True)), lambda: open_database(db_url),
                         publish_errors=False)
    yield handler
    handler._close_db()


@FUZZ
@given(payload=bodies, level=st.sampled_from(["fz", "fz", "ghost", "bad id!", ""]))
def test_fuzz_mqtt_payloads(ingest: MqttIngest, db_url: str, payload: bytes, level: str) -> None:
    outcome = ingest.handle(f"smartmeter/{level}/reading", payload)
    assert outcome.error is None or ("internal error" not in outcome.error and len(outcome.error) < 500), outcome
    with open_database(db_url) as db:
        assert baseline_intact(db)


cells = st.one_of(stamps, numbers.map(repr), st.text(alphabet=string.printable, max_size=12),
                  st.sampled_from(["", "1,5", "nan", "inf", "-1", "1e400", "2024-10-27 02:30:00",
                                   "2024-03-31 02:30:00"]))
csv_rows = st.lists(st.lists(cells, min_size=1, max_size=4), max_size=12)


@FUZZ
@given(rows=csv_rows, header=st.sampled_from(["timestamp,contatore,potenza", "timestamp;contatore;potenza",
                                              "Timestamp,Contatore", "contatore,timestamp", "x,y"]),
       zone=st.sampled_from([None, "Europe/Rome", "America/New_York"]), skip_bad=st.booleans(),
       ambiguous=st.sampled_from(["earlier", "later", "reject"]), nonexistent=st.sampled_from(["shift", "reject"]))
def test_fuzz_csv_import(db_url: str, tmp_path_factory: pytest.TempPathFactory, rows: list[list[str]], header: str,
                         zone: str | None, skip_bad: bool, ambiguous: str, nonexistent: str) -> None:
    sep = ";" if ";" in header else ","
    path: Path = tmp_path_factory.mktemp("csv") / "fuzz.csv"
    path.write_text(header + "\n" + "".join(sep.join(r) + "\n" for r in rows), encoding="utf-8")
    with open_database(db_url) as db:
        try:
            res: Any = import_csv(db, Settings(), path, "fz", skip_bad=skip_bad, timezone=zone, progress=False,
                                  ambiguous=ambiguous, nonexistent=nonexistent, chunk_size=3)
            assert res.rows >= res.ingest.accepted
        except SmartMeterError as exc:
            assert exc.message and exc.http_status < 500
        assert baseline_intact(db)
