"""`smartmeter readings delete|correct|history`: manual changes to stored readings, validated and audited."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from smartmeter.cli import cli
from smartmeter.errors import InputError, NotFoundError, ValidationRejected
from smartmeter.server.corrections import correct_reading, delete_reading, history
from smartmeter.server.csv_import import import_csv
from smartmeter.server.database import Database, open_database
from smartmeter.server.ingest import ingest_readings
from smartmeter.settings import MeterSettings, Settings
from smartmeter.types import Reading

T0 = datetime(2024, 3, 1, tzinfo=UTC)
SETTINGS = Settings(meters=[MeterSettings(id="m1", digits=6, resolution_kwh=0.01)])


def r(minute: int, value: float, source: str = "csv:a.csv") -> Reading:
    return Reading("m1", T0 + timedelta(minutes=minute), value, source)


def values(db: Database) -> list[float]:
    return [x.value_kwh for x in db.readings("m1")]


def test_delete_a_wrong_first_reading_then_the_real_ones_land(db: Database) -> None:
    # a first reading that fits the digits but is wrong: every real reading after it looks "backwards"
    ingest_readings(db, SETTINGS, [r(0, 99_000.0)])
    assert ingest_readings(db, SETTINGS, [r(1, 4321.0), r(2, 4321.01)]).rejected_count == 2
    gone = delete_reading(db, "m1", T0, why="typo in the first row", who="ann")
    assert gone.value_kwh == 99_000.0 and values(db) == []
    assert ingest_readings(db, SETTINGS, [r(0, 4320.99), r(1, 4321.0), r(2, 4321.01)]).accepted == 3
    [change] = history(db, "m1")
    assert (change.op, change.old_value, change.new_value, change.who, change.why) == (
        "delete", 99_000.0, None, "ann", "typo in the first row")
    old_row = json.loads(db.query("SELECT old_row FROM reading_changes")[0][0])
    assert old_row["value_kwh"] == 99_000.0 and old_row["source"] == "csv:a.csv"  # restorable by hand


def test_correct_is_validated_like_any_reading(db: Database) -> None:
    ingest_readings(db, SETTINGS, [r(0, 100.0), r(10, 100.5), r(20, 101.0)])
    with pytest.raises(ValidationRejected, match="backwards"):
        correct_reading(db, SETTINGS, "m1", T0 + timedelta(minutes=10), 99.0, why="x")
    with pytest.raises(ValidationRejected, match="implied power"):
        correct_reading(db, SETTINGS, "m1", T0 + timedelta(minutes=10), 150.0, why="x")
    with pytest.raises(ValidationRejected, match="does not fit the meter's 6 digits"):
        correct_reading(db, SETTINGS, "m1", T0 + timedelta(minutes=10), 1e300, why="x")
    assert values(db) == [100.0, 100.5, 101.0] and history(db, "m1") == []
    old, new = correct_reading(db, SETTINGS, "m1", T0 + timedelta(minutes=10), 100.4, why="misread", who="bob")
    assert (old, new) == (100.5, 100.4) and values(db) == [100.0, 100.4, 101.0]
    assert [(c.op, c.old_value, c.new_value, c.who) for c in history(db, "m1")] == [("correct", 100.5, 100.4, "bob")]


def test_errors_name_the_problem(db: Database) -> None:
    with pytest.raises(NotFoundError, match="no current reading"):
        delete_reading(db, "m1", T0, why="x")
    db.insert_readings([r(0, 100.0), r(0, 100.0, "api")])  # two sources at one time (stored before ingest)
    with pytest.raises(InputError, match="2 readings at 2024-03-01T00:00:00Z"):
        delete_reading(db, "m1", T0, why="x")
    with pytest.raises(InputError, match="say why"):
        delete_reading(db, "m1", T0, "api", why=" ")
    with pytest.raises(InputError, match="meter id"):
        delete_reading(db, "bad id!", T0, why="x")
    db.insert_readings([Reading("m1", T0 + timedelta(minutes=5), 100.1, "image:20240301T000500Z_m1.jpg")])
    with pytest.raises(InputError, match="review set"):
        correct_reading(db, SETTINGS, "m1", T0 + timedelta(minutes=5), 100.2, why="x")
    assert len(db.readings("m1")) == 3


def test_cli_readings_delete_correct_history(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text(f"database:\n  url: sqlite:///{tmp_path}/cli.db\nmeters:\n  - id: m1\n    digits: 6\n")
    path = tmp_path / "x.csv"
    path.write_text("timestamp,contatore\n2024-03-01T00:00:00Z,100.0\n2024-03-01T00:10:00Z,100.5\n")
    with open_database(f"sqlite:///{tmp_path}/cli.db") as db:
        import_csv(db, SETTINGS, path, "m1", progress=False)
    runner = CliRunner()
    base = ["-c", str(cfg), "readings"]
    res = runner.invoke(cli, [*base, "correct", "--meter", "m1", "--at", "2024-03-01T00:10:00Z", "100.4",
                              "--why", "misread", "--by", "ann"])
    assert res.exit_code == 0 and "100.5 -> 100.4" in res.output, res.output
    res = runner.invoke(cli, [*base, "delete", "--meter", "m1", "--at", "2024-03-01T00:00:00Z", "--why", "w"],
                        input="n\n")
    assert res.exit_code == 1  # asked, and refused
    res = runner.invoke(cli, [*base, "delete", "--meter", "m1", "--at", "2024-03-01T00:00:00Z", "--why", "w",
                              "--yes"])
    assert res.exit_code == 0 and "deleted m1 2024-03-01T00:00:00Z 100 kWh" in res.output
    res = runner.invoke(cli, [*base, "correct", "--meter", "m1", "--at", "2024-03-01T00:10:00Z", "1e300",
                              "--why", "x"])
    assert res.exit_code == 3 and "refused" in res.output
    res = runner.invoke(cli, [*base, "history", "--meter", "m1"])
    lines = res.output.splitlines()
    assert len(lines) == 2 and "\tdelete\t" in lines[0] and "\tcorrect\t" in lines[1] and "ann" in lines[1]


def test_review_typo_then_right_value_then_undo_on_both_databases(db: Database) -> None:
    """review_ops snapshots and restores whole rows: the same on SQLite and PostgreSQL."""
    from smartmeter.server.review import set_value, undo, withdrawn
    from smartmeter.server.worker import _Item, judge
    from smartmeter.types import DigitValue, ImageRef, OcrResult, photo_name

    def item(i: int, value: float | None) -> tuple[_Item, OcrResult]:
        ts = T0 + timedelta(minutes=10 * i)
        text = f"{value or 0:07.1f}"
        digits = [DigitValue(float(c), 0.95) for c in text.replace(".", "")]
        res = OcrResult(text if value is not None else None, value, 0.95 if value is not None else 0.0, digits,
                        reader_version="test:1", error=None if value is not None else "unreadable")
        return _Item(ImageRef(photo_name("cam", ts), 1, f"hash-{i}"), "cam", ts, "name", b""), res

    with db.transaction():
        judge(db, Settings(), [item(0, 100.0), item(1, 100.1), item(2, 100.2), item(3, None)])
    key = item(3, None)[0].ref.key

    def snap() -> tuple[object, ...]:
        return (db.query("SELECT source, value_kwh, status FROM readings ORDER BY source"),
                db.query("SELECT photo_key, status, published_kwh FROM photos ORDER BY photo_key"),
                db.query("SELECT photo_key, state, resolved_value FROM review_queue ORDER BY photo_key"))

    before = snap()
    assert withdrawn(set_value(db, Settings(), key, 1000.3, who="ann")) == 3
    assert [r.value_kwh for r in db.readings("cam")] == [1000.3]
    assert withdrawn(set_value(db, Settings(), key, 100.3, who="ann")) == 0
    assert [r.value_kwh for r in db.readings("cam")] == [100.0, 100.1, 100.2, 100.3]
    undo(db, key, who="ann")
    assert snap() == before
