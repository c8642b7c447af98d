"""What every route needs: the settings, a pool of database handles, and who is asking.

``Web.run(work)`` runs ``work(db)`` in the thread pool on a handle of its own: SQLite (WAL) and PostgreSQL
answer reads in parallel instead of one shared handle behind a lock. A handle that raised ``DatabaseError`` is
closed and the next request opens a fresh one, so a restarted PostgreSQL or a disk back online heals without
restarting the server.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from smartmeter.errors import DatabaseError, InputError, NotFoundError
from smartmeter.server import auth
from smartmeter.server.auth import CSRF_HEADER, SESSION_COOKIE, Gate, Principal, Unauthorized
from smartmeter.server.database import Database
from smartmeter.server.payloads import MAX_BYTES, check_meter_id
from smartmeter.settings import Settings
from smartmeter.types import parse_timestamp

log = logging.getLogger(__name__)

T = TypeVar("T")


class DatabasePool:
    """Up to ``size`` handles from ``factory``, each used by one request at a time; idle ones are reused."""

    def __init__(self, factory: Callable[[], Database], size: int) -> None:
        self.factory = factory
        self.size = size
        self.idle: list[Database] = []
        self.opened = 0
        self.cond = threading.Condition()

    def _take(self) -> Database:
        with self.cond:
            while not self.idle and self.opened >= self.size:
                self.cond.wait()
            if self.idle:
                return self.idle.pop()
            self.opened += 1
        try:
            return self.factory()
        except BaseException:
            self._forget()
            raise

    def _forget(self) -> None:
        with self.cond:
            self.opened -= 1
            self.cond.notify()

    def use(self, work: Callable[[Database], T]) -> T:
        db = self._take()
        try:
            result = work(db)
        except DatabaseError:
            self._forget()
            try:
                db.close()
            except Exception as exc:  # a broken handle may fail to close; it is gone either way
                log.debug("closing a failed database handle: %s", exc)
            raise
        except BaseException:
            self._give_back(db)
            raise
        self._give_back(db)
        return result

    def _give_back(self, db: Database) -> None:
        with self.cond:
            self.idle.append(db)
            self.cond.notify()

    def close(self) -> None:
        with self.cond:
            idle, self.idle = self.idle, []
            self.opened -= len(idle)
        for db in idle:
            db.close()


class Web:
    """The app's shared parts, handed to every route module."""

    def __init__(self, settings: Settings, factory: Callable[[], Database], token: str | None) -> None:
        self.settings = settings
        self.pool = DatabasePool(factory, settings.web.db_connections)
        self.gate = Gate(settings.auth, token)

    async def run(self, work: Callable[[Database], T]) -> T:
        return await run_in_threadpool(self.pool.use, work)

    async def principal(self, request: Request) -> Principal | None:
        """Who sent ``request``: a token (global or per-meter), a session cookie, an open network, or nobody
        (None). A token that is sent must be right: a wrong or revoked one is 401, whatever else comes along."""
        authorization = request.headers.get("authorization", "")
        if authorization:
            given = self.gate.bearer(authorization)
            p = self.gate.admin(given)
            if p is None and auth.token_id(given) is not None:  # the database only for a per-meter token's form
                p = await self.run(lambda db: auth.machine_principal(db, given))
            if p is None:
                raise self.gate.wrong_token()
            return p
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            hours = self.settings.auth.session_hours
            p = await self.run(lambda db: auth.session(db, cookie, hours))
            if p is not None:
                return p
        return self.gate.open_network(request.client.host if request.client else None)

    async def reader(self, request: Request, meter_id: str | None = None) -> Principal:
        """The principal of a read; ``meter_id`` is checked against its meters."""
        p = await self.principal(request)
        if p is None:
            raise Unauthorized("viewing needs credentials", hint="log in at /login, or send Authorization: "
                                                                  "Bearer <token>")
        if meter_id is not None:
            p.check_meter(meter_id)
        return p

    async def writer(self, request: Request, meter_id: str | None = None) -> Principal:
        """The principal of a write (token, or a login with its CSRF token); ``meter_id`` checked too."""
        p = auth.check_write(await self.principal(request), request.headers.get(CSRF_HEADER))
        if meter_id is not None:
            p.check_meter(meter_id)
        return p


class BadParameter(InputError):
    """A query parameter out of its range or of the wrong form; the message names the parameter."""

    http_status = 422


def bound(name: str, text: str | None) -> datetime | None:
    """An ISO 8601 query bound, or None when absent; a bad one is 422 naming ``name``."""
    if text is None or not text.strip():
        return None
    try:
        return parse_timestamp(text)
    except InputError as exc:
        raise BadParameter(f"{name}: {exc.message}") from exc


def span(start: str | None, end: str | None) -> tuple[datetime | None, datetime | None]:
    t0, t1 = bound("start", start), bound("end", end)
    if t0 is not None and t1 is not None and t1 <= t0:
        raise BadParameter(f"end: {end!r} must be after start {start!r}")
    return t0, t1


def known_meter(db: Database, meter_id: str) -> None:
    """404 unless ``meter_id`` is registered (its id checked first: 400 for a malformed one)."""
    check_meter_id(meter_id)
    if not db.meter_exists(meter_id):
        raise NotFoundError(f"unknown meter {meter_id!r}", hint="register it first: POST /api/meters")


class PayloadTooLarge(InputError):
    """The request body is larger than any sensible batch of readings."""

    http_status = 413


async def read_body(request: Request, limit: int = MAX_BYTES, what: str = "body") -> bytes:
    """The request body, refusing to buffer more than ``limit`` bytes (the declared length is checked first)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"{what} is {declared} bytes; at most {limit} are accepted")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"{what} is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def json_body(body: object) -> Response:
    """``body`` as a JSON response, encoded by the caller (in the worker thread): large answers skip FastAPI's
    encoder and never hold the event loop, which serves every other connection."""
    return Response(json.dumps(body, separators=(",", ":"), allow_nan=False).encode(), media_type="application/json")
