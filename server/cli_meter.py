"""``smartmeter meter``: a meter's per-meter adapter (``adapt ID --status|--reset``) and the setup bootstrap
(``confirm ID --reading 012345.6 [--photo KEY]``): docs/adapter.md."""

from __future__ import annotations

import json
import re

import click

from smartmeter.domain import check_meter_id
from smartmeter.errors import InputError, NotFoundError
from smartmeter.server import photos_repo, readings_repo
from smartmeter.server.adapter import MeterAdapters, digit_labels
from smartmeter.server.database import Database, open_database
from smartmeter.server.review import set_value
from smartmeter.server.validation import first_reading_hint
from smartmeter.server.worker import Readers
from smartmeter.settings import Settings
from smartmeter.store import open_store
from smartmeter.types import DigitValue

READING = re.compile(r"\d{1,12}(\.\d{1,6})?")


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


def confirm_hint(db: Database, settings: Settings, meter_id: str) -> str | None:
    """``first_reading_hint`` for a meter as stored: its photos seen and readings stored."""
    return first_reading_hint(meter_id, photos_repo.count(db, meter_id), readings_repo.count_readings(db, meter_id),
                              settings.validation.confirm_hint_photos)


def confirm(db: Database, settings: Settings, meter_id: str, reading: str, photo: str | None
            ) -> tuple[str, int, int]:
    """Store ``reading`` as the trusted value of ``photo`` (default: the meter's latest) and label its digits
    (dropping stored examples that look like them but say otherwise); returns (photo key, digits labelled,
    examples dropped). Nothing changes when the value fails the checks of any reading."""
    if not READING.fullmatch(reading):
        raise InputError(f"--reading {reading!r} is not the register as shown (digits, one optional '.')")
    key = photo
    if key is None:
        latest = photos_repo.latest(db, meter_id)
        if latest is None:
            raise NotFoundError(f"meter {meter_id!r} has no photos yet: take one first (or pass --photo)")
        key = str(latest["key"])
    target = photos_repo.review_target(db, key)
    if target is None or target[0] != meter_id:
        raise NotFoundError(f"photo {key!r} of meter {meter_id!r} is not known")
    readers = Readers(settings)
    reader = readers.for_meter(meter_id)
    crops = reader.digit_crops(open_store(settings.store).get(key), key)
    if crops is None:
        raise InputError(f"photo {key!r} cannot be cut into digits (decode or alignment failed)")
    shown = [c for c in reading if c.isdigit()]
    if len(shown) != len(crops):
        raise InputError(f"--reading has {len(shown)} digits, the profile of {meter_id!r} {len(crops)} digit boxes")
    value = float(reading)
    set_value(db, settings, key, value, why="meter confirm (setup reading)")
    labels = digit_labels(reading, value, [DigitValue(0.0, 1.0)] * len(crops), trusted=True)
    book = MeterAdapters(settings, db)
    added, dropped = book.relabel(meter_id, crops, labels, reader.reader)
    book.save(meter_id)
    return key, added, dropped


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
