"""Shared fixtures. Tests never need ../shared: resources live in tests/resources (see its README).

Databases: ``db`` is each test's empty database, once on SQLite and once on a throw-away PostgreSQL server
(``pg_server``, one per test module, started with initdb + pg_ctl; skipped where PostgreSQL is not installed).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from smartmeter.server.database import Database, open_database

RESOURCES = Path(__file__).parent / "resources"


@pytest.fixture
def resources() -> Path:
    return RESOURCES


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    exe = shutil.which("initdb")
    return Path(exe).parent if exe else None


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    """A throw-away PostgreSQL server (initdb + pg_ctl on a free port); yields its base URL."""
    bindir = _pg_bin()
    if bindir is None or not (bindir / "pg_ctl").exists():
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql")
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        if shutil.which("runuser") is None or subprocess.run(["id", "postgres"], capture_output=True).returncode:
            pytest.skip("running as root without a 'postgres' user to run initdb as")
        as_user = ["runuser", "-u", "postgres", "--"]
    work = Path(tempfile.mkdtemp(prefix="smartmeter-pg-"))
    work.chmod(0o777)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data, logfile = work / "data", work / "log"
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "smartmeter", "--auth=trust",
                    "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
    opts = f"-p {port} -k {work} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(logfile), "-w",
                    "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://smartmeter@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def fresh_pg(base: str) -> str:
    import psycopg

    name = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{base}/{name}"


@pytest.fixture(scope="module")
def pg_url(pg_server: str) -> str:
    """One migrated database per module; ``pg_empty`` empties it for each test (faster than a new one)."""
    url = fresh_pg(pg_server)
    open_database(url).close()
    return url


def pg_empty(url: str) -> Database:
    db = open_database(url)
    tables = [t for (t,) in db.query("SELECT table_name FROM information_schema.tables WHERE table_schema = "
                                     "'public' AND table_name <> 'schema_version'")]
    if tables:
        db.execute(f"TRUNCATE {', '.join(tables)} CASCADE")
    return db


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        d = open_database(f"sqlite:///{tmp_path}/sub/dir/db.sqlite")
    else:
        d = pg_empty(request.getfixturevalue("pg_url"))
    yield d
    d.close()
