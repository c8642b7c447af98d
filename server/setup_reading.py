"""A meter's setup bootstrap, shared by ``smartmeter meter`` and the setup page (docs/adapter.md, "Setup"):
``confirm`` stores the register a person read off the meter as a trusted reading and labels every digit of its
photo; ``confirm_hint`` says when a meter needs that (many photos, not one reading)."""

from __future__ import annotations

import re

from smartmeter.errors import InputError, NotFoundError
from smartmeter.server import photos_repo, readings_repo
from smartmeter.server.adapter import MeterAdapters, digit_labels
from smartmeter.server.database import Database
from smartmeter.server.review import set_value
from smartmeter.server.validation import first_reading_hint
from smartmeter.server.worker import Readers
from smartmeter.settings import Settings
from smartmeter.store import open_store
from smartmeter.types import DigitValue

READING = re.compile(r"\d{1,12}(\.\d{1,6})?")


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
