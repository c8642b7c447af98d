"""Fuzzing the whole HTTP API against its own OpenAPI schema (schemathesis, in-process on the ASGI app).

Every operation ``/openapi.json`` lists but the endless live stream, with valid and invalid parameters and
bodies, as the global token (admin), a per-meter token of another meter, and nobody: never a 5xx, and the
readings stored before are all still there after (count and checksum). ``tests/test_fuzz_ingest.py`` hunts
the ingest bodies byte by byte; here the breadth is the point: every path, query parameter and body schema.

Budget: ``SMARTMETER_FUZZ_EXAMPLES`` cases (default 250: about 20 s here; a 4000-case hunt took 3 min).
Found so far: no 5xx (the ingest ones ``test_fuzz_ingest.py`` found were fixed before this test existed).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smartmeter.server import auth
from smartmeter.server.api import create_app
from smartmeter.server.database import open_database
from smartmeter.settings import MeterSettings, Settings
from smartmeter.types import Reading

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the dev extra: pip install -e .[dev]")
from schemathesis import GenerationMode  # noqa: E402

ADMIN = "fuzz-admin-token"
EXAMPLES = int(os.environ.get("SMARTMETER_FUZZ_EXAMPLES", "250"))
PHOTOS = Path(__file__).resolve().parent / "resources" / "photos"
T0 = datetime(2026, 11, 30, tzinfo=UTC)
BASELINE = [Reading("fz", T0 + timedelta(minutes=5 * i), 1000.0 + i / 50, "csv:base.csv") for i in range(600)]
ENDLESS = "/api/stream"  # an SSE stream runs until the client leaves: its parameters are tested in test_stream


def checksum(url: str) -> tuple[int, str]:
    """Count and SHA-256 of the baseline readings as stored (meter, time, value, source)."""
    with open_database(url) as db:
        rows = sorted((r.meter_id, r.timestamp.isoformat(), repr(r.value_kwh), r.source)
                      for r in db.readings("fz") if r.source == "csv:base.csv")
    return len(rows), hashlib.sha256(repr(rows).encode()).hexdigest()


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FastAPI, str, str]]:
    """The app on a real SQLite file holding the baseline; (app, database URL, a per-meter token of 'other')."""
    monkeypatch.setenv("SMARTMETER_API_TOKEN", ADMIN)
    monkeypatch.delenv("SMARTMETER_API_TOKEN_FILE", raising=False)
    url = f"sqlite:///{tmp_path / 'readings.db'}"
    (tmp_path / "profile").mkdir()
    shutil.copy(PHOTOS / "meter.yaml", tmp_path / "profile" / "meter.yaml")
    shutil.copy(PHOTOS / "reference.jpg", tmp_path / "profile" / "reference.jpg")
    with open_database(url) as db:
        for meter in ("fz", "other"):
            db.register_meter(meter)
        db.insert_readings(BASELINE)
        auth.add_user(db, "anna", "correct horse")
        _, token = auth.create_token(db, ["other"], "fuzz-other")
    settings_ = Settings(meters=[MeterSettings(id="fz", profile=tmp_path / "profile" / "meter.yaml")],
                         store={"local": {"root": tmp_path / "images"}})
    yield create_app(settings_, lambda: open_database(url)), url, token


def test_fuzz_every_operation_never_5xx_and_keeps_the_readings(api: tuple[FastAPI, str, str]) -> None:
    app, url, token = api
    before = checksum(url)
    assert before[0] == len(BASELINE)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path=ENDLESS)
    assert len(list(schema.get_all_operations())) >= 25  # the schema lists the whole API
    cases = st.one_of(schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE))
    who = st.sampled_from([{"Authorization": f"Bearer {ADMIN}"}, {"Authorization": f"Bearer {token}"}, {}])
    seen: dict[str, set[int]] = {}
    photo = (PHOTOS / "reference.jpg").read_bytes()
    first = schemathesis.openapi.from_asgi("/openapi.json", app)["/api/meters/{meter_id}/setup/photo"]["POST"]
    setup = first.Case(path_parameters={"meter_id": "fz"}, body=photo, media_type="image/jpeg")
    assert setup.call(headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200  # setup routes go deep

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
    @given(case=cases, headers=who, known=st.booleans())
    def fuzz(case: Any, headers: dict[str, str], known: bool) -> None:
        if known:  # half the cases name a stored meter, to get past the 404s into the real work
            if "meter_id" in (case.path_parameters or {}):
                case.path_parameters["meter_id"] = "fz"
            if isinstance(case.query, dict) and "meter" in case.query:
                case.query["meter"] = "fz"
        response = case.call(headers=headers)
        seen.setdefault(case.operation.label, set()).add(response.status_code)
        assert response.status_code < 500, (case.operation.label, case.path_parameters, case.query, case.body,
                                            response.text[:500])

    fuzz()
    assert checksum(url) == before  # nothing stored before the fuzz was lost or changed
    assert len(seen) >= 20, sorted(seen)  # the fuzz reached most operations, not one
    assert any(code < 300 for codes in seen.values() for code in codes)  # and some of it succeeded
