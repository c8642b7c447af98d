"""CSV import (timestamp,contatore,potenza): shapes, malformed-row policy, idempotency, the CLI."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from smartmeter.cli import cli
from smartmeter.errors import InputError, NotFoundError
from smartmeter.server.csv_import import import_csv
from smartmeter.server.database import Database, open_database
from smartmeter.settings import Settings

CSV = Path(__file__).parent / "resources" / "csv"
SETTINGS = Settings()


@pytest.fixture
def db(tmp_path: Path) -> Database:
    d = open_database(f"sqlite:///{tmp_path}/db.sqlite")
    yield d
    d.close()


def test_sample_imports_with_power_in_watts(db: Database) -> None:
    res = import_csv(db, SETTINGS, CSV / "sample.csv", "m1", progress=False)
    assert (res.rows, res.ingest.accepted, res.ingest.duplicates, res.bad_count) == (30, 30, 0, 0)
    rs = db.readings("m1")
    assert rs[0].timestamp == datetime(2014, 12, 12, tzinfo=UTC) and rs[0].value_kwh == 4321.0
    assert rs[0].power_w == pytest.approx(350.0) and rs[12].power_w == pytest.approx(2400.0)
    assert rs[0].source == "csv:sample.csv"


def test_same_file_twice_adds_nothing(db: Database, tmp_path: Path) -> None:
    import_csv(db, SETTINGS, CSV / "sample.csv", "m1", progress=False)
    again = import_csv(db, SETTINGS, CSV / "sample.csv", "m1", progress=False, chunk_size=7)
    assert (again.ingest.accepted, again.ingest.duplicates) == (0, 30)
    copy = tmp_path / "renamed.csv"  # the same data under another name: duplicates by (meter, time, value)
    copy.write_bytes((CSV / "sample.csv").read_bytes())
    assert import_csv(db, SETTINGS, copy, "m1", progress=False).ingest.duplicates == 30
    assert db.count_readings("m1") == 30


@pytest.mark.parametrize("name", ["capitalised.csv", "semicolon.csv"])
def test_header_and_separator_variants(db: Database, name: str) -> None:
    res = import_csv(db, SETTINGS, CSV / name, "m1", progress=False)
    assert res.ingest.accepted == 10 and res.bad_count == 0
    ref = import_csv(db, SETTINGS, CSV / "sample.csv", "ref", progress=False)
    assert ref.ingest.accepted == 30
    assert [(r.timestamp, r.value_kwh, r.power_w) for r in db.readings("m1")] == \
        [(r.timestamp, r.value_kwh, r.power_w) for r in db.readings("ref")[:10]]


def test_timezone_for_naive_times(db: Database) -> None:
    import_csv(db, SETTINGS, CSV / "semicolon.csv", "m1", timezone="Europe/Rome", progress=False)
    assert db.readings("m1")[0].timestamp == datetime(2014, 12, 11, 23, 0, tzinfo=UTC)
    with pytest.raises(InputError, match="unknown time zone"):
        import_csv(db, SETTINGS, CSV / "semicolon.csv", "m1", timezone="Mars/Olympus", progress=False)


def test_malformed_file_is_rejected_whole_with_line_numbers(db: Database) -> None:
    import_csv(db, SETTINGS, CSV / "capitalised.csv", "other", progress=False)
    with pytest.raises(InputError) as err:
        import_csv(db, SETTINGS, CSV / "malformed.csv", "m1", progress=False, chunk_size=2)
    msg = str(err.value)
    assert "3 malformed line(s), nothing imported" in msg
    assert "line 4: contatore 'four thousand' is not a number" in msg
    assert "line 7: timestamp" in msg and "line 9: expected 3 fields, got 2" in msg
    assert "--skip-bad" in msg and err.value.exit_code == 65
    assert db.count_readings("m1") == 0 and db.count_readings("other") == 10  # nothing lost, nothing added


def test_skip_bad_imports_the_rest(db: Database) -> None:
    res = import_csv(db, SETTINGS, CSV / "malformed.csv", "m1", skip_bad=True, progress=False)
    assert res.bad_count == 3 and [n for n, _ in res.bad_lines] == [4, 7, 9]
    assert res.ingest.accepted == 7 and db.count_readings("m1") == 7


def test_implausible_rows_are_reported_and_the_rest_stored(db: Database) -> None:
    res = import_csv(db, SETTINGS, CSV / "implausible.csv", "m1", progress=False)
    reasons = [why for _, why in res.ingest.rejected]
    assert len(reasons) == 2 and "backwards" in reasons[0] and "implied power" in reasons[1]
    assert res.ingest.accepted == 8


def test_bad_files(tmp_path: Path, db: Database) -> None:
    with pytest.raises(NotFoundError):
        import_csv(db, SETTINGS, tmp_path / "missing.csv", "m1", progress=False)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="empty file"):
        import_csv(db, SETTINGS, tmp_path / "empty.csv", "m1", progress=False)
    (tmp_path / "hdr.csv").write_text("time,value\n2014-12-12T00:00:00Z,1\n")
    with pytest.raises(InputError, match="lacks column"):
        import_csv(db, SETTINGS, tmp_path / "hdr.csv", "m1", progress=False)
    (tmp_path / "bin.csv").write_bytes(b"timestamp,contatore\n\xff\xfe\x00garbage\n")
    with pytest.raises(InputError, match="not UTF-8"):
        import_csv(db, SETTINGS, tmp_path / "bin.csv", "m1", progress=False)
    (tmp_path / "neg.csv").write_text("timestamp,contatore\n2014-12-12T00:00:00Z,-3\n2014-12-12T00:01:00Z,nan\n")
    with pytest.raises(InputError, match="line 2: contatore '-3' must be a finite number >= 0.*line 3"):
        import_csv(db, SETTINGS, tmp_path / "neg.csv", "m1", progress=False)
    assert db.count_readings() == 0


def test_gzip_and_no_power_column(tmp_path: Path, db: Database) -> None:
    path = tmp_path / "x.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write("Contatore,Timestamp\n10.5,2014-12-12T00:00:00+01:00\n10.6,2014-12-12T01:00:00+01:00\n")
    res = import_csv(db, SETTINGS, path, "g", progress=False)
    assert res.ingest.accepted == 2
    r = db.readings("g")[0]
    assert r.timestamp == datetime(2014, 12, 11, 23, tzinfo=UTC) and r.power_w is None


def test_cli_import(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text(f"database:\n  url: sqlite:///{tmp_path}/cli.db\nmeters:\n  - id: home\n")
    runner = CliRunner()
    res = runner.invoke(cli, ["-c", str(cfg), "import", str(CSV / "sample.csv"), "-q"])
    assert res.exit_code == 0, res.output
    assert "30 accepted" in res.output and "meter home" in res.output
    res = runner.invoke(cli, ["-c", str(cfg), "import", str(CSV / "malformed.csv"), "--meter", "x"])
    assert res.exit_code == 65 and "line 4" in res.output
    res = runner.invoke(cli, ["-c", str(cfg), "import", str(CSV / "malformed.csv"), "--meter", "x", "--skip-bad"])
    assert res.exit_code == 0 and "skipped line 7" in res.output
    with open_database(f"sqlite:///{tmp_path}/cli.db") as db:
        assert db.count_readings("home") == 30 and db.count_readings("x") == 7


def write(path: Path, *rows: str) -> Path:
    path.write_text("timestamp,contatore,potenza\n" + "".join(r + "\n" for r in rows))
    return path


def cli_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "s.yaml"
    cfg.write_text(f"database:\n  url: sqlite:///{tmp_path}/cli.db\nmeters:\n  - id: home\n    digits: 6\n")
    return cfg


@pytest.mark.fault("bad first reading", proves="a first reading of 1e300 is refused, the real readings after it "
                   "are stored, and the import exits 3 (not 0)")
def test_absurd_first_reading_is_refused_and_the_exit_code_says_so(tmp_path: Path) -> None:
    path = write(tmp_path / "first.csv", "2014-12-12T00:00:00Z,1e300,0.1", "2014-12-12T00:01:00Z,4321.0,0.1",
                 "2014-12-12T00:02:00Z,4321.1,0.1", "2014-12-12T00:03:00Z,1234567,0.1")
    res = CliRunner().invoke(cli, ["-c", str(cli_config(tmp_path)), "import", str(path), "-q"])
    assert res.exit_code == 3, res.output
    assert "2 accepted" in res.output and "2 rejected" in res.output
    assert "does not fit the meter's 6 digits" in res.output
    with open_database(f"sqlite:///{tmp_path}/cli.db") as db:
        assert [r.value_kwh for r in db.readings("home")] == [4321.0, 4321.1]


def test_bad_meter_id_is_a_clear_error_not_a_traceback(tmp_path: Path, db: Database) -> None:
    res = CliRunner().invoke(cli, ["-c", str(cli_config(tmp_path)), "import", str(CSV / "sample.csv"),
                                   "--meter", "bad id!"])
    assert res.exit_code == 65
    assert "meter id 'bad id!' is not 1-64 letters" in res.output and "Traceback" not in res.output
    assert "pydantic" not in res.output
    with pytest.raises(InputError, match="meter id"):
        import_csv(db, SETTINGS, CSV / "sample.csv", "bad id!", progress=False)


def test_timestamps_are_bounded(tmp_path: Path, db: Database) -> None:
    path = write(tmp_path / "t.csv", "0001-01-01T00:00:00Z,10.0,", "1999-12-31T23:00:00Z,10.0,",
                 "2014-12-12T00:00:00Z,10.0,", "2999-01-01T00:00:00Z,11.0,", "9999-12-31T23:59:59-01:00,12,")
    with pytest.raises(InputError, match="line 6: timestamp '9999-12-31T23:59:59-01:00' is out of range"):
        import_csv(db, SETTINGS, path, "m1", progress=False)
    res = import_csv(db, SETTINGS, path, "m1", progress=False, skip_bad=True)
    assert res.ingest.accepted == 1 and res.ingest.rejected_count == 3
    reasons = [why for _, why in res.ingest.rejected]
    assert "0001-01-01T00:00:00Z is before 2000-01-01T00:00:00Z" in reasons[0]
    assert "ahead of the server clock" in reasons[2]


DST_ROWS = ("2024-10-27 01:50:00,100.0,", "2024-10-27 02:10:00,100.1,", "2024-10-27 02:40:00,100.2,",
            "2024-10-27 02:10:00,100.3,", "2024-10-27 03:10:00,100.4,")


def test_ambiguous_local_time_is_an_explicit_choice(tmp_path: Path, db: Database) -> None:
    path = write(tmp_path / "fall.csv", *DST_ROWS)
    with pytest.raises(InputError) as err:
        import_csv(db, SETTINGS, path, "m1", timezone="Europe/Rome", progress=False)
    assert "line 3: local time 2024-10-27T02:10:00 in Europe/Rome happens twice" in str(err.value)
    assert "--ambiguous earlier|later" in str(err.value) and db.count_readings() == 0
    res = import_csv(db, SETTINGS, path, "m1", timezone="Europe/Rome", ambiguous="earlier", progress=False)
    # both 02:10 rows map to the same (summer) instant: the second is a conflict, not silently merged
    assert res.ingest.accepted == 4 and "conflicts" in res.ingest.rejected[0][1]
    later = import_csv(db, SETTINGS, path, "m2", timezone="Europe/Rome", ambiguous="later", progress=False)
    assert [r.timestamp.hour for r in db.readings("m2")][:2] == [23, 1]  # 01:50 CEST, then 02:10 CET
    assert later.ingest.accepted >= 3


def test_nonexistent_local_time_is_an_explicit_choice(tmp_path: Path, db: Database) -> None:
    path = write(tmp_path / "spring.csv", "2024-03-31 01:50:00,100.0,", "2024-03-31 02:30:00,100.1,",
                 "2024-03-31 03:40:00,100.2,")
    with pytest.raises(InputError, match=r"line 3: local time 2024-03-31T02:30:00 in Europe/Rome does not exist.*"
                                         r"--nonexistent shift"):
        import_csv(db, SETTINGS, path, "m1", timezone="Europe/Rome", progress=False)
    import_csv(db, SETTINGS, path, "m1", timezone="Europe/Rome", nonexistent="shift", progress=False)
    assert [r.timestamp for r in db.readings("m1")][1] == datetime(2024, 3, 31, 1, 30, tzinfo=UTC)  # 03:30 CEST


def test_rejected_rows_are_counted_kept_few_and_streamed(tmp_path: Path, db: Database) -> None:
    rows = [f"2014-12-12T{h:02d}:{m:02d}:00Z,{9000 - h * 60 - m},0.1" for h in range(10) for m in range(60)]
    path = write(tmp_path / "backwards.csv", *rows)
    rejects = tmp_path / "rejects.csv"
    res = import_csv(db, SETTINGS, path, "m1", progress=False, chunk_size=50, rejects=rejects)
    assert res.ingest.accepted == 1 and res.ingest.rejected_count == 599
    assert len(res.ingest.rejected) == 20  # only the first few are kept in memory
    lines = rejects.read_text().splitlines()
    assert lines[0] == "timestamp,contatore,potenza,reason" and len(lines) == 600
    assert lines[1].startswith("2014-12-12T00:01:00Z,8999.0,0.1,register goes backwards")
