"""The HTTP API and dashboard of ``smartmeter serve``: one FastAPI app, OpenAPI documented at ``/docs``.

``create_app(settings, db_factory)`` builds it; ``smartmeter serve`` runs it with uvicorn. Here: health, meters,
readings (ingest and paginated query), state and events. ``server.web.data``: latest reading, power series,
period totals, statistics, capture health, latest photo, review queue. ``server.web.stream``: the SSE live
stream and its statistics. ``server.web.pages``: dashboard, invoice page, login/logout, ``/metrics``.
``server.web.setup``: the meter setup page and its API.

- ``GET  /healthz`` — the database answers (200) or not (503). Open to anyone (no data in it).
- ``POST /api/meters`` — register a meter (body ``{"id": "...", "name": "..."}``, both optional; without an id
  the server assigns one) → 201 ``{"id", "created": true}``; 200 with ``"created": false`` when it existed.
- ``GET  /api/meters`` — the meters the asker may see.
- ``POST /api/meters/{id}/readings`` — one reading or a list in the ``smartmeter.server.payloads`` shape → 201 with the
  counts; 400 malformed (nothing stored), 404 unknown meter, 409 when validation rejected every reading.
- ``GET  /api/meters/{id}/readings?start=&end=&limit=&cursor=`` — stored readings in time order, ISO 8601 bounds
  (start inclusive, end exclusive), at most ``limit`` (``web.page_limit``) per page; ``next_cursor`` fetches the
  next page (null on the last).
- ``GET  /api/meters/{id}/state`` — the last scheduled analysis (``smartmeter analyse``): the original
  dictionary ``{"blackout": false, "superamento": false}`` plus ``camera_stale``, the last reading, the open events.
- ``GET  /api/meters/{id}/events?start=&end=`` — stored events (blackout, power_high, ...) overlapping the bounds.

Errors are ``{"error": message}`` with the status our exception carries (one handler); a bad query parameter is
422 naming it. Every write needs credentials and every read too unless the client is in an open network
(``smartmeter.server.auth``). Requests take database handles from a pool (``server.web.context``).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from smartmeter import __version__
from smartmeter.errors import InputError, SmartMeterError
from smartmeter.secrets import get_secret
from smartmeter.server import readings_repo
from smartmeter.server.auth import Unauthorized
from smartmeter.server.database import Database, to_ms
from smartmeter.server.payloads import (
    MeterIn,
    check_meter_id,
    decode_json,
    parse_readings,
    reading_to_json,
    readings_body_schema,
    submit_readings,
)
from smartmeter.server.web.context import (
    BadParameter,
    PayloadTooLarge,
    Web,
    json_body,
    known_meter,
    read_body,
    span,
)
from smartmeter.settings import Settings
from smartmeter.validation_errors import describe

log = logging.getLogger(__name__)

__all__ = ["PayloadTooLarge", "Unauthorized", "create_app"]


def create_app(settings: Settings, db_factory: Callable[[], Database]) -> FastAPI:
    """The API app. ``db_factory()`` opens a database handle (the app keeps a pool and closes it on shutdown)."""
    secret = get_secret("api_token", required=False)
    web = Web(settings, db_factory, secret.get_secret_value() if secret is not None else None)
    if secret is None:
        log.info("no shared API token set (SMARTMETER_API_TOKEN): machines write with per-meter tokens "
                 "(smartmeter user token create --meter ID); people log in")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        web.pool.close()

    app = FastAPI(title="SmartMeter", version=__version__, lifespan=lifespan)
    app.state.web = web

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

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ())[1:]) or "request"
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid')}"}, status_code=422)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        await web.run(lambda db: db.meter_exists("healthz"))  # a real query: DatabaseError → 503
        return {"status": "ok", "version": __version__}

    @app.post("/api/meters", status_code=201, openapi_extra=_body_doc({"$ref": _REF + "MeterIn"}))
    async def register_meter(request: Request) -> JSONResponse:
        """Register a meter; without an id the server assigns one (``m-<hex>``). Needs the token or a login
        that may see every meter."""
        p = await web.writer(request)
        raw = await read_body(request)
        data = decode_json(raw) if raw.strip() else {}
        if not isinstance(data, dict):
            raise InputError('body must be an object with optional "id" and "name"')
        try:
            meter = MeterIn.model_validate(data)
        except ValidationError as exc:
            raise InputError(describe(exc, root="meter"), hint='optional "id" and "name"') from exc
        meter_id, name = meter.id, meter.name
        if p.meters is not None and (meter_id is None or meter_id not in p.meters):
            p.check_meter(meter_id or "(new)")

        def register(db: Database) -> tuple[str, bool]:
            with db.transaction():
                known = meter_id is not None and db.meter_exists(meter_id)
                return db.register_meter(meter_id=meter_id, name=name), not known

        new_id, created = await web.run(register)
        if created:
            log.info("meter %s registered over HTTP by %s", new_id, p.name)
        # registering again with the same id is harmless (a meter that restarts): 200 instead of 201
        return JSONResponse({"id": new_id, "created": created}, status_code=201 if created else 200)

    @app.get("/api/meters")
    async def list_meters(request: Request) -> dict[str, Any]:
        p = await web.reader(request)
        return {"meters": p.visible(await web.run(lambda db: db.meters()))}

    @app.post("/api/meters/{meter_id}/readings", status_code=201, openapi_extra=_body_doc(_READINGS_SCHEMA))
    async def post_readings(meter_id: str, request: Request) -> dict[str, Any]:
        await web.writer(request, meter_id)
        check_meter_id(meter_id)
        readings = parse_readings(decode_json(await read_body(request)), meter_id, "api")
        report = await web.run(lambda db: submit_readings(db, settings, meter_id, readings))
        return {"accepted": report.accepted, "duplicates": report.duplicates, "rejected": report.rejected_count,
                "rejections": [{**reading_to_json(r), "reason": why} for r, why in report.rejected]}

    @app.get("/api/meters/{meter_id}/readings")
    async def get_readings(meter_id: str, request: Request, start: str | None = None, end: str | None = None,
                           limit: int = Query(1000, ge=1, description="Readings per page (at most web.page_limit)"),
                           cursor: str | None = Query(None, description="next_cursor of the previous page")
                           ) -> Response:
        """Stored readings in [start, end), one page at a time (``next_cursor`` null on the last page)."""
        await web.reader(request, meter_id)
        check_meter_id(meter_id)
        t0, t1 = span(start, end)
        if limit > settings.web.page_limit:
            raise BadParameter(f"limit: {limit} is over the most one page holds ({settings.web.page_limit}); "
                               "follow next_cursor for more")
        after = _decode_cursor(cursor)

        def fetch(db: Database) -> Response:
            known_meter(db, meter_id)
            page = readings_repo.readings_page(db, meter_id, None if t0 is None else to_ms(t0),
                                               None if t1 is None else to_ms(t1), after, limit)
            rows = [{**reading_to_json(r), "source": r.source, "confidence": r.confidence} for r in page]
            nxt = _encode_cursor(to_ms(page[-1].timestamp), page[-1].source) if len(page) == limit else None
            return json_body({"meter_id": meter_id, "count": len(rows), "readings": rows, "next_cursor": nxt})

        return await web.run(fetch)

    @app.get("/api/meters/{meter_id}/state")
    async def get_state(meter_id: str, request: Request) -> dict[str, Any]:
        """The last scheduled analysis: {"blackout": bool, "superamento": bool, ...} (analysed now if never)."""
        await web.reader(request, meter_id)

        def fetch(db: Database) -> dict[str, Any]:
            from smartmeter.server.events import analyse_meter, stored_state

            known_meter(db, meter_id)
            return stored_state(db, meter_id) or analyse_meter(db, settings, meter_id)

        return await web.run(fetch)

    @app.get("/api/meters/{meter_id}/events")
    async def get_events(meter_id: str, request: Request, start: str | None = None,
                         end: str | None = None) -> dict[str, Any]:
        """Stored events overlapping [start, end) (ISO 8601 bounds, both optional)."""
        await web.reader(request, meter_id)
        t0, t1 = span(start, end)

        def fetch(db: Database) -> list[dict[str, Any]]:
            from smartmeter.server.events import event_dict, stored_events

            known_meter(db, meter_id)
            return [event_dict(e) for e in stored_events(db, meter_id, None if t0 is None else to_ms(t0),
                                                          None if t1 is None else to_ms(t1))]

        rows = await web.run(fetch)
        return {"meter_id": meter_id, "count": len(rows), "events": rows}

    from smartmeter.server.web.data import add_data_routes
    from smartmeter.server.web.pages import add_pages
    from smartmeter.server.web.stream import add_stream_routes

    add_data_routes(app, web)
    add_stream_routes(app, web)
    add_pages(app, web)

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


def _encode_cursor(ts_ms: int, source: str) -> str:
    return base64.urlsafe_b64encode(f"{ts_ms}:{source}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> tuple[int, str] | None:
    if cursor is None or not cursor.strip():
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts, _, source = text.partition(":")
        return int(ts), source
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadParameter("cursor: not a next_cursor this API gave", hint="start again without a cursor") from None
