"""``smartmeter import`` and ``smartmeter report``: thin wrappers over server.csv_import and server.report."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from smartmeter.server.csv_import import import_csv
from smartmeter.server.report import build_report, render
from smartmeter.server.storage import open_database
from smartmeter.types import parse_timestamp

log = logging.getLogger(__name__)


@click.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--meter", "meter_id", default=None,
              help="Meter id (default: the only configured meter, else camera.meter_id).")
@click.option("--skip-bad", is_flag=True, help="Skip malformed lines instead of rejecting the whole file.")
@click.option("--timezone", default=None, help="IANA zone of naive timestamps (default UTC), e.g. Europe/Rome.")
@click.option("--chunk-size", default=20_000, show_default=True, type=click.IntRange(1), help="Rows per batch.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@click.pass_obj
def import_cmd(obj: object, file: Path, meter_id: str | None, skip_bad: bool, timezone: str | None,
               chunk_size: int, quiet: bool) -> None:
    """Import readings from FILE (timestamp,contatore,potenza; kWh register, kW power)."""
    settings = obj.settings  # type: ignore[attr-defined]
    with open_database(settings.database.url) as db:
        result = import_csv(db, settings, file, meter_id, skip_bad=skip_bad, timezone=timezone,
                            chunk_size=chunk_size, progress=not quiet)
    click.echo(result.summary())
    for line, msg in result.bad_lines:
        click.echo(f"  skipped line {line}: {msg}", err=True)
    for reading, why in result.ingest.rejected[:20]:
        click.echo(f"  rejected {reading.timestamp:%Y-%m-%dT%H:%M:%SZ} {reading.value_kwh:.3f} kWh: {why}", err=True)
    if len(result.ingest.rejected) > 20:
        click.echo(f"  ... and {len(result.ingest.rejected) - 20} more rejected", err=True)


@click.command("report")
@click.option("--meter", "meter_ids", multiple=True, help="Meter id (repeatable; default: every stored meter).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--since", default=None, help="Only readings at or after this ISO time.")
@click.option("--until", default=None, help="Only readings before this ISO time.")
@click.pass_obj
def report_cmd(obj: object, meter_ids: tuple[str, ...], fmt: str, since: str | None, until: str | None) -> None:
    """Print the power and anomaly summary of stored readings."""
    settings = obj.settings  # type: ignore[attr-defined]
    start = parse_timestamp(since) if since else None
    end = parse_timestamp(until) if until else None
    with open_database(settings.database.url) as db:
        report = build_report(db, settings, list(meter_ids) or None, start, end)
    click.echo(render(report, fmt), nl=False)
