"""The JSON reading shape shared by the HTTP API and MQTT (server.payloads)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from smartmeter.errors import InputError
from smartmeter.server.payloads import (
    MAX_BYTES,
    MAX_READINGS,
    check_meter_id,
    decode_json,
    parse_body,
    parse_readings,
    reading_to_json,
)


def test_one_object_becomes_one_reading_with_power_in_watts() -> None:
    body = b'{"timestamp": "2014-12-12T00:32:00Z", "contatore": 0.614, "potenza": 1.25}'
    [r] = parse_body(body, "meter1", "api")
    assert r.meter_id == "meter1"
    assert r.timestamp == datetime(2014, 12, 12, 0, 32, tzinfo=UTC)
    assert r.value_kwh == pytest.approx(0.614)
    assert r.power_w == pytest.approx(1250.0)
    assert r.source == "api"
    assert r.confidence == 1.0


def test_list_keeps_body_order_and_potenza_is_optional() -> None:
    body = json.dumps([
        {"timestamp": "2014-12-12T00:33:00Z", "contatore": 0.7},
        {"timestamp": "2014-12-12T00:32:00+01:00", "contatore": 0.6, "potenza": None},
        {"timestamp": "2014-12-12 00:34:00", "contatore": 1, "potenza": 0},
    ])
    readings = parse_body(body, "m-2.a_b", "mqtt")
    assert [r.value_kwh for r in readings] == [0.7, 0.6, 1.0]
    assert [r.power_w for r in readings] == [None, None, 0.0]
    # offsets are converted to UTC, naive timestamps are taken as UTC
    assert readings[1].timestamp == datetime(2014, 12, 11, 23, 32, tzinfo=UTC)
    assert readings[2].timestamp == datetime(2014, 12, 12, 0, 34, tzinfo=UTC)
    assert readings[1].timestamp.utcoffset() == timedelta(0)


@pytest.mark.parametrize(("body", "needle"), [
    (b"", "empty"),
    (b"   \n", "empty"),
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b'{"timestamp": "2014-12-12T00:32:00Z", "contatore": NaN}', "NaN"),
    (b'{"timestamp": "2014-12-12T00:32:00Z", "contatore": Infinity}', "Infinity"),
    (b'{"timestamp": "2014-12-12T00:32:00Z", "contatore": 1e400}', "contatore: must be a finite number"),
    (b'"just a string"', "got str"),
    (b"42", "got int"),
    # issue 12: these three were a 500 (OverflowError, ValueError, RecursionError) before the pydantic models
    (b'{"timestamp": "2014-12-12T00:32:00Z", "contatore": 1' + b"0" * 400 + b"}",
     "reading.contatore: must be a finite number, got 1000000000000000000000000000000000000..."),
    (b'{"timestamp": "2014-12-12T00:32:00Z", "contatore": 1' + b"0" * 5000 + b"}", "number out of range"),
    (b"[" * 5000 + b"]" * 5000, "recursion limit exceeded"),
    (b'{"timestamp": "2014-12-12T00:32:00Z", "contatore": 1, "x' + b"y" * 5000 + b'": 1}', "unknown key"),
    (b"[]", "empty list"),
    (b"[[]]", "readings[0]: must be an object"),
    (b'[{"timestamp": "2014-12-12T00:32:00Z", "contatore": 1}, 7]', "readings[1]: must be an object"),
    (b'{"contatore": 1}', "reading.timestamp: missing"),
    (b'{"timestamp": null, "contatore": 1}', "reading.timestamp: must be a string, got null"),
    (b'{"timestamp": 1418344320, "contatore": 1}', "reading.timestamp: must be a string, got 1418344320"),
    (b'{"timestamp": "yesterday", "contatore": 1}', "reading.timestamp: not an ISO 8601 timestamp: 'yesterday'"),
    (b'{"timestamp": "2014-12-12T00:32:00Z"}', "reading.contatore: missing"),
    (b'{"timestamp": "2014-12-12T00:32:00Z", "contatore": null}', "reading.contatore: must be a number, got null"),
    (b'{"timestamp": "2014-12-12T00:32:00Z", "contatore": "0.614"}',
     'reading.contatore: must be a number, got "0.614"'),
    (b'{"timestamp": "2014-12-12T00:32:00Z", "contatore": true}', "reading.contatore: must be a number, got true"),
    (b'{"timestamp": "2014-12-12T00:32:00Z", "contatore": -0.1}', "reading.contatore: must be >= 0, got -0.1"),
    (b'{"timestamp": "2014-12-12T00:32:00Z", "contatore": 1, "potenza": "x"}', "reading.potenza: must be a number"),
    (b'{"timestamp": "2014-12-12T00:32:00Z", "contatore": 1, "potenza": -2}', "reading.potenza: must be >= 0"),
    (b'{"timestamp": "2014-12-12T00:32:00Z", "contatore": 1, "contator": 2}', "reading.contator: unknown key"),
    (b'[{"timestamp": "2014-12-12T00:32:00Z", "contatore": 1}, {"timestamp": "2014-12-12T00:33:00Z", '
     b'"contatore": {"v": 1}}]', 'readings[1].contatore: must be a number, got {"v": 1}'),
])
def test_malformed_bodies_name_the_problem(body: bytes, needle: str) -> None:
    with pytest.raises(InputError) as exc:
        parse_body(body, "meter1", "api")
    assert needle in str(exc.value)
    assert exc.value.http_status == 400 and exc.value.exit_code == 65
    assert len(str(exc.value)) < 300  # long values are cut


def test_one_bad_item_rejects_the_whole_body() -> None:
    good = {"timestamp": "2014-12-12T00:32:00Z", "contatore": 1.0}
    with pytest.raises(InputError, match=r"readings\[2\]\.potenza"):
        parse_readings([good, good, {**good, "potenza": "high"}], "meter1", "api")


def test_limits() -> None:
    item = {"timestamp": "2014-12-12T00:32:00Z", "contatore": 1.0}
    assert len(parse_readings([item] * MAX_READINGS, "m", "api")) == MAX_READINGS
    with pytest.raises(InputError, match="at most 10000 per request"):
        parse_readings([item] * (MAX_READINGS + 1), "m", "api")
    with pytest.raises(InputError, match=f"at most {MAX_BYTES} are accepted"):
        decode_json(b" " * (MAX_BYTES + 1))


@pytest.mark.parametrize("bad", ["", "a/b", "../x", "a b", "x" * 65, "città", "+", "#"])
def test_meter_ids_are_checked(bad: str) -> None:
    with pytest.raises(InputError, match="meter id"):
        check_meter_id(bad)
    with pytest.raises(InputError, match="meter id"):
        parse_readings({"timestamp": "2014-12-12T00:32:00Z", "contatore": 1}, bad, "api")


def test_reading_to_json_round_trips() -> None:
    body = [{"timestamp": "2014-12-12T00:32:00Z", "contatore": 0.614, "potenza": 0.25},
            {"timestamp": "2014-12-12T00:33:00.500000Z", "contatore": 0.62, "potenza": None}]
    readings = parse_readings(body, "meter1", "api")
    assert [reading_to_json(r) for r in readings] == body
    again = parse_readings([reading_to_json(r) for r in readings], "meter1", "api")
    assert again == readings


def test_timestamp_with_other_offset_is_normalised() -> None:
    [r] = parse_readings({"timestamp": "2014-12-12T02:32:00+02:00", "contatore": 3}, "m", "api")
    assert r.timestamp == datetime(2014, 12, 12, 0, 32, tzinfo=UTC)


def test_long_meter_ids_are_cut_in_the_message() -> None:
    with pytest.raises(InputError) as exc:
        check_meter_id("y" * 60_000)
    assert len(str(exc.value)) < 120 and "yyy..." in str(exc.value)


def test_one_formatter_names_field_value_and_line_for_profiles_too(tmp_path: Path) -> None:
    from smartmeter.errors import ConfigError
    from smartmeter.ocr.profile import load_profile

    path = tmp_path / "p.yaml"
    path.write_text("kind: drum\ndigits: [[0, 0, 10, 10]]\ndecimals: -1\nmin_confidence: 0.5\n")
    with pytest.raises(ConfigError) as exc:
        load_profile(path)
    assert f"{path}:3: decimals: must be >= 0, got -1" in str(exc.value)
    path.write_text("kind: drum\ndigits: [[0, 0, 10, 10]]\ncolour: " + "z" * 500 + "\n")
    with pytest.raises(ConfigError, match=r"p.yaml:3: colour: unknown key$"):
        load_profile(path)
