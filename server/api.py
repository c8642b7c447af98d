"""The HTTP API: meters without a camera register and send readings; the dashboard grows from here.

``create_app(settings, db_factory)`` builds the app; ``smartmeter serve`` runs it with uvicorn. Endpoints:

- ``GET  /healthz`` — the database answers (200) or not (503).
- ``POST /api/meters`` — register a meter (body ``{"id": "...", "name": "..."}``, both optional; without an id
  one is generated) → 201 ``{"id", "created": true}``; 200 with ``"created": false`` when it already existed.
- ``GET  /api/meters`` — the registered meters.
- ``POST /api/meters/{id}/readings`` — one reading or a list in the ``smartmeter.server.payloads`` shape → 201 with the
  counts; 400 malformed (nothing stored), 404 unknown meter, 409 when validation rejected every reading.
- ``GET  /api/meters/{id}/readings?start=&end=`` — stored readings, ISO 8601 bounds (start inclusive, end
  exclusive).
- ``GET  /api/meters/{id}/state`` — the last scheduled analysis (``smartmeter analyse``): the original
  dictionary ``{"blackout": false, "superamento": false}`` plus ``camera_stale``, the last reading, the open events.
- ``GET  /api/meters/{id}/events?start=&end=`` — stored events (blackout, power_high, ...) overlapping the bounds.

Errors are ``{"error": message}`` with the status our exception carries (one handler). When the secret
``api_token`` is set (``SMARTMETER_API_TOKEN`` or ``SMARTMETER_API_TOKEN_FILE``) every write needs
``Authorization: Bearer <token>``. The app opens one database handle from ``db_factory`` on first use
(``Database`` serialises its own access), reopens it after a database failure and closes it on shutdown.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from smartmeter import __version__
from smartmeter.errors import DatabaseError, InputError, NotFoundError, SmartMeterError
from smartmeter.secrets import get_secret
from smartmeter.server.database import Database
from smartmeter.server.payloads import (
    MAX_BYTES,
    MeterIn,
    check_meter_id,
    decode_json,
    parse_readings,
    reading_to_json,
    readings_body_schema,
    submit_readings,
)
from smartmeter.settings import Settings
from smartmeter.types import parse_timestamp
from smartmeter.validation_errors import describe

log = logging.getLogger(__name__)

T = TypeVar("T")


class Unauthorized(SmartMeterError):
    """A write request without the API token, or with a wrong one."""

    exit_code = 77  # EX_NOPERM
    http_status = 401


class PayloadTooLarge(InputError):
    """The request body is larger than any sensible batch of readings."""

    http_status = 413


def create_app(settings: Settings, db_factory: Callable[[], Database]) -> FastAPI:
    """The API app. ``db_factory()`` opens the database; the app closes it on shutdown."""
    secret = get_secret("api_token", required=False)
    token = secret.get_secret_value().encode() if secret is not None else None
    if token is None:
        log.warning("no API token set (SMARTMETER_API_TOKEN): anyone who reaches the API can write readings")

    handle = _SharedDatabase(db_factory)

    async def run(work: Callable[[Database], T]) -> T:
        return await run_in_threadpool(handle.use, work)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        handle.close()

    app = FastAPI(title="SmartMeter", version=__version__, lifespan=lifespan)

    def check_token(request: Request) -> None:
        if token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token):
            raise Unauthorized("missing or wrong API token", hint="send Authorization: Bearer <token>")

    @app.exception_handler(SmartMeterError)
    async def smartmeter_error(request: Request, exc: SmartMeterError) -> JSONResponse:
        body: dict[str, Any] = {"error": exc.message}
        if exc.hint:
            body["hint"] = exc.hint
        details = getattr(exc, "details", None)
        if details:
            body["rejected"] = details
        if exc.http_status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc)
        headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
        return JSONResponse(body, status_code=exc.http_status, headers=headers)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        await run(lambda db: db.meter_exists("healthz"))  # a real query: DatabaseError → 503
        return {"status": "ok", "version": __version__}

    @app.post("/api/meters", status_code=201, openapi_extra=_body_doc({"$ref": _REF + "MeterIn"}))
    async def register_meter(request: Request) -> JSONResponse:
        check_token(request)
        raw = await _read_body(request)
        data = decode_json(raw) if raw.strip() else {}
        if not isinstance(data, dict):
            raise InputError('body must be an object with optional "id" and "name"')
        try:
            meter = MeterIn.model_validate(data)
        except ValidationError as exc:
            raise InputError(describe(exc, root="meter"), hint='optional "id" and "name"') from exc
        meter_id, name = meter.id, meter.name

        def register(db: Database) -> tuple[str, bool]:
            with db.transaction():
                known = meter_id is not None and db.meter_exists(meter_id)
                return db.register_meter(meter_id=meter_id, name=name), not known

        new_id, created = await run(register)
        if created:
            log.info("meter %s registered over HTTP", new_id)
        # registering again with the same id is harmless (a meter that restarts): 200 instead of 201
        return JSONResponse({"id": new_id, "created": created}, status_code=201 if created else 200)

    @app.get("/api/meters")
    async def list_meters() -> dict[str, Any]:
        return {"meters": await run(lambda db: db.meters())}

    @app.post("/api/meters/{meter_id}/readings", status_code=201, openapi_extra=_body_doc(_READINGS_SCHEMA))
    async def post_readings(meter_id: str, request: Request) -> dict[str, Any]:
        check_token(request)
        check_meter_id(meter_id)
        readings = parse_readings(decode_json(await _read_body(request)), meter_id, "api")
        report = await run(lambda db: submit_readings(db, settings, meter_id, readings))
        return {"accepted": report.accepted, "duplicates": report.duplicates, "rejected": report.rejected_count,
                "rejections": [{**reading_to_json(r), "reason": why} for r, why in report.rejected]}

    @app.get("/api/meters/{meter_id}/readings")
    async def get_readings(meter_id: str, start: str | None = None, end: str | None = None) -> dict[str, Any]:
        check_meter_id(meter_id)
        t0, t1 = _bound("start", start), _bound("end", end)
        if t0 is not None and t1 is not None and t1 <= t0:
            raise InputError(f"end {end!r} must be after start {start!r}")

        def fetch(db: Database) -> list[dict[str, Any]]:
            if not db.meter_exists(meter_id):
                raise NotFoundError(f"unknown meter {meter_id!r}")
            return [{**reading_to_json(r), "source": r.source, "confidence": r.confidence}
                    for r in db.readings(meter_id, t0, t1)]

        rows = await run(fetch)
        return {"meter_id": meter_id, "count": len(rows), "readings": rows}

    @app.get("/api/meters/{meter_id}/state")
    async def get_state(meter_id: str) -> dict[str, Any]:
        """The last scheduled analysis: {"blackout": bool, "superamento": bool, ...} (analysed now if never)."""
        check_meter_id(meter_id)

        def fetch(db: Database) -> dict[str, Any]:
            from smartmeter.server.events import analyse_meter, stored_state

            if not db.meter_exists(meter_id):
                raise NotFoundError(f"unknown meter {meter_id!r}")
            return stored_state(db, meter_id) or analyse_meter(db, settings, meter_id)

        return await run(fetch)

    @app.get("/api/meters/{meter_id}/events")
    async def get_events(meter_id: str, start: str | None = None, end: str | None = None) -> dict[str, Any]:
        """Stored events overlapping [start, end) (ISO 8601 bounds, both optional)."""
        check_meter_id(meter_id)
        t0, t1 = _bound("start", start), _bound("end", end)

        def fetch(db: Database) -> list[dict[str, Any]]:
            from smartmeter.server.database import to_ms
            from smartmeter.server.events import event_dict, stored_events

            if not db.meter_exists(meter_id):
                raise NotFoundError(f"unknown meter {meter_id!r}")
            return [event_dict(e) for e in stored_events(db, meter_id, None if t0 is None else to_ms(t0),
                                                          None if t1 is None else to_ms(t1))]

        rows = await run(fetch)
        return {"meter_id": meter_id, "count": len(rows), "events": rows}

    def openapi() -> dict[str, Any]:
        """FastAPI's schema plus the request models: the routes read their bodies themselves (to bound the size
        and the parse), so the models are declared here instead of as parameters."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            defs = schema.setdefault("components", {}).setdefault("schemas", {})
            defs.update(_READINGS_DEFS)
            defs["MeterIn"] = MeterIn.model_json_schema(ref_template=_REF + "{model}")
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


_REF = "#/components/schemas/"
_READINGS_SCHEMA, _READINGS_DEFS = readings_body_schema(_REF + "{model}")


def _body_doc(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


class _SharedDatabase:
    """One database handle for the app, opened on first use; dropped after a DatabaseError, so the next
    request reopens it (a PostgreSQL restart or a lost connection heals without restarting the server)."""

    def __init__(self, factory: Callable[[], Database]) -> None:
        self.factory = factory
        self.db: Database | None = None
        self.lock = threading.Lock()

    def use(self, work: Callable[[Database], T]) -> T:
        with self.lock:
            if self.db is None:
                self.db = self.factory()
            db = self.db
        try:
            return work(db)
        except DatabaseError:
            self.drop(db)
            raise

    def drop(self, db: Database) -> None:
        with self.lock:
            if self.db is db:
                self.db = None
        try:
            db.close()
        except Exception as exc:  # a broken handle may fail to close; it is gone either way
            log.debug("closing a failed database handle: %s", exc)

    def close(self) -> None:
        with self.lock:
            db, self.db = self.db, None
        if db is not None:
            db.close()


def _bound(name: str, text: str | None) -> datetime | None:
    if text is None or not text.strip():
        return None
    try:
        return parse_timestamp(text)
    except InputError as exc:
        raise InputError(f"{name}: {exc.message}") from exc


async def _read_body(request: Request) -> bytes:
    """The request body, refusing to buffer more than MAX_BYTES."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BYTES:
        raise PayloadTooLarge(f"body is {declared} bytes; at most {MAX_BYTES} are accepted")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BYTES:
            raise PayloadTooLarge(f"body is over {MAX_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
