"""Readings sent by meters without a camera: the JSON shape shared by the HTTP API and MQTT.

One reading is ``{"timestamp": "2014-12-12T00:32:00Z", "contatore": 0.614, "potenza": 0.0}``: the register in
kWh (``contatore``), the power in kW (``potenza``, optional, stored as ``power_w`` in W) and when it was taken
(ISO 8601; without an offset it is taken as UTC). A body may also be a list of such objects. The names are those of
the CSV import (``timestamp,contatore,potenza``), so a meter can send the same record whichever way it talks.

Parsing only checks the shape; anything malformed is one ``InputError`` naming the field, e.g.
``readings[3].contatore: must be a number, got "abc"``. Whether a reading is plausible (register going backwards,
impossible power) is decided by ``server.ingest``, which ``submit_readings`` calls for the API and MQTT alike, so
every way in is validated the same as the CSV import.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from smartmeter.domain import check_meter_id
from smartmeter.errors import InputError, NotFoundError, ValidationRejected
from smartmeter.server.ingest import IngestReport, ingest_readings
from smartmeter.server.storage import Database
from smartmeter.settings import Settings
from smartmeter.types import Reading, parse_timestamp

log = logging.getLogger(__name__)

FIELDS = ("timestamp", "contatore", "potenza")
MAX_READINGS = 10_000  # one body; a meter catching up after an outage sends a day of minutes (1440) at most
MAX_BYTES = 2_000_000  # about 25 bytes per reading above MAX_READINGS, with room for whitespace


def _reject_constant(name: str) -> float:
    raise InputError(f"JSON constant {name} is not a number")


def decode_json(body: bytes | str) -> Any:
    """Decode a JSON body, rejecting NaN/Infinity, bodies over MAX_BYTES and bytes that are not UTF-8."""
    if len(body) > MAX_BYTES:
        raise InputError(f"body is {len(body)} bytes; at most {MAX_BYTES} are accepted")
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"body is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    if not body.strip():
        raise InputError("body is empty; expected a JSON object or a list of objects")
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc


def _show(value: Any) -> str:
    """A short JSON rendering of a bad value for an error message."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(item: dict[str, Any], key: str, where: str, *, required: bool) -> float | None:
    value = item.get(key)
    if value is None:
        if required:
            raise InputError(f"{where}.{key}: missing" if key not in item else f"{where}.{key}: must not be null")
        return None
    # bool is an int in Python, but true/false is never a meter value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{where}.{key}: must be a number, got {_show(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise InputError(f"{where}.{key}: must be a finite number, got {value!r}")
    if number < 0:
        raise InputError(f"{where}.{key}: must be >= 0, got {value!r}")
    return number


def parse_reading(item: Any, meter_id: str, source: str, where: str = "reading") -> Reading:
    """One JSON object → a Reading of ``meter_id`` (power kW → W). ``where`` prefixes error messages."""
    if not isinstance(item, dict):
        got = "a list" if isinstance(item, list) else _show(item)
        raise InputError(f"{where}: must be an object with timestamp, contatore, potenza; got {got}")
    unknown = sorted(str(k) for k in item if k not in FIELDS)
    if unknown:
        raise InputError(f"{where}: unknown field {unknown[0]!r} (expected {', '.join(FIELDS)})")
    ts = item.get("timestamp")
    if ts is None:
        raise InputError(f"{where}.timestamp: missing")
    if not isinstance(ts, str):
        raise InputError(f"{where}.timestamp: must be an ISO 8601 string, got {_show(ts)}")
    try:
        timestamp = parse_timestamp(ts)
    except InputError as exc:
        raise InputError(f"{where}.timestamp: {exc.message}") from exc
    register = _number(item, "contatore", where, required=True)
    power_kw = _number(item, "potenza", where, required=False)
    assert register is not None
    return Reading(meter_id=meter_id, timestamp=timestamp, value_kwh=register, source=source,
                   power_w=None if power_kw is None else power_kw * 1000.0)


def parse_readings(data: Any, meter_id: str, source: str) -> list[Reading]:
    """A decoded JSON value (one object or a list of objects) → Readings of ``meter_id``, in body order.

    All or nothing: one malformed item rejects the whole body, so a sender never has to guess which part landed.
    """
    check_meter_id(meter_id)
    if isinstance(data, dict):
        return [parse_reading(data, meter_id, source)]
    if not isinstance(data, list):
        raise InputError(f"body must be a JSON object or a list of objects, got {type(data).__name__}")
    if not data:
        raise InputError("body is an empty list; expected at least one reading")
    if len(data) > MAX_READINGS:
        raise InputError(f"body holds {len(data)} readings; at most {MAX_READINGS} per request")
    return [parse_reading(item, meter_id, source, f"readings[{i}]") for i, item in enumerate(data)]


def parse_body(body: bytes | str, meter_id: str, source: str) -> list[Reading]:
    """Raw JSON bytes (HTTP body, MQTT payload) → Readings; every failure is one InputError."""
    return parse_readings(decode_json(body), meter_id, source)


def reading_to_json(reading: Reading) -> dict[str, Any]:
    """The inverse of ``parse_reading``: a Reading in the same JSON shape (power back in kW)."""
    return {
        "timestamp": reading.timestamp.strftime("%Y-%m-%dT%H:%M:%SZ") if reading.timestamp.microsecond == 0
        else reading.timestamp.isoformat().replace("+00:00", "Z"),
        "contatore": reading.value_kwh,
        "potenza": None if reading.power_w is None else reading.power_w / 1000.0,
    }


class ReadingsRejected(ValidationRejected):
    """Every reading of a body was rejected by validation; ``details`` lists each with its reason."""

    def __init__(self, message: str, details: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.details = details


def submit_readings(db: Database, settings: Settings, meter_id: str, readings: list[Reading]) -> IngestReport:
    """Store parsed readings of a registered meter through the one validation path (``smartmeter.server.ingest``).

    Raises NotFoundError for a meter that was never registered and ReadingsRejected when validation rejected
    every reading (nothing new was stored). Duplicates of stored readings count as accepted-before, not rejected.
    """
    if not db.meter_exists(meter_id):
        raise NotFoundError(f"unknown meter {meter_id!r}", hint="register it first: POST /api/meters")
    report = ingest_readings(db, settings, readings)
    if report.rejected and not report.accepted and not report.duplicates:
        details = [{**reading_to_json(r), "reason": reason} for r, reason in report.rejected]
        first = details[0]
        raise ReadingsRejected(f"all {len(details)} readings of meter {meter_id!r} rejected by validation; "
                               f"first: {first['timestamp']}: {first['reason']}", details)
    if report.rejected:
        log.info("meter %s: %d readings rejected by validation", meter_id, len(report.rejected))
    return report
