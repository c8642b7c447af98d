"""``smartmeter readings delete|correct|history``: thin wrappers over server.corrections."""

from __future__ import annotations

import click

from smartmeter.server.corrections import correct_reading, delete_reading, history
from smartmeter.server.database import open_database
from smartmeter.types import format_timestamp, parse_timestamp


@click.group("readings")
def readings_group() -> None:
    """Delete or correct a stored reading (audited: who, when, why, old and new)."""


_meter = click.option("--meter", "meter_id", required=True, help="Meter id.")
_at = click.option("--at", "at", required=True, help="Time of the reading, ISO 8601 (as stored, e.g. ...Z).")
_source = click.option("--source", default=None, help="Source of the reading when several share the time "
                                                      "(e.g. csv:file.csv, api, mqtt).")
_why = click.option("--why", required=True, help="Why: kept in the audit trail.")
_by = click.option("--by", "who", default=None, help="Who (default: $SMARTMETER_USER, else the login name).")


@readings_group.command("delete")
@_meter
@_at
@_source
@_why
@_by
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def delete_cmd(obj: object, meter_id: str, at: str, source: str | None, why: str, who: str | None,
               yes: bool) -> None:
    """Delete one reading (its row is kept in the audit trail)."""
    settings = obj.settings  # type: ignore[attr-defined]
    ts = parse_timestamp(at)
    if not yes:
        click.confirm(f"delete the reading of {meter_id} at {format_timestamp(ts)}?", abort=True, err=True)
    with open_database(settings.database.url) as db:
        gone = delete_reading(db, meter_id, ts, source, why=why, who=who)
    click.echo(f"deleted {meter_id} {format_timestamp(gone.timestamp)} {gone.value_kwh:g} kWh ({gone.source})")


@readings_group.command("correct")
@_meter
@_at
@click.argument("value", type=float)
@_source
@_why
@_by
@click.pass_obj
def correct_cmd(obj: object, meter_id: str, at: str, value: float, source: str | None, why: str,
                who: str | None) -> None:
    """Give one reading the true VALUE (kWh), validated like any reading."""
    settings = obj.settings  # type: ignore[attr-defined]
    ts = parse_timestamp(at)
    with open_database(settings.database.url) as db:
        old, new = correct_reading(db, settings, meter_id, ts, value, source, why=why, who=who)
    click.echo(f"corrected {meter_id} {format_timestamp(ts)}: {old:g} -> {new:g} kWh")


@readings_group.command("history")
@_meter
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1))
@click.pass_obj
def history_cmd(obj: object, meter_id: str, limit: int) -> None:
    """The audit trail of manual changes: when, op, reading time, source, old -> new, who, why."""
    settings = obj.settings  # type: ignore[attr-defined]
    with open_database(settings.database.url) as db:
        changes = history(db, meter_id, limit)
    for c in changes:
        old = "-" if c.old_value is None else f"{c.old_value:g}"
        new = "-" if c.new_value is None else f"{c.new_value:g}"
        click.echo(f"{format_timestamp(c.at)}\t{c.op}\t{format_timestamp(c.ts)}\t{c.source}\t{old} -> {new}\t"
                   f"{c.who}\t{c.why}")
    if not changes:
        click.echo("no manual changes", err=True)
