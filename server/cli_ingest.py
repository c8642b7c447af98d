"""The camera-less ingest commands: ``smartmeter import`` (a CSV file, server.csv_import) and ``smartmeter mqtt``
(the MQTT subscriber, server.mqtt_ingest; it stops cleanly on SIGTERM and Ctrl-C). Thin wrappers: ``import_csv``
and ``run_mqtt(settings)`` do the work and can be called from Python."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import click

from smartmeter.domain import check_meter_id
from smartmeter.errors import ConfigError, ValidationRejected
from smartmeter.lifecycle import stop_on_signals
from smartmeter.server.csv_import import import_csv
from smartmeter.server.database import open_database
from smartmeter.server.mqtt_ingest import MqttIngest
from smartmeter.settings import Settings
from smartmeter.types import AMBIGUOUS, NONEXISTENT, format_timestamp, parse_timestamp

log = logging.getLogger(__name__)


@click.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--meter", "meter_id", default=None,
              help="Meter id (default: the only configured meter, else camera.meter_id).")
@click.option("--skip-bad", is_flag=True, help="Skip malformed lines instead of rejecting the whole file.")
@click.option("--timezone", default=None, help="IANA zone of naive timestamps (default UTC), e.g. Europe/Rome.")
@click.option("--ambiguous", type=click.Choice(AMBIGUOUS), default="reject", show_default=True,
              help="A local time that happens twice (DST ends): the earlier, the later, or a malformed line.")
@click.option("--nonexistent", type=click.Choice(NONEXISTENT), default="reject", show_default=True,
              help="A local time that never happens (DST starts): shift it forward by the gap, or a malformed line.")
@click.option("--rejects", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write every row refused by validation to this CSV (with the reason).")
@click.option("--chunk-size", default=20_000, show_default=True, type=click.IntRange(1), help="Rows per batch.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@click.pass_obj
def import_cmd(obj: object, file: Path, meter_id: str | None, skip_bad: bool, timezone: str | None,
               ambiguous: str, nonexistent: str, rejects: Path | None, chunk_size: int, quiet: bool) -> None:
    """Import readings from FILE (timestamp,contatore,potenza; kWh register, kW power).

    Exit status: 0 when every row was stored or already stored (with --skip-bad: but the skipped malformed lines,
    which are listed), 3 when validation refused some rows (the rest is stored), 65 when the file is malformed
    (nothing is stored)."""
    settings = obj.settings  # type: ignore[attr-defined]
    if meter_id is not None:
        check_meter_id(meter_id)  # before any file or database is opened
    with open_database(settings.database.url) as db:
        result = import_csv(db, settings, file, meter_id, skip_bad=skip_bad, timezone=timezone,
                            chunk_size=chunk_size, progress=not quiet, ambiguous=ambiguous,
                            nonexistent=nonexistent, rejects=rejects)
    click.echo(result.summary())
    for line, msg in result.bad_lines:
        click.echo(f"  skipped line {line}: {msg}", err=True)
    report = result.ingest
    for reading, why in report.rejected:
        click.echo(f"  rejected {format_timestamp(reading.timestamp)} {reading.value_kwh:.6g} kWh: {why}", err=True)
    if report.rejected_count > len(report.rejected):
        where = f" (all in {rejects})" if rejects else " (--rejects FILE lists them all)"
        click.echo(f"  ... and {report.rejected_count - len(report.rejected)} more rejected{where}", err=True)
    if report.rejected_count:
        raise click.exceptions.Exit(ValidationRejected.exit_code)


@click.command("report")
@click.option("--meter", "meter_ids", multiple=True, help="Meter id (repeatable; default: every stored meter).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--since", default=None, help="Only readings at or after this ISO time.")
@click.option("--until", default=None, help="Only readings before this ISO time.")
@click.pass_obj
def report_cmd(obj: object, meter_ids: tuple[str, ...], fmt: str, since: str | None, until: str | None) -> None:
    """Print the power and anomaly summary of stored readings."""
    from smartmeter.server.report import build_report, render  # pandas: only for this command

    settings = obj.settings  # type: ignore[attr-defined]
    start = parse_timestamp(since) if since else None
    end = parse_timestamp(until) if until else None
    with open_database(settings.database.url) as db:
        report = build_report(db, settings, list(meter_ids) or None, start, end)
    click.echo(render(report, fmt), nl=False)


def run_mqtt(settings: Settings, stop: threading.Event | None = None) -> MqttIngest:
    """Subscribe and store readings until ``stop`` is set (by default: until SIGTERM/SIGINT)."""
    if not settings.mqtt.enabled:
        raise ConfigError("MQTT ingest is disabled in the settings", hint="set mqtt.enabled: true")
    open_database(settings.database.url).close()  # fail fast on a bad database url
    with stop_on_signals(stop) as event:
        ingest = MqttIngest(settings, lambda: open_database(settings.database.url), event)
        ingest.run()
    return ingest


@click.command("mqtt")
@click.pass_obj
def mqtt_cmd(obj: object) -> None:
    """Subscribe to meter readings over MQTT and store them until SIGTERM."""
    ingest = run_mqtt(obj.settings)  # type: ignore[attr-defined]
    click.echo(f"mqtt ingest stopped after {ingest.connects} connection(s)", err=True)
