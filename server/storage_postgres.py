"""PostgreSQL backend of :class:`smartmeter.server.database.Database` (psycopg 3), same interface and SQL as SQLite.

URL: ``postgresql://USER@HOST[:PORT]/DB`` (extra libpq parameters as ``?key=value``). The password never goes in
the settings file: it comes from the secret ``database_password`` (``SMARTMETER_DATABASE_PASSWORD`` or
``SMARTMETER_DATABASE_PASSWORD_FILE``); a password inside the URL is refused.

Differences handled here, invisible to callers:
- ``?`` placeholders are translated to ``%s`` (quoted text and identifiers are left alone, ``%`` is escaped);
- every outermost write transaction takes one advisory lock, so writers are serialised exactly as SQLite's
  ``BEGIN IMMEDIATE`` serialises them (ingest validation reads then writes; two ingests must not interleave);
- migration files run whole (PostgreSQL accepts several statements in one call, ``$$`` bodies included), and a
  ``NNN_name.postgresql.sql`` file replaces ``NNN_name.sql`` when present.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from smartmeter.errors import ConfigError, DatabaseError
from smartmeter.secrets import get_secret
from smartmeter.server.database import Database

log = logging.getLogger(__name__)

WRITE_LOCK = 7_262_001  # advisory lock id that serialises writers


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

    def _sql(self, sql: str) -> str:
        return translate_placeholders(sql)

    def _begin(self) -> None:
        self._conn.execute("BEGIN")
        self._conn.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")

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
