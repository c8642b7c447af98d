"""The readings database's connection: SQLite (embedded default) or PostgreSQL, transactions, numbered migrations.

``open_database(settings.database.url)`` returns a :class:`Database`. URLs: ``sqlite:///var/smartmeter.db``
(relative path), ``sqlite:////abs/path.db``, ``sqlite:///:memory:``, ``postgresql://USER@HOST[:PORT]/DB``
(password from the secret ``SMARTMETER_DATABASE_PASSWORD``; see ``smartmeter.server.storage_postgres``).

This module holds no table's SQL: each table's queries live in one repository module,

- ``smartmeter.server.readings_repo``: ``meters``, ``readings`` and the ``corrections`` audit trail;
- ``smartmeter.server.photos_repo``: the worker's ``photos`` and ``worker_cursor`` (which photos it has seen);
- ``smartmeter.server.review_repo``: the ``review_queue``;

:class:`Database` API:

- ``transaction()``: context manager; nests (inner levels are savepoints); rollback on any exception.
- ``execute(sql, params)`` / ``executemany(sql, rows)`` / ``query(sql, params) -> list[tuple]`` for the
  repositories. Write SQL with ``?`` placeholders; PostgreSQL gets them translated to ``%s``.
- ``migrate()``, ``schema_version()``, ``close()``; ``change_mark()`` for caches of answers (SQLite).
- The readings API the worker, the HTTP API and MQTT use (names kept; the SQL is in ``readings_repo``):
  ``register_meter``, ``meter_exists``, ``meters``, ``insert_readings``, ``last_reading``,
  ``first_reading_after``, ``readings``, ``count_readings``.

Storage conventions: timestamps are INTEGER milliseconds since the epoch, UTC (``ts_ms``) — compact, sortable,
identical on both backends; ``to_ms``/``from_ms`` convert.

Migrations: every ``server/migrations/NNN_name.sql`` in version order, each in its own transaction, recorded in
``schema_version``. A ``NNN_name.postgresql.sql`` file, when present, replaces ``NNN_name.sql`` on PostgreSQL
(for DDL that is not portable). Write portable SQL otherwise: BIGINT for times, DOUBLE PRECISION for floats.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smartmeter.errors import DatabaseError
from smartmeter.types import Reading, format_timestamp

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_NAME = re.compile(r"^(?P<version>\d{3})_(?P<name>[A-Za-z0-9_]+?)(?P<pg>\.postgresql)?\.sql$")


def to_ms(ts: datetime) -> int:
    """UTC timestamp -> integer epoch milliseconds (naive = UTC)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return round(ts.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def iso_ms(ms: int | None) -> str | None:
    """Stored epoch milliseconds as ISO 8601 with a four-digit year (``format_timestamp``); None stays None."""
    return None if ms is None else format_timestamp(from_ms(ms))


def now_ms() -> int:
    return int(time.time() * 1000)


def migration_files(dialect: str) -> list[tuple[int, str, Path]]:
    """(version, name, file) in version order; the PostgreSQL variant wins on PostgreSQL."""
    chosen: dict[int, tuple[str, Path, bool]] = {}
    for path in sorted(MIGRATIONS.glob("*.sql")):
        m = MIGRATION_NAME.match(path.name)
        if not m:
            log.warning("ignoring migration file with an unexpected name: %s", path.name)
            continue
        version, is_pg = int(m["version"]), m["pg"] is not None
        if is_pg and dialect != "postgresql":
            continue
        if version in chosen and not is_pg:
            if not chosen[version][2]:
                raise DatabaseError(f"two migrations share version {version:03d}: {chosen[version][1].name}, "
                                    f"{path.name}")
            continue
        chosen[version] = (m["name"], path, is_pg)
    return [(v, chosen[v][0], chosen[v][1]) for v in sorted(chosen)]


def split_statements(script: str) -> list[str]:
    """Split an SQL script into statements (SQLite's own completeness test; triggers stay whole)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip().strip(";").strip() and not all(
                    ln.strip().startswith("--") or not ln.strip() for ln in buf.splitlines()):
                out.append(buf.strip())
            buf = ""
    if buf.strip() and not all(ln.strip().startswith("--") or not ln.strip() for ln in buf.splitlines()):
        out.append(buf.strip())
    return out


class Database:
    """One connection, serialised by a lock (safe to share between threads of one process)."""

    dialect = "sqlite"

    def __init__(self, conn: Any, url: str) -> None:
        self._conn = conn
        self.url = url
        self._lock = threading.RLock()
        self._depth = 0

    # ---- low level -------------------------------------------------------------------------------------
    def _sql(self, sql: str) -> str:
        return sql

    def _begin(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")  # take the write lock now: reads inside see a stable state

    def _errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.Error,)

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except self._errors() as exc:
            raise DatabaseError(f"database {what} failed: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """All statements inside commit together or not at all. Nested use makes savepoints."""
        with self._lock:
            depth = self._depth
            name = f"sp{depth}"
            with self._guard("begin"):
                if depth == 0:
                    self._begin()
                else:
                    self._conn.execute(f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield self
            except BaseException:
                self._depth -= 1
                with self._guard("rollback"):
                    self._conn.execute("ROLLBACK" if depth == 0 else f"ROLLBACK TO SAVEPOINT {name}")
                    if depth:
                        self._conn.execute(f"RELEASE SAVEPOINT {name}")
                raise
            self._depth -= 1
            try:
                with self._guard("commit"):
                    self._conn.execute("COMMIT" if depth == 0 else f"RELEASE SAVEPOINT {name}")
            except DatabaseError:
                if depth == 0:
                    with suppress(*self._errors()):
                        self._conn.execute("ROLLBACK")
                raise

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the number of rows changed."""
        with self._lock, self._guard("statement"):
            cur = self._conn.execute(self._sql(sql), tuple(params))
            return max(cur.rowcount, 0)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        """Run one statement per row inside a transaction; returns the number of rows changed."""
        with self.transaction(), self._guard("statement"):
            cur = self._conn.cursor()
            cur.executemany(self._sql(sql), rows)
            return max(cur.rowcount, 0)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock, self._guard("query"):
            return [tuple(r) for r in self._conn.execute(self._sql(sql), tuple(params)).fetchall()]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def change_mark(self) -> tuple[int, int] | None:
        """A value that differs from this handle's previous one whenever anything was committed to the database
        since then, by any connection of any process (SQLite's ``data_version``) or through this handle itself
        (its ``total_changes``): what a cache of answers checks before it trusts them. None where the backend
        gives no such mark (PostgreSQL): nothing may then be cached."""
        if self.dialect != "sqlite":
            return None
        with self._lock, self._guard("query"):
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0]), int(self._conn.total_changes)

    # ---- locks (PostgreSQL takes them; SQLite's BEGIN IMMEDIATE already serialises every writer) ----------------
    skip_locked = ""  # appended to a SELECT that claims rows: " FOR UPDATE SKIP LOCKED" on PostgreSQL

    def lock_meters(self, meter_ids: Iterable[str]) -> None:
        """Inside a transaction: wait for, and hold until it ends, the write lock of each meter (taken in sorted
        order, so two transactions locking several meters never wait on each other). A no-op on SQLite."""

    def try_lock(self, name: str) -> bool:
        """Inside a transaction: take the lock ``name`` if it is free (held until the transaction ends) and say
        whether it was. Always True on SQLite (the transaction itself is exclusive)."""
        return True

    def _serialise(self) -> None:
        """Inside a transaction: wait for every other process's migrations (PostgreSQL)."""

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- migrations ------------------------------------------------------------------------------------
    def _run_script(self, script: str) -> None:
        for stmt in split_statements(script):
            self._conn.execute(stmt)

    def migrate(self) -> list[int]:
        """Apply pending migrations in order; returns the versions applied now."""
        applied: list[int] = []
        with self.transaction():
            self._serialise()  # two processes starting at once: one creates the table, the other waits
            self.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                         "name TEXT NOT NULL, applied_ms BIGINT NOT NULL)")
        files = migration_files(self.dialect)
        known = {v for v, _, _ in files}
        newer = [v for (v,) in self.query("SELECT version FROM schema_version") if v not in known]
        if newer and max(newer) > max(known, default=0):
            raise DatabaseError(f"database schema version {max(newer)} is newer than this program "
                                f"(knows up to {max(known, default=0)})", hint="upgrade smartmeter")
        for version, name, path in files:
            with self.transaction():
                self._serialise()
                if self.query("SELECT 1 FROM schema_version WHERE version = ?", (version,)):
                    continue  # applied (maybe by another process that won the lock)
                log.info("applying migration %03d_%s", version, name)
                with self._guard(f"migration {path.name}"):
                    self._run_script(path.read_text(encoding="utf-8"))
                self.execute("INSERT INTO schema_version (version, name, applied_ms) VALUES (?, ?, ?)",
                             (version, name, now_ms()))
                applied.append(version)
        return applied

    def schema_version(self) -> int:
        rows = self.query("SELECT MAX(version) FROM schema_version")
        return int(rows[0][0] or 0)

    # ---- the readings API: names kept for the worker, the HTTP API and MQTT; SQL in readings_repo -----------
    def register_meter(self, meter_id: str | None = None, name: str = "") -> str:
        """Create a meter (idempotent); a new id ``m-<hex>`` is generated when ``meter_id`` is None."""
        return readings_repo.register_meter(self, meter_id, name)

    def meter_exists(self, meter_id: str) -> bool:
        return readings_repo.meter_exists(self, meter_id)

    def meters(self) -> list[str]:
        return readings_repo.meters(self)

    def insert_readings(self, readings: Iterable[Reading], status: str = "accepted") -> int:
        """Store readings in one transaction (all or nothing); returns how many were new."""
        return readings_repo.insert_readings(self, readings, status)

    def last_reading(self, meter_id: str, before: datetime | None = None) -> Reading | None:
        """Latest current reading of a meter (strictly before ``before``); ties: highest confidence."""
        return readings_repo.last_reading(self, meter_id, before)

    def first_reading_after(self, meter_id: str, after: datetime) -> Reading | None:
        """Earliest current reading strictly after ``after``."""
        return readings_repo.first_reading_after(self, meter_id, after)

    def readings(self, meter_id: str, start: datetime | None = None, end: datetime | None = None,
                 sources: str | None = None) -> list[Reading]:
        """Current readings with ``start <= ts < end`` in time order; ``sources`` is a prefix like ``image:``."""
        return readings_repo.readings(self, meter_id, start, end, sources)

    def count_readings(self, meter_id: str | None = None) -> int:
        return readings_repo.count_readings(self, meter_id)


def _open_sqlite(url: str, path_text: str) -> Database:
    memory = path_text in (":memory:", "")
    if not memory:
        path = Path(path_text)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(f"cannot create the database folder {path.parent}: {exc.strerror}") from exc
    try:
        conn = sqlite3.connect(":memory:" if memory else path_text, isolation_level=None,
                               check_same_thread=False, timeout=30.0)
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA foreign_keys = ON")
        if not memory:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("SQLite journal mode is %s, not WAL", mode)
        conn.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot open SQLite database {path_text}: {exc}") from exc
    return Database(conn, url)


def open_database(url: str, migrate: bool = True) -> Database:
    """Open (and create/migrate) the readings database named by ``url``."""
    if url.startswith("sqlite://"):
        db = _open_sqlite(url, url[len("sqlite:///"):] if url.startswith("sqlite:///") else url[len("sqlite://"):])
    elif url.startswith(("postgresql://", "postgres://")):
        from smartmeter.server.storage_postgres import open_postgres

        db = open_postgres(url)
    else:
        raise DatabaseError(f"unsupported database url {url!r}", hint="use sqlite:///PATH or postgresql://...")
    if migrate:
        try:
            db.migrate()
        except BaseException:
            db.close()
            raise
    return db


# The repository imports this module (Database, to_ms, ...): imported last, once those names exist.
from smartmeter.server import readings_repo  # noqa: E402
