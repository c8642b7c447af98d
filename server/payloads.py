"""Readings sent by meters without a camera: the JSON shape shared by the HTTP API and MQTT, as pydantic models.

One reading is ``{"timestamp": "2014-12-12T00:32:00Z", "contatore": 0.614, "potenza": 0.0}``: the register in
kWh (``contatore``), the power in kW (``potenza``, optional, stored as ``power_w`` in W) and when it was taken
(ISO 8601; without an offset it is taken as UTC). A body may also be a list of such objects. The names are those of
the CSV import (``timestamp,contatore,potenza``), so a meter can send the same record whichever way it talks.

The request models (:class:`ReadingIn`, :class:`MeterIn`) forbid unknown keys, NaN and infinities and coerce
nothing (``"0.614"`` is not a number); the HTTP API publishes them in its OpenAPI schema. Bodies are decoded by
pydantic's JSON parser, which refuses nesting deeper than 200 levels and integers beyond float range as errors
(Python's ``json`` raises RecursionError or ValueError on those). Anything malformed is one ``InputError`` naming
the field with the value cut short (``smartmeter.validation_errors``), e.g.
``readings[3].contatore: Input should be a valid number, got "abc"``. Whether a reading is plausible (range,
register going backwards, impossible power, time bounds) is decided by ``server.ingest``, which
``submit_readings`` calls for the API and MQTT alike, so every way in is validated the same as the CSV import.
"""

from __future__ import annotations

import logging
import math
from typing import Annotated, Any

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from smartmeter import domain
from smartmeter.domain import METER_ID_CHARS, METER_ID_RULE
from smartmeter.errors import InputError, NotFoundError, ValidationRejected
from smartmeter.server.database import Database
from smartmeter.server.ingest import IngestReport, ingest_readings
from smartmeter.settings import Settings
from smartmeter.types import Reading, format_timestamp, parse_timestamp
from smartmeter.validation_errors import describe, short

log = logging.getLogger(__name__)

__all__ = ["MAX_BYTES", "MAX_READINGS", "MeterIn", "ReadingIn", "ReadingsRejected", "check_meter_id", "decode_json",
           "parse_body", "parse_readings", "reading_to_json", "readings_body_schema", "submit_readings"]

FIELDS = ("timestamp", "contatore", "potenza")
MAX_READINGS = 10_000  # one body; a meter catching up after an outage sends a day of minutes (1440) at most
MAX_BYTES = 2_000_000  # about 25 bytes per reading above MAX_READINGS, with room for whitespace


def check_meter_id(meter_id: object) -> str:
    """``smartmeter.domain.check_meter_id`` with the bad id cut short in the message (a URL path or an MQTT topic
    level can be thousands of characters)."""
    try:
        return domain.check_meter_id(meter_id)
    except InputError:
        raise InputError(f"meter id {short(meter_id)} is not {METER_ID_RULE}") from None


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True, frozen=True)


class ReadingIn(_Body):
    """One reading as a meter sends it (HTTP body or MQTT payload)."""


    timestamp: str = Field(..., max_length=64, description="When it was read: ISO 8601, offset or Z (none = UTC).",
                           examples=["2014-12-12T00:32:00Z"], json_schema_extra={"format": "date-time"})
    contatore: float = Field(..., ge=0, description="Register value, kWh.", examples=[4321.5])
    potenza: float | None = Field(None, ge=0, description="Power at that time, kW (optional).", examples=[0.35])

    @field_validator("contatore", "potenza", mode="before")
    @classmethod
    def _float_range(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 1e308:
            raise PydanticCustomError("finite_number", "must be a finite number")
        return value

    @field_validator("potenza")
    @classmethod
    def _watts_finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value * 1000.0):  # stored in W: 1.8e305 kW overflowed to inf
            raise PydanticCustomError("finite_number", "must be a finite number of kW")
        return value

    @field_validator("timestamp")
    @classmethod
    def _iso(cls, text: str) -> str:
        try:
            parse_timestamp(text)
        except InputError as exc:
            raise ValueError(exc.message) from None
        return text

    def to_reading(self, meter_id: str, source: str) -> Reading:
        return Reading(meter_id=meter_id, timestamp=parse_timestamp(self.timestamp), value_kwh=self.contatore,
                       source=source, power_w=None if self.potenza is None else self.potenza * 1000.0)


class MeterIn(_Body):
    """``POST /api/meters``: both optional; without an id one is generated."""


    id: str | None = Field(None, description="Meter id (1-64 of A-Z a-z 0-9 _ . -).",
                           json_schema_extra={"pattern": "^" + METER_ID_CHARS + "$"})
    name: str = Field("", max_length=200, description="A name for people.")

    @field_validator("id")
    @classmethod
    def _meter_id(cls, meter_id: str | None) -> str | None:
        try:
            return None if meter_id is None else check_meter_id(meter_id)
        except InputError as exc:
            raise ValueError(exc.message) from None


ReadingList = Annotated[list[ReadingIn], Field(min_length=1, max_length=MAX_READINGS)]
_ONE = TypeAdapter(ReadingIn)
_MANY = TypeAdapter(ReadingList)
_BODY = TypeAdapter(ReadingIn | ReadingList)


def readings_body_schema(ref_template: str = "#/components/schemas/{model}") -> tuple[dict[str, Any],
                                                                                     dict[str, Any]]:
    """JSON schema of a readings body (one object or a list) and the definitions it refers to."""
    schema = _BODY.json_schema(ref_template=ref_template)
    defs = schema.pop("$defs", {})
    return schema, defs


def decode_json(body: bytes | str) -> Any:
    """Decode a JSON body: no bodies over MAX_BYTES, bytes that are not UTF-8, nesting over 200 levels or numbers
    out of range; NaN and Infinity are decoded and refused by the models."""
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
        return pydantic_core.from_json(body, allow_inf_nan=True, cache_strings=False)
    except ValueError as exc:
        raise InputError(f"body is not valid JSON: {exc}") from exc


def parse_readings(data: Any, meter_id: str, source: str) -> list[Reading]:
    """A decoded JSON value (one object or a list of objects) → Readings of ``meter_id``, in body order.

    All or nothing: one malformed item rejects the whole body, so a sender never has to guess which part landed.
    """
    check_meter_id(meter_id)
    try:
        if isinstance(data, dict):
            return [_ONE.validate_python(data).to_reading(meter_id, source)]
        if not isinstance(data, list):
            raise InputError(f"body must be a JSON object or a list of objects, got {type(data).__name__} "
                             f"{short(data)}")
        if not data:
            raise InputError("body is an empty list; expected at least one reading")
        if len(data) > MAX_READINGS:
            raise InputError(f"body holds {len(data)} readings; at most {MAX_READINGS} per request")
        return [item.to_reading(meter_id, source) for item in _MANY.validate_python(data)]
    except ValidationError as exc:
        raise InputError(describe(exc, root="reading" if isinstance(data, dict) else "readings")) from exc


def parse_body(body: bytes | str, meter_id: str, source: str) -> list[Reading]:
    """Raw JSON bytes (HTTP body, MQTT payload) → Readings; every failure is one InputError."""
    return parse_readings(decode_json(body), meter_id, source)


def reading_to_json(reading: Reading) -> dict[str, Any]:
    """The inverse of ``parse_reading``: a Reading in the same JSON shape (power back in kW)."""
    return {
        "timestamp": format_timestamp(reading.timestamp),
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
    report = ingest_readings(db, settings, readings, report=IngestReport(keep=MAX_READINGS))
    if report.rejected_count and not report.accepted and not report.duplicates:
        details = [{**reading_to_json(r), "reason": reason} for r, reason in report.rejected]
        first = details[0]
        raise ReadingsRejected(f"all {report.rejected_count} readings of meter {meter_id!r} rejected by "
                               f"validation; first: {first['timestamp']}: {first['reason']}", details)
    if report.rejected_count:
        log.info("meter %s: %d readings rejected by validation", meter_id, report.rejected_count)
    return report
