"""``smartmeter analyse`` (scheduled analysis: stored events, the blackout/superamento state) and ``smartmeter report``
(text | json | md on stdout, html | pdf to a file): thin wrappers over server.events and server.report."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import click

from smartmeter.errors import InputError
from smartmeter.lifecycle import stop_on_signals
from smartmeter.server.database import open_database
from smartmeter.types import parse_timestamp

log = logging.getLogger(__name__)

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_every(text: str) -> float:
    """'30s', '5m', '1h', '1d' or plain seconds -> seconds (> 0)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m or float(m[1]) <= 0:
        raise InputError(f"--every {text!r}: use a positive number with s, m, h or d, e.g. 5m")
    return float(m[1]) * UNITS[m[2] or "s"]


@click.command("analyse")
@click.option("--meter", "meter_ids", multiple=True, help="Meter id (repeatable; default: every stored meter).")
@click.option("--every", default=None, help="Run again every interval (e.g. 5m) until SIGTERM/SIGINT.")
@click.option("--full", is_flag=True, help="Re-detect every event from the first reading (same result; slower).")
@click.pass_obj
def analyse_cmd(obj: object, meter_ids: tuple[str, ...], every: str | None, full: bool) -> None:
    """Detect and store events; print each meter's state ({"blackout", "superamento", ...}) as JSON lines."""
    from smartmeter.server.events import analyse_all

    settings = obj.settings  # type: ignore[attr-defined]
    interval = parse_every(every) if every else None
    with open_database(settings.database.url) as db, stop_on_signals(what="stopping the analysis") as stop:
        while True:
            for state in analyse_all(db, settings, meter_ids=list(meter_ids) or None, full=full):
                click.echo(json.dumps(state))
            full = False
            if interval is None or stop.wait(interval):
                return


@click.command("report")
@click.option("--meter", "meter_ids", multiple=True, help="Meter id (repeatable; default: every stored meter).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "md", "html", "pdf"]), default="text",
              show_default=True)
@click.option("--from", "--since", "since", default=None, help="Only readings at or after this ISO time.")
@click.option("--to", "--until", "until", default=None, help="Only readings before this ISO time.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="File to write (html and pdf: default smartmeter-report.<format>).")
@click.pass_obj
def report_cmd(obj: object, meter_ids: tuple[str, ...], fmt: str, since: str | None, until: str | None,
               output: Path | None) -> None:
    """Consumption statistics (local time), stored events and plots of stored readings."""
    from smartmeter.server.report import build_report, render, write_document  # pandas: only for this command

    settings = obj.settings  # type: ignore[attr-defined]
    start = parse_timestamp(since) if since else None
    end = parse_timestamp(until) if until else None
    if start is not None and end is not None and end <= start:
        raise InputError(f"--to {until} is not after --from {since}")
    with open_database(settings.database.url) as db:
        report = build_report(db, settings, list(meter_ids) or None, start, end)
        if fmt in ("html", "pdf"):
            path = write_document(db, settings, report, fmt, output or Path(f"smartmeter-report.{fmt}"))
            click.echo(f"wrote {path}")
            return
    text = render(report, fmt)
    if output is not None:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)
