"""The readings database (SQLite): migrations, idempotent inserts, transactions, queries, failures."""

from __future__ import annotations

import re
import shutil
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import fresh_pg

import smartmeter.server.database as database
from smartmeter.errors import DatabaseError, InputError
from smartmeter.server.database import Database, from_ms, open_database, split_statements, to_ms
from smartmeter.types import Reading

T0 = datetime(2024, 3, 1, tzinfo=UTC)
MASS = (0.0, 0.9, 0.05, 0.05, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # a refused drum: mostly a 1


def series(n: int, meter: str = "m1", source: str = "csv:a.csv", step_s: int = 60) -> list[Reading]:
    return [Reading(meter, T0 + timedelta(seconds=i * step_s), 100 + i * 0.01, source) for i in range(n)]


def test_open_creates_folder_wal_and_schema(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path}/a/b/x.db")
    assert (tmp_path / "a/b/x.db").exists()
    assert db.query("PRAGMA journal_mode")[0][0] == "wal"
    assert db.query("PRAGMA foreign_keys")[0][0] == 1
    assert db.schema_version() >= 1
    versions = [v for (v,) in db.query("SELECT version FROM schema_version ORDER BY version")]
    assert versions == sorted(versions) and versions[0] == 1
    db.close()
    again = open_database(f"sqlite:///{tmp_path}/a/b/x.db")
    assert again.migrate() == []  # nothing applied twice
    again.close()


def test_migration_runner_picks_up_new_numbered_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mig = tmp_path / "migrations"
    shutil.copytree(database.MIGRATIONS, mig)
    monkeypatch.setattr(database, "MIGRATIONS", mig)
    url = f"sqlite:///{tmp_path}/m.db"
    db = open_database(url)
    before = db.schema_version()
    db.close()
    (mig / f"{before + 1:03d}_extra.sql").write_text(
        "-- a comment; with a semicolon\nCREATE TABLE extra (id INTEGER PRIMARY KEY, note TEXT);\n"
        "CREATE TRIGGER extra_t AFTER INSERT ON extra BEGIN UPDATE extra SET note = 'x'; END;\n")
    (mig / f"{before + 1:03d}_extra.postgresql.sql").write_text("THIS IS NOT SQLITE;")  # PostgreSQL only
    db = open_database(url)
    assert db.schema_version() == before + 1
    db.execute("INSERT INTO extra (id, note) VALUES (?, ?)", (1, "a"))
    assert db.query("SELECT note FROM extra") == [("x",)]
    db.close()


def test_failed_migration_leaves_nothing_half_applied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mig = tmp_path / "migrations"
    shutil.copytree(database.MIGRATIONS, mig)
    monkeypatch.setattr(database, "MIGRATIONS", mig)
    (mig / "900_broken.sql").write_text("CREATE TABLE half (a TEXT);\nCREATE TABLE oops (;\n")
    url = f"sqlite:///{tmp_path}/m.db"
    with pytest.raises(DatabaseError, match="900_broken"):
        open_database(url)
    (mig / "900_broken.sql").unlink()
    db = open_database(url)
    assert not db.query("SELECT name FROM sqlite_master WHERE name = 'half'")
    assert 900 not in [v for (v,) in db.query("SELECT version FROM schema_version")]
    db.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    db = open_database(url)
    db.execute("INSERT INTO schema_version (version, name, applied_ms) VALUES (999, 'future', 0)")
    db.close()
    with pytest.raises(DatabaseError, match="newer than this program"):
        open_database(url)


def test_bad_urls_and_paths(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="unsupported"):
        open_database("mysql://x/y")
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(DatabaseError, match="cannot create the database folder"):
        open_database(f"sqlite:///{tmp_path}/file/db.sqlite")
    (tmp_path / "garbage.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(DatabaseError):
        open_database(f"sqlite:///{tmp_path}/garbage.db")


def test_insert_is_idempotent_and_counts_new_rows(db: Database) -> None:
    rs = series(10)
    assert db.insert_readings(rs) == 10
    assert db.insert_readings(rs) == 0
    assert db.insert_readings(series(12)) == 2
    other_source = [Reading("m1", r.timestamp, r.value_kwh, "api") for r in rs[:3]]
    assert db.insert_readings(other_source) == 3  # same time, another source: kept beside
    assert db.count_readings("m1") == 15
    assert db.meter_exists("m1") and not db.meter_exists("m2")


def test_insert_is_all_or_nothing(db: Database) -> None:
    rs = series(5)
    bad = Reading("m1", T0 + timedelta(days=1), 1.0, "api")
    object.__setattr__(bad, "value_kwh", -5.0)  # bypass the type check: the database CHECK must catch it
    with pytest.raises(DatabaseError):
        db.insert_readings([*rs, bad])
    assert db.count_readings() == 0
    assert db.insert_readings(rs) == 5  # connection still usable


def test_roundtrip_fields_and_queries(db: Database) -> None:
    r = Reading("m1", T0, 12345.6, "image:2024/03/01/x.jpg", 0.87, "cnn-1", 512.5)
    db.insert_readings([r, *series(5, "m2")])
    assert db.readings("m1") == [r]
    assert db.last_reading("m1") == r
    m2 = db.readings("m2", start=T0 + timedelta(minutes=1), end=T0 + timedelta(minutes=3))
    assert [x.timestamp for x in m2] == [T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)]
    assert db.last_reading("m2", before=T0 + timedelta(minutes=2)).timestamp == T0 + timedelta(minutes=1)
    assert db.first_reading_after("m2", T0 + timedelta(minutes=2)).timestamp == T0 + timedelta(minutes=3)
    assert db.last_reading("nope") is None
    assert db.readings("m1", sources="image:") == [r] and db.readings("m1", sources="csv:") == []
    assert db.meters() == ["m1", "m2"]


def test_register_meter(db: Database) -> None:
    mid = db.register_meter(None, "kitchen")
    assert mid.startswith("m-") and db.meter_exists(mid)
    assert db.register_meter("main", "x") == "main" == db.register_meter("main")
    with pytest.raises(InputError):
        db.register_meter("bad id/with slash")


def test_nested_transactions_roll_back_inner_only(db: Database) -> None:
    with db.transaction():
        db.insert_readings(series(2))
        with pytest.raises(RuntimeError), db.transaction():
            db.insert_readings([Reading("m1", T0 + timedelta(days=9), 200, "api")])
            raise RuntimeError("inner fails")
    assert db.count_readings() == 2
    with pytest.raises(KeyError), db.transaction():
        db.insert_readings(series(4))
        raise KeyError("outer fails")
    assert db.count_readings() == 2


@pytest.mark.fault("database locked", proves="a second writer waits for the lock and then succeeds; readings lost: 0")
def test_two_connections_wait_for_each_other(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    a, b = open_database(url), open_database(url)
    done = threading.Event()

    def writer() -> None:
        b.insert_readings(series(3, "m2"))  # blocks until a commits (busy_timeout), then succeeds
        done.set()

    with a.transaction():
        a.insert_readings(series(3))
        t = threading.Thread(target=writer)
        t.start()
        assert not done.wait(0.3)
    t.join(10)
    assert done.is_set() and a.count_readings() == 6
    a.close()
    b.close()


def test_shared_between_threads(db: Database) -> None:
    def work(k: int) -> None:
        for i in range(20):
            db.insert_readings([Reading(f"t{k}", T0 + timedelta(seconds=i), i, "api")])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert db.count_readings() == 80


def test_helpers() -> None:
    ts = datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert from_ms(to_ms(ts)) == ts
    assert to_ms(datetime(1970, 1, 1, 0, 0, 1)) == 1000
    stmts = split_statements("-- c\nCREATE TABLE a (x);\n\nCREATE TRIGGER t AFTER INSERT ON a BEGIN "
                             "SELECT 1; SELECT 2; END;\n-- trailing\n")
    assert len(stmts) == 2 and stmts[1].endswith("END;")
    assert all(sqlite3.complete_statement(s) for s in stmts)


def test_postgres_migrations_ingest_and_errors(pg_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from smartmeter.errors import ConfigError
    from smartmeter.server.ingest import ingest_readings
    from smartmeter.server.storage_postgres import translate_placeholders
    from smartmeter.settings import Settings

    url = fresh_pg(pg_server)
    db = open_database(url)
    assert db.dialect == "postgresql" and db.schema_version() >= 1
    assert db.migrate() == []
    rep = ingest_readings(db, Settings(), [*series(5), Reading("m1", T0 + timedelta(minutes=10), 50, "api")])
    assert rep.accepted == 5 and len(rep.rejected) == 1 and "backwards" in rep.rejected[0][1]
    assert ingest_readings(db, Settings(), series(5)).duplicates == 5
    assert db.query("SELECT COUNT(*) FROM readings WHERE source LIKE ?", ("csv:%",)) == [(5,)]
    db.close()
    assert open_database(url).migrate() == []  # second process: nothing re-applied
    assert translate_placeholders("SELECT '?', \"a?\" FROM t WHERE x = ? AND y LIKE '5%'") == \
        "SELECT '?', \"a?\" FROM t WHERE x = %s AND y LIKE '5%%'"
    with pytest.raises(ConfigError, match="password"):
        open_database(pg_server.replace("smartmeter@", "smartmeter:secret@") + "/postgres")
    with pytest.raises(DatabaseError, match="cannot connect"):
        open_database("postgresql://smartmeter@127.0.0.1:1/none?connect_timeout=2")


TABLES = ("meters", "readings", "corrections", "photos", "worker_cursor", "review_queue")
REPOSITORIES = {"server/readings_repo.py", "server/photos_repo.py", "server/review_repo.py"}
# whole-row snapshots of every row a review touched, in the three tables at once, and their restore
SNAPSHOTS = {"server/review_ops.py"}


def test_table_sql_lives_in_the_repositories() -> None:
    """SQL on the readings database's tables is written in its repository module only (issue 11: it was spread
    over five modules, and each copy was a place for a rule to drift)."""
    root = Path(__file__).resolve().parent.parent
    sql = re.compile(rf"\b(?:FROM|INTO|UPDATE|JOIN)\s+(?:{'|'.join(TABLES)})\b")
    found = []
    for folder in ("server", "simulator", "backup_dropbox", "raspi", "ocr", "smartmeter"):
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if path.is_symlink() or rel in REPOSITORIES | SNAPSHOTS or rel.startswith("smartmeter/") and \
                    rel.split("/")[1] in ("ocr", "server", "raspi", "simulator", "backup_dropbox"):
                continue
            found += [f"{rel}:{n}" for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                      if sql.search(line)]
    assert found == []


def test_repositories_on_both_backends(db: Database) -> None:
    """The repository queries the camera worker, the review and corrections use, on SQLite and PostgreSQL."""
    from smartmeter.server import photos_repo, readings_repo, review_repo
    from smartmeter.server.photos_repo import PhotoRow
    from smartmeter.types import DigitValue

    t = [T0 + timedelta(minutes=i) for i in range(4)]
    db.insert_readings([Reading("m1", t[0], 100.0, "csv:simulated-a.csv"), Reading("m1", t[3], 100.3, "api")])
    readings_repo.store_reading(db, "m1", t[1], 100.1, "image:a_b.jpg", 0.9, "cnn-1")
    readings_repo.store_reading(db, "m1", t[2], 100.2, "review:c.jpg", 1.0, "review")
    assert readings_repo.current_value(db, "m1", t[1], "image:a_b.jpg") == (100.1, "cnn-1")
    readings_repo.correct(db, "m1", t[1], "image:a_b.jpg", 100.15)
    assert readings_repo.rows_at(db, "m1", to_ms(t[1]))[0]["status"] == "corrected"
    earlier = readings_repo.nearest_trusted(db, "m1", t[2], True, "review:c.jpg")
    later = readings_repo.nearest_trusted(db, "m1", t[1], False, "review:c.jpg")
    assert earlier is not None and earlier.source.startswith("csv:")  # the camera's reading is not trusted
    assert later is not None and later.source == "api"
    assert sorted(r[4] for r in readings_repo.raw_rows(db, "m1", to_ms(t[0]), to_ms(t[3]))) == \
        ["csv:simulated-a.csv", "image:a_b.jpg", "review:c.jpg"]
    assert readings_repo.count_other_than(db, "csv:simulated-", ["cam"]) == 3
    assert readings_repo.meters_with_source(db, "image:") == {"m1"} and not readings_repo.meters_with_source(db, "x_")
    rows = readings_repo.anchor_rows(db, "m1", t[2], 1)
    assert [r[2] for r in rows] == ["image:a_b.jpg", "review:c.jpg", "api"]
    readings_repo.supersede(db, "m1", t[1], "image:a_b.jpg")
    readings_repo.delete(db, "m1", t[3], "api")
    assert [r.source for r in db.readings("m1")] == ["csv:simulated-a.csv", "review:c.jpg"]
    assert readings_repo.rows_at(db, "m1", to_ms(t[1]), current_only=False)[0]["status"] == "superseded"
    readings_repo.audit(db, "m1", t[1], "a_b.jpg", "validation", 100.1, None, "withdrawn", ["x", "y"])
    assert db.query("SELECT kind, evidence FROM corrections") == [("validation", "x,y")]

    photos_repo.record(db, PhotoRow("a_b.jpg", "h1", "m1", t[1], "name", "held", 100.1, "00100.1",
                                    [DigitValue(1.0, 0.9), DigitValue(None, 0.0), DigitValue(None, 0.6, MASS)],
                                    100.12, 0.9, "cnn-1"))
    photos_repo.record(db, PhotoRow("dup.jpg", "h1", None, None, "name", "duplicate", reason="same content"))
    [(key, ts, value, conf, digits, version, status)] = photos_repo.pending(db, "m1")
    assert (key, ts, value, conf, version, status) == ("a_b.jpg", t[1], 100.1, 0.9, "cnn-1", "held")
    assert digits == [DigitValue(1.0, 0.9), DigitValue(None, 0.0), DigitValue(None, 0.6, MASS)]  # a refused drum's
    assert photos_repo.latest(db, "m1")["digits"] == [[1.0, 0.9], [None, 0.0], [None, 0.6]]  # mass is kept inside
    assert photos_repo.known(db, ["a_b.jpg", "nope"], "photo_key") == {"a_b.jpg": "h1"}
    assert photos_repo.reading_near(db, "m1", "a_b.jpg") == "00100.1"
    assert [r[0] for r in photos_repo.to_reread(db, None, None)] == ["a_b.jpg"]
    photos_repo.set_outcome(db, "a_b.jpg", "published", "ok", 100.1)
    assert photos_repo.outcomes(db, "m1") == [("a_b.jpg", 100.1, 100.1, "published")]
    assert photos_repo.review_target(db, "a_b.jpg") == ("m1", to_ms(t[1]), "published", 100.1, "cnn-1")
    assert photos_repo.health_rows(db, "m1", t[1], t[2]) == [(to_ms(t[1]), "published", 0.9, 100.1)]
    assert photos_repo.meters(db) == {"m1"}
    assert photos_repo.load_cursor(db, "local:/x") is None
    photos_repo.save_cursor(db, "local:/x", "c1")
    photos_repo.save_cursor(db, "local:/x", "c2")
    assert photos_repo.load_cursor(db, "local:/x") == "c2"

    review_repo.open_item(db, "a_b.jpg", "m1", t[1], 100.1, "suspect")
    assert review_repo.count_open(db) == 1 == review_repo.count_open(db, "m1")
    review_repo.resolve(db, "a_b.jpg", 100.2)
    [item] = review_repo.items(db, include_resolved=True)
    assert (item.key, item.ts, item.state) == ("a_b.jpg", t[1], "resolved") and review_repo.items(db) == []
    review_repo.open_item(db, "a_b.jpg", "m1", t[1], 100.1, "again")
    review_repo.drop_open(db, "a_b.jpg")
    assert review_repo.count_open(db) == 0
