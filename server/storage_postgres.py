"""PostgreSQL backend of :class:`smartmeter.server.database.Database` (psycopg 3), same interface and SQL as SQLite.

URL: ``postgresql://USER@HOST[:PORT]/DB`` (extra libpq parameters as ``?key=value``). The password never goes in
the settings file: it comes from the secret ``database_password`` (``SMARTMETER_DATABASE_PASSWORD`` or
``SMARTMETER_DATABASE_PASSWORD_FILE``); a password inside the URL is refused.

Differences handled here, invisible to callers:
- ``?`` placeholders are translated to ``%s`` (quoted text and identifiers are left alone, ``%`` is escaped);
- writers are serialised per meter, not globally: a transaction that reads a meter's readings to validate new
  ones takes that meter's advisory lock (``pg_advisory_xact_lock`` on a 64-bit hash of the meter id) before it
  reads, and holds it to the end, so two ingests of one meter never interleave while many meters write at once.
  ``lock_meters`` takes a whole batch's locks up front in sorted order (no lock-order deadlock); the readings
  repository takes a meter's lock again at its first query of that meter (held locks are remembered per
  transaction: one round trip per meter). Migrations take one global lock, ``MIGRATE_LOCK``;
- ``skip_locked`` is `` FOR UPDATE SKIP LOCKED`` (the worker fleet's claims) and ``try_lock`` is
  ``pg_try_advisory_xact_lock``;
- migration files run whole (PostgreSQL accepts several statements in one call, ``$$`` bodies included), and a
  ``NNN_name.postgresql.sql`` file replaces ``NNN_name.sql`` when present.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from smartmeter.errors import ConfigError, DatabaseError
from smartmeter.secrets import get_secret
from smartmeter.server.database import Database

log = logging.getLogger(__name__)

MIGRATE_LOCK = 7_262_001  # advisory lock id that serialises migrations (was: every writer)


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for a name (``meter:<id>``, ``list:<store>``). Two names that
    collide only share a lock: slower, never wrong."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def translate_placeholders(sql: str) -> str:
    """``?`` -> ``%s`` and ``%`` -> ``%%`` outside quoted strings and identifiers."""
    out: list[str] = []
    quote: str | None = None
    for ch in sql:
        if quote:
            out.append("%%" if ch == "%" else ch)
            if ch == quote:
                quote = None
        elif ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


class PostgresDatabase(Database):
    dialect = "postgresql"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, conn: Any, url: str) -> None:
        super().__init__(conn, url)
        self._held: set[int] = set()  # advisory locks the open transaction holds

    def _sql(self, sql: str) -> str:
        return translate_placeholders(sql)

    def _begin(self) -> None:
        self._held = set()
        self._conn.execute("BEGIN")

    def lock_meters(self, meter_ids: Iterable[str]) -> None:
        with self._lock:
            if self._depth == 0:
                return  # outside a transaction a transaction lock would end with the statement
            keys = sorted({lock_key("meter:" + m) for m in meter_ids} - self._held)
            if keys:
                with self._guard("meter lock"):
                    self._conn.execute("SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k ORDER BY k",
                                       (keys,))
                self._held.update(keys)

    def try_lock(self, name: str) -> bool:
        with self._lock, self._guard("lock"):
            key = lock_key(name)
            if key in self._held:
                return True
            got = bool(self._conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (key,)).fetchone()[0])
            if got and self._depth:
                self._held.add(key)
            return got

    def _serialise(self) -> None:
        self._conn.execute(f"SELECT pg_advisory_xact_lock({MIGRATE_LOCK})")

    def _errors(self) -> tuple[type[BaseException], ...]:
        import psycopg

        return (psycopg.Error,)

    def _run_script(self, script: str) -> None:
        self._conn.execute(script)


def open_postgres(url: str) -> PostgresDatabase:
    try:
        import psycopg
    except ImportError as exc:
        raise DatabaseError("PostgreSQL needs psycopg 3", hint="pip install 'psycopg[binary]'") from exc
    parts = urlsplit(url)
    if parts.password:
        raise ConfigError("database.url must not contain a password",
                          hint="set SMARTMETER_DATABASE_PASSWORD or SMARTMETER_DATABASE_PASSWORD_FILE")
    kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": 10}
    secret = get_secret("database_password", required=False)
    if secret is not None:
        kwargs["password"] = secret.get_secret_value()
    conninfo = url.replace("postgres://", "postgresql://", 1)
    try:
        conn = psycopg.connect(conninfo, **kwargs)
    except psycopg.Error as exc:
        where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"
        raise DatabaseError(f"cannot connect to PostgreSQL at {where}: {str(exc).strip()}") from exc
    log.debug("connected to PostgreSQL %s", conn.info.server_version)
    return PostgresDatabase(conn, url)
