"""``smartmeter worker``, ``smartmeter reprocess`` and ``smartmeter review``: thin wrappers over server.worker,
server.reprocess and server.review."""

from __future__ import annotations

import logging
from contextlib import ExitStack

import click

from smartmeter.lifecycle import stop_on_signals
from smartmeter.ocr.readers.config import ENGINES
from smartmeter.server import photos_repo
from smartmeter.server.database import open_database
from smartmeter.server.fleet import FleetWorker
from smartmeter.server.reprocess import reprocess
from smartmeter.server.review import list_reviews, preview_value, set_value, undo, withdrawn
from smartmeter.server.worker import Readers, Worker
from smartmeter.store import open_store
from smartmeter.types import format_timestamp, parse_timestamp

log = logging.getLogger(__name__)

DRY_RUN_LINES = 50  # changes a dry run lists one by one


@click.command("worker")
@click.option("--once", is_flag=True, help="Process what is in the store now, then exit (with progress).")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@click.option("--fleet", is_flag=True, help="Share the store with other 'worker --fleet' processes (PostgreSQL: "
                                            "any machine): photos are queued and meters leased, none read twice.")
@click.option("--lease-s", type=click.FloatRange(min=1), default=120.0, show_default=True,
              help="--fleet: how long a claimed meter stays this worker's (longer than a page takes to read); a "
                   "killed worker's photos are read by another one after it.")
@click.option("--worker-id", default=None, help="--fleet: this worker's name in the leases (default HOST:PID).")
@click.option("--meters-per-claim", type=click.IntRange(1), default=8, show_default=True,
              help="--fleet: meters one claim leases (their photos share the page of worker.batch_size).")
@click.pass_obj
def worker_cmd(obj: object, once: bool, quiet: bool, fleet: bool, lease_s: float, worker_id: str | None,
               meters_per_claim: int) -> None:
    """Pull photos from the image store, read, validate across frames, store readings (SIGTERM stops it)."""
    settings = obj.settings  # type: ignore[attr-defined]
    with open_database(settings.database.url) as db:
        worker: Worker | FleetWorker
        if fleet:
            worker = FleetWorker(settings, db, open_store(settings.store), worker_id, lease_s, meters_per_claim,
                                 progress=once and not quiet)
        else:
            worker = Worker(settings, db, open_store(settings.store), progress=once and not quiet)
        if once:
            click.echo(worker.run_once().summary())
            return
        with stop_on_signals(worker.stop_event, "stopping after the current page"):
            worker.run()


@click.command("reprocess")
@click.option("--meter", "meter_id", default=None, help="Only this meter (default: all).")
@click.option("--since", default=None, help="Only photos captured at or after this ISO 8601 time.")
@click.option("--engine", type=click.Choice(ENGINES), default=None,
              help="Digit reader, over the profile's reader and the settings' ocr.reader.")
@click.option("--scheduler", default=None, metavar="tcp://HOST:8786",
              help="Read on this Dask cluster (default: a local cluster of --workers processes).")
@click.option("--workers", type=click.IntRange(1), default=2, show_default=True,
              help="Processes of the local Dask cluster.")
@click.option("--in-process", is_flag=True, help="Read in this process, without Dask.")
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@click.pass_obj
def reprocess_cmd(obj: object, meter_id: str | None, since: str | None, engine: str | None, scheduler: str | None,
                  workers: int, in_process: bool, dry_run: bool, quiet: bool) -> None:
    """Re-read archived photos with the current reader; replaced readings are audited. Reading is parallel (Dask),
    validation and writes are ordered per meter; run the same command again to resume an interrupted one."""
    settings = obj.settings  # type: ignore[attr-defined]
    start = parse_timestamp(since) if since else None
    with open_database(settings.database.url) as db, ExitStack() as stack:
        store = open_store(settings.store)
        readers = Readers(settings, engine)
        readers.check()  # a reader that cannot run stops here, before a cluster starts
        reads = None
        if not in_process and photos_repo.to_reread(db, meter_id, start):
            from smartmeter.server.reprocess_dask import dask_reads

            reads = stack.enter_context(dask_reads(settings, engine, scheduler, workers))
        stats = reprocess(db, settings, store, meter_id, start, readers, progress=not quiet, engine=engine,
                          reads=reads, dry_run=dry_run)
    for c in stats.changes[:DRY_RUN_LINES] if dry_run else ():
        old = "-" if c.old is None else f"{c.old:g}"
        new = "-" if c.new is None else f"{c.new:g}"
        click.echo(f"{c.meter}\t{format_timestamp(c.ts)}\t{c.key}\t{old} -> {new}\t{c.old_version} -> {c.new_version}")
    if dry_run and len(stats.changes) > DRY_RUN_LINES:
        click.echo(f"... and {len(stats.changes) - DRY_RUN_LINES} more")
    acts = ", ".join(f"{k} {v}" for k, v in sorted(stats.actions.items()))
    resumed = f"{stats.resumed} meters already done by an interrupted run, " if stats.resumed else ""
    click.echo(("dry run, nothing written: " if dry_run else "") + resumed +
               f"{stats.photos} photos, {stats.missing} missing from the store, {stats.failed} unreadable (kept as "
               f"they were), {stats.changed} readings {'would change' if dry_run else 'changed'}; {acts}")


@click.group("review")
def review_group() -> None:
    """List rejected photos and set their true values."""


@review_group.command("list")
@click.option("--meter", "meter_id", default=None, help="Only this meter.")
@click.option("--all", "include_resolved", is_flag=True, help="Include resolved items.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1))
@click.pass_obj
def review_list_cmd(obj: object, meter_id: str | None, include_resolved: bool, limit: int) -> None:
    """Photos waiting for a person: key, meter, capture time, value read, reason."""
    settings = obj.settings  # type: ignore[attr-defined]
    with open_database(settings.database.url) as db:
        items = list_reviews(db, meter_id, include_resolved, limit)
    for it in items:
        ts = format_timestamp(it.ts) if it.ts else "-"
        read = "-" if it.value_read is None else f"{it.value_read:g}"
        state = "" if it.state == "open" else f" [{it.state}]"
        click.echo(f"{it.key}\t{it.meter_id or '-'}\t{ts}\t{read}\t{it.reason}{state}")
    if not items:
        click.echo("nothing to review", err=True)


@review_group.command("set")
@click.argument("photo_key")
@click.argument("value", type=float)
@click.option("--why", default="value set by review", show_default=True, help="Why: kept in the audit trail.")
@click.option("--by", "who", default=None, help="Who (default: $SMARTMETER_USER, else the login name).")
@click.option("--yes", is_flag=True, help="Do not ask before withdrawing camera readings that disagree.")
@click.pass_obj
def review_set_cmd(obj: object, photo_key: str, value: float, why: str, who: str | None, yes: bool) -> None:
    """Set the true register VALUE (kWh) shown on PHOTO_KEY; it becomes the new anchor (undo: review undo)."""
    settings = obj.settings  # type: ignore[attr-defined]
    with open_database(settings.database.url) as db:
        if not yes:
            n = withdrawn(preview_value(db, settings, photo_key, value))
            if n:
                click.confirm(f"{value:g} kWh disagrees with {n} camera reading(s), which would be withdrawn. "
                              "Continue?", abort=True, err=True)
        counts = set_value(db, settings, photo_key, value, who=who, why=why)
    n = withdrawn(counts)
    click.echo(f"{photo_key}: {value:g} kWh stored as review:{photo_key}"
               + (f"; {n} disagreeing camera readings withdrawn" if n else "")
               + (f"; {counts['publish']} held readings published" if counts.get("publish") else ""))


@review_group.command("undo")
@click.argument("photo_key")
@click.option("--why", default="review undone", show_default=True, help="Why: kept in the audit trail.")
@click.option("--by", "who", default=None, help="Who (default: $SMARTMETER_USER, else the login name).")
@click.option("--force", is_flag=True, help="Restore even photos the worker judged again since the review.")
@click.pass_obj
def review_undo_cmd(obj: object, photo_key: str, why: str, who: str | None, force: bool) -> None:
    """Put back what the last `review set` of PHOTO_KEY changed (its value and the readings it withdrew)."""
    settings = obj.settings  # type: ignore[attr-defined]
    with open_database(settings.database.url) as db:
        n = undo(db, photo_key, who=who, why=why, force=force)
    click.echo(f"{photo_key}: review undone; rows of {n} photo(s) restored")
