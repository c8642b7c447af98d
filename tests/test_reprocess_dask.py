"""``smartmeter reprocess`` on a real Dask LocalCluster (worker processes): the same readings as in one process,
a dry run that reports the changes and writes nothing, and a run interrupted after one meter that the same command
resumes without reading that meter again."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_fleet import METERS, fill

from smartmeter.cli import cli
from smartmeter.server.database import Database, open_database
from smartmeter.server.reprocess import Change, Outcome, Row, in_process, reprocess
from smartmeter.server.worker import Readers, Worker
from smartmeter.settings import Settings, parse_settings
from smartmeter.store.local import LocalStore

pytest.importorskip("dask.distributed")
PHOTOS = Path(__file__).parent / "resources" / "photos"


def setup(tmp_path: Path, per_meter: int = 4) -> tuple[Settings, Database, LocalStore, Path]:
    cfg = tmp_path / "smartmeter.yaml"
    meters = ", ".join(f"{{id: {m}, profile: {PHOTOS / 'meter.yaml'}}}" for m in METERS)
    cfg.write_text(f"""
store: {{local: {{root: {tmp_path / 'images'}}}}}
database: {{url: "sqlite:///{tmp_path / 'db.sqlite'}"}}
meters: [{meters}]
worker: {{batch_size: 3, read_threads: 1}}
""")
    settings = parse_settings(cfg.read_text())
    store = LocalStore(tmp_path / "images")
    fill(store, per_meter)
    db = open_database(settings.database.url)
    Worker(settings, db, store).run_once()
    return settings, db, store, cfg


def snapshot(db: Database) -> list[tuple[object, ...]]:
    return sorted(db.query("SELECT meter_id, ts_ms, value_kwh, source, status FROM readings"))


def value_changes(changes: Sequence[Change]) -> list[str]:
    """Keys whose value changes (the reader version string may change too: the adaptive reader's suffix)."""
    return sorted(c.key for c in changes if c.old != c.new)


def tamper(db: Database, n: int) -> list[str]:
    """Make ``n`` stored camera readings wrong (as an older reader would have left them)."""
    sources = [s for (s,) in db.query("SELECT source FROM readings ORDER BY ts_ms, source LIMIT ?", (n,))]
    for s in sources:
        db.execute("UPDATE readings SET value_kwh = value_kwh - 1 WHERE source = ?", (s,))
    return [s.removeprefix("image:") for s in sources]


def test_dask_reprocess_matches_one_process_and_dry_run_writes_nothing(tmp_path: Path) -> None:
    from smartmeter.server.reprocess_dask import dask_reads

    settings, db, store, _ = setup(tmp_path)
    try:
        good = snapshot(db)
        assert len(good) == 4 * len(METERS)
        wrong = tamper(db, 5)
        before, audits = snapshot(db), db.query("SELECT COUNT(*) FROM corrections")
        with dask_reads(settings, None, workers=2) as reads:
            dry = reprocess(db, settings, store, reads=reads, dry_run=True)
            assert value_changes(dry.changes) == sorted(wrong)
            assert all(c.new is not None and c.old == c.new - 1 for c in dry.changes if c.key in wrong)
            assert snapshot(db) == before and db.query("SELECT COUNT(*) FROM corrections") == audits
            assert not db.query("SELECT 1 FROM reprocess_done")
            stats = reprocess(db, settings, store, reads=reads)
        assert value_changes(stats.changes) == sorted(wrong) and stats.photos == 12
        assert stats.failed == stats.missing == 0
        assert snapshot(db) == good  # the readings the worker made, from photos read on other processes
        again = reprocess(db, settings, store)  # in this process: the same readings, nothing changes
        assert value_changes(again.changes) == [] and snapshot(db) == good
        assert not db.query("SELECT 1 FROM reprocess_done")  # finished runs leave nothing to resume
    finally:
        db.close()


def test_interrupted_reprocess_resumes_without_the_meters_it_committed(tmp_path: Path) -> None:
    settings, db, store, _ = setup(tmp_path)
    try:
        good = snapshot(db)
        tamper(db, 12)
        readers = Readers(settings)
        read_keys: list[str] = []

        def dying(chunks: Sequence[Sequence[Row]]) -> Iterator[tuple[int, list[Outcome]]]:
            for i, outcomes in in_process(readers, store)(chunks):
                read_keys.extend(r[0] for r in chunks[i])
                yield i, outcomes
                if i == 1:  # the first meter's two chunks are back (and committed): the run dies
                    raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            reprocess(db, settings, store, readers=readers, reads=dying)
        assert [m for (m,) in db.query("SELECT meter_id FROM reprocess_done")] == [METERS[0]]
        first = set(read_keys)
        read_keys.clear()

        def counting(chunks: Sequence[Sequence[Row]]) -> Iterator[tuple[int, list[Outcome]]]:
            for i, outcomes in in_process(readers, store)(chunks):
                read_keys.extend(r[0] for r in chunks[i])
                yield i, outcomes

        stats = reprocess(db, settings, store, readers=readers, reads=counting)
        assert stats.resumed == 1 and not first & set(read_keys) and len(read_keys) == 8
        assert snapshot(db) == good
        assert not db.query("SELECT 1 FROM reprocess_done")
    finally:
        db.close()


def test_cli_reprocess_dry_run_on_a_local_cluster_lists_the_changes(tmp_path: Path) -> None:
    _, db, _, cfg = setup(tmp_path, per_meter=2)
    try:
        wrong = tamper(db, 2)
        before = snapshot(db)
    finally:
        db.close()
    res = CliRunner().invoke(cli, ["-c", str(cfg), "reprocess", "--dry-run", "-q", "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert "dry run, nothing written" in res.output and "readings would change" in res.output, res.output
    lines = [ln for ln in res.output.splitlines() if "48126.3 -> 48127.3" in ln]
    assert sorted(ln.split("\t")[2] for ln in lines) == sorted(wrong), res.output
    with open_database(f"sqlite:///{tmp_path / 'db.sqlite'}") as db:
        assert snapshot(db) == before
