"""``smartmeter alerts run`` (the alert loop, Home Assistant included) and ``smartmeter alerts outbox``."""

from __future__ import annotations

import json
from typing import Any

import click

from smartmeter.lifecycle import stop_on_signals
from smartmeter.server import alerts_repo
from smartmeter.server.alerts_service import AlertService
from smartmeter.server.database import from_ms, open_database
from smartmeter.types import format_timestamp


@click.group("alerts")
def alerts_group() -> None:
    """Alert rules delivered by MQTT, webhook and e-mail; Home Assistant MQTT discovery."""


@alerts_group.command("run")
@click.option("--once", is_flag=True, help="One pass (rules, outbox, Home Assistant) and exit.")
@click.pass_obj
def run_cmd(app: Any, once: bool) -> None:
    """Judge the rules, deliver the outbox and publish to Home Assistant every alerts.poll_s until stopped."""
    settings = app.settings
    with open_database(settings.database.url) as db:
        service = AlertService(settings, db)
        try:
            if once:
                click.echo(json.dumps(service.pass_once()))
                return
            with stop_on_signals(what="stopping the alert loop") as stop:
                service.run(stop)
        finally:
            service.close()


@alerts_group.command("outbox")
@click.option("--pending", is_flag=True, help="Only messages not delivered yet.")
@click.pass_obj
def outbox_cmd(app: Any, pending: bool) -> None:
    """List the alert outbox: every message per channel, delivered or waiting (with the last error)."""
    with open_database(app.settings.database.url) as db:
        rows = alerts_repo.outbox(db, pending_only=pending)
    for r in rows:
        sent = format_timestamp(from_ms(r.sent_ms)) if r.sent_ms is not None else "waiting"
        click.echo(f"{r.id}  {r.channel:<7} {sent:<22} tries {r.attempts}  {r.last_error}")
