"""Stored hourly rollups: every way a reading changes marks its hour (database triggers), and an incremental
refresh equals a full recomputation — after imports, back-fills, corrections, withdrawals, re-processing, reviews
and deletes, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from smartmeter.server import camera_book as book
from smartmeter.server import rollups
from smartmeter.server.database import Database, open_database, to_ms
from smartmeter.server.ingest import ingest_readings
from smartmeter.settings import MeterSettings, Settings
from smartmeter.types import Reading

T0 = datetime(2024, 6, 1, tzinfo=UTC)
SETTINGS = Settings(meters=[MeterSettings(id="m", resolution_kwh=0.01)])


def minute_readings(n: int, start: datetime = T0, kwh: float = 100.0, watts: float = 600.0,
                    source: str = "csv:a") -> list[Reading]:
    out = []
    for i in range(n):
        w = 0.0 if 70 <= i < 80 else watts
        out.append(Reading("m", start + timedelta(minutes=i), round(kwh, 3), source, 1.0, "", w))
        kwh += w * 60 / 3.6e6
    return out


def assert_same(db: Database, meter: str = "m") -> pd.DataFrame:
    rollups.refresh(db)
    stored = rollups.load_hours(db, meter)
    full = rollups.full_recompute(db, meter).astype(np.float64)
    pd.testing.assert_frame_equal(stored, full, check_dtype=False)
    assert not db.query("SELECT 1 FROM rollup_dirty")
    return stored


def test_hour_columns_from_known_readings(db: Database) -> None:
    rs = minute_readings(150)  # 02:30 of readings, 10 zero-power minutes at 01:10-01:20
    rs += [Reading("m", T0 + timedelta(minutes=m, seconds=30), 200.0, "csv:b", 0.5, "", 5.0) for m in (3, 4)]
    db.insert_readings(rs)
    hours = assert_same(db)
    assert hours.index.tolist() == [to_ms(T0 + timedelta(hours=h)) for h in range(3)]
    h0, h1, h2 = (hours.iloc[i] for i in range(3))
    assert (h0.n, h1.n, h2.n) == (62, 60, 30)  # two extra readings at :03:30 and :04:30 (other timestamps)
    assert h0.max_kwh == 200.0 and h0.max_power_w == 600.0 and h0.min_power_w == 5.0
    assert h1.n_zero == 10 and h1.n_power == 60 and h1.sum_power_w == pytest.approx(50 * 600.0)
    assert h2.first_ms == to_ms(T0 + timedelta(hours=2)) and h2.last_ms == to_ms(T0 + timedelta(minutes=149))
    assert h1.max_gap_ms == 60_000 and h0.n_camera == 0 and np.isnan(h0.first_cam_ms)
    # 600 W: +0.01 kWh a minute; 200 kWh at 00:03:30 is the running maximum for the rest of the hour
    assert h0.n_rises == 4 and h0.lead_flat_ms == 60_000
    assert h0.tail_flat_ms == h0.last_ms - to_ms(T0 + timedelta(minutes=3, seconds=30)) == h0.max_flat_ms
    # no rise from 01:10 (the first zero minute) to 01:21 (the first reading after power came back)
    assert h1.max_flat_ms == 11 * 60_000 and h2.lead_flat_ms == 60_000 and h2.max_flat_ms == 60_000
    assert h1.max_flat_end_ms == to_ms(T0 + timedelta(minutes=81))
    # the zero run 01:10-01:20: first zero sample, the first sample with power after it, the register at both
    assert (h1.n_zero, h1.first_zero_ms, h1.end_zero_ms) == (10, to_ms(T0 + timedelta(minutes=70)),
                                                             to_ms(T0 + timedelta(minutes=80)))
    assert h1.zero_at_start == 0 and h1.zero_last_kwh == h1.zero_first_kwh
    assert h0.n_high == 0 and np.isnan(h0.first_high_ms) and h0.high_w == 3000.0


def test_high_power_runs_and_a_new_threshold_recomputes(db: Database) -> None:
    rs = minute_readings(180, watts=500.0)
    rs = [Reading(r.meter_id, r.timestamp, r.value_kwh, r.source, 1.0, "", 3500.0 if 50 <= i < 70 or i == 100
                  else r.power_w) for i, r in enumerate(rs)]
    db.insert_readings(rs)
    h0, h1, _ = (assert_same(db).iloc[i] for i in range(3))
    assert (h0.n_high, h0.first_high_ms, h0.high_at_start) == (10, to_ms(T0 + timedelta(minutes=50)), 0)
    assert np.isnan(h0.end_high_ms)  # the run goes on into the next hour ...
    assert (h1.high_at_start, h1.n_high, h1.end_high_ms) == (1, 11, to_ms(T0 + timedelta(minutes=101)))
    rollups.refresh(db, "m", high_w=600.0)
    stored = rollups.load_hours(db, "m")
    assert stored["high_w"].tolist() == [600.0] * 3 and stored["n_high"].tolist() == [10, 11, 0]
    pd.testing.assert_frame_equal(stored, rollups.full_recompute(db, "m", 600.0).astype(np.float64),
                                  check_dtype=False)


def test_same_timestamp_keeps_the_most_confident(db: Database) -> None:
    db.insert_readings([Reading("m", T0, 10.0, "csv:a", 0.4), Reading("m", T0, 11.0, "csv:b", 0.9),
                        Reading("m", T0 + timedelta(minutes=1), 12.0, "csv:a", 1.0)])
    h = assert_same(db).iloc[0]
    assert (h.n, h.first_kwh, h.last_kwh) == (2, 11.0, 12.0)


def test_incremental_equals_full_after_every_kind_of_change(db: Database) -> None:
    report = ingest_readings(db, SETTINGS, minute_readings(600), now=T0 + timedelta(days=1))
    assert report.accepted == 600
    assert_same(db)
    assert rollups.refresh(db) == 0  # nothing changed: nothing recomputed
    # five more minutes: only the last hour is recomputed
    more = minute_readings(605)[600:]
    ingest_readings(db, SETTINGS, more, now=T0 + timedelta(days=1))
    assert db.query("SELECT hour_ms FROM rollup_dirty") == [(to_ms(T0 + timedelta(hours=10)),)]
    assert_same(db)
    # camera readings, a validator correction, a withdrawal, a re-processed photo, a review
    for i in range(30):
        ts = T0 + timedelta(hours=12, minutes=2 * i)
        book.store_reading(db, "m", ts, 110.0 + 0.01 * i, f"image:{i}.jpg", 0.9, "v1")
    ts5, ts7 = to_ms(T0 + timedelta(hours=12, minutes=10)), to_ms(T0 + timedelta(hours=12, minutes=14))
    assert_same(db)
    db.execute("UPDATE readings SET value_kwh = 110.5, status = 'corrected' WHERE meter_id = 'm' AND ts_ms = ?",
               (ts5,))
    db.execute("UPDATE readings SET status = 'superseded' WHERE meter_id = 'm' AND ts_ms = ?", (ts7,))
    stored = assert_same(db)
    noon = stored.loc[to_ms(T0 + timedelta(hours=12))]
    assert noon.n == 29 and noon.max_kwh == 110.5 and noon.n_camera == 29 and noon.max_cam_gap_ms == 240_000
    book.store_reading(db, "m", T0 + timedelta(hours=12, minutes=14), 110.07, "image:7.jpg", 0.95, "v2")  # re-read
    book.store_reading(db, "m", T0 + timedelta(hours=12, minutes=16), 110.08, "review:8.jpg", 1.0, "review")
    assert_same(db)
    # an hour whose readings all go away disappears from the rollups
    db.execute("UPDATE readings SET status = 'superseded' WHERE meter_id = 'm' AND ts_ms >= ? AND ts_ms < ?",
               (to_ms(T0 + timedelta(hours=3)), to_ms(T0 + timedelta(hours=4))))
    db.execute("DELETE FROM readings WHERE meter_id = 'm' AND ts_ms >= ? AND ts_ms < ?",
               (to_ms(T0 + timedelta(hours=5)), to_ms(T0 + timedelta(hours=6))))
    stored = assert_same(db)
    assert to_ms(T0 + timedelta(hours=3)) not in stored.index and to_ms(T0 + timedelta(hours=5)) not in stored.index


def test_migration_marks_readings_stored_before_it(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    with open_database(url) as db:
        db.insert_readings(minute_readings(90))
        db.execute("DELETE FROM rollup_dirty")  # as if the readings predate migration 004
        db.execute("DELETE FROM schema_version WHERE version = 4")
        for t in ("rollup_hour", "rollup_dirty", "rollup_meter", "events", "analysis_state"):
            db.execute(f"DROP TABLE {t}")
        for op in ("update", "delete"):
            db.execute(f"DROP TRIGGER readings_rollup_{op}")
    with open_database(url) as db:
        assert len(db.query("SELECT 1 FROM rollup_dirty")) == 2
        assert len(assert_same(db)) == 2


def test_every_insert_of_readings_marks_its_hours() -> None:
    """Inserts are marked by readings_repo (a trigger per row halved the import rate), so no other module may insert
    readings itself; updates and deletes are marked by the triggers whoever runs them."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "server"
    inserting = sorted(p.name for p in root.rglob("*.py") if "INSERT INTO readings" in p.read_text(encoding="utf-8"))
    assert inserting == ["readings_repo.py"]
    text = (root / "readings_repo.py").read_text(encoding="utf-8")
    assert text.count("INSERT INTO readings") == text.count("mark_changed(db, ")

