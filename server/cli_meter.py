"""``smartmeter meter``: a meter's per-meter adapter (``adapt ID --status|--reset``) and the setup bootstrap
(``confirm ID --reading 012345.6 [--photo KEY]``): docs/adapter.md."""

from __future__ import annotations

import json

import click

from smartmeter.domain import check_meter_id
from smartmeter.server.adapter import MeterAdapters
from smartmeter.server.database import open_database
from smartmeter.server.setup_reading import confirm, confirm_hint
from smartmeter.settings import Settings


@click.group("meter")
def meter_group() -> None:
    """A meter's digit adapter and its confirmed setup reading."""


@meter_group.command("adapt")
@click.argument("meter_id")
@click.option("--status", "action", flag_value="status", default=True, help="Show version, examples, size (default).")
@click.option("--reset", "action", flag_value="reset", help="Forget the meter's examples: read with the shipped "
                                                            "model alone (a new reader version).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def adapt_cmd(obj: object, meter_id: str, action: str, as_json: bool) -> None:
    """Show or reset the per-meter adapter of METER_ID."""
    settings: Settings = obj.settings  # type: ignore[attr-defined]
    check_meter_id(meter_id)
    with open_database(settings.database.url) as db:
        book = MeterAdapters(settings, db)
        if action == "reset":
            n = book.reset(meter_id)
            click.echo(f"meter {meter_id}: {n} examples removed; adapter version {book.version(meter_id)} "
                       "(the shipped model alone)")
            return
        status = book.status(meter_id)
        status["confirm_hint"] = confirm_hint(db, settings, meter_id)
    if as_json:
        click.echo(json.dumps(status))
        return
    per = " ".join(f"{d}:{n}" for d, n in enumerate(status["per_digit"]))
    click.echo(f"meter {meter_id}: adapter version {status['version']}, {status['examples']} examples "
               f"(max {status['max_examples']}), {status['bytes'] / 1024:.1f} KB in the database; "
               f"{'enabled' if status['enabled'] else 'disabled (adapter.enabled: false)'}")
    click.echo(f"  per digit {per}; readings made with it have reader version '...{status['reader_suffix']}'"
               if status["examples"] else "  no examples yet: read with the shipped model alone")
    if status["confirm_hint"]:
        click.echo(f"  {status['confirm_hint']}")


@meter_group.command("confirm")
@click.argument("meter_id")
@click.option("--reading", required=True, help="The register as the meter shows it, e.g. 012345.6.")
@click.option("--photo", default=None, help="The photo it was read from (default: the meter's latest).")
@click.pass_obj
def confirm_cmd(obj: object, meter_id: str, reading: str, photo: str | None) -> None:
    """Confirm the register of METER_ID once: a trusted reading that anchors validation and labels every digit."""
    settings: Settings = obj.settings  # type: ignore[attr-defined]
    check_meter_id(meter_id)
    with open_database(settings.database.url) as db:
        key, added, dropped = confirm(db, settings, meter_id, reading, photo)
    click.echo(f"meter {meter_id}: {reading} confirmed on {key} (a trusted reading); {added} digits labelled"
               + (f", {dropped} stored examples that contradicted them dropped" if dropped else ""))
