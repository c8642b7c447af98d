"""The review queue: photos validation rejected or withdrew, and a person's true value for them.

``set_value`` stores the value as a reading with source ``review:<key>`` at the photo's capture time. It is a
trusted anchor: validation never overrules it, and camera readings that disagree with it are withdrawn (audited).
"""

from __future__ import annotations

import logging
import math

from smartmeter.errors import InputError, NotFoundError
from smartmeter.server import camera_book as book
from smartmeter.server import photos_repo, readings_repo, review_repo
from smartmeter.server.database import Database, from_ms, to_ms
from smartmeter.server.frames import Anchor
from smartmeter.server.review_repo import ReviewItem
from smartmeter.settings import Settings

log = logging.getLogger(__name__)


def list_reviews(db: Database, meter_id: str | None = None, include_resolved: bool = False,
                 limit: int = 100) -> list[ReviewItem]:
    """Open review items (oldest first), optionally of one meter and including resolved ones."""
    return review_repo.items(db, meter_id, include_resolved, limit)


def set_value(db: Database, settings: Settings, key: str, value: float) -> dict[str, int]:
    """A person's true value for a photo becomes a trusted reading; returns counts of what it changed."""
    if not math.isfinite(value) or value < 0:
        raise InputError(f"register value must be a number >= 0, got {value!r}")
    row = photos_repo.review_target(db, key)
    if row is None:
        raise NotFoundError(f"no photo {key!r} in the worker's records", hint="smartmeter review list")
    meter_id, ts_ms, status, published, version = row
    if meter_id is None or ts_ms is None:
        raise InputError(f"photo {key!r} has no meter or capture time ({status}); it cannot carry a reading")
    ts = from_ms(ts_ms)
    source = f"review:{key}"
    with db.transaction():
        if published is not None:
            readings_repo.supersede(db, meter_id, ts, book.IMAGE + key)
        readings_repo.store_reading(db, meter_id, ts, value, source, 1.0, "review")
        readings_repo.audit(db, meter_id, ts, key, "review", published, value, "value set by review", (), version,
                            "review")
        photos_repo.set_outcome(db, key, "reviewed", "value set by review", value)
        review_repo.resolve(db, key, value, only_open=False)
        v = book.load_validator(db, settings, meter_id, ts)
        decisions = v.add_trusted(Anchor(f"{source}@{to_ms(ts)}", ts, value, trusted=True))
        counts = book.apply(db, meter_id, decisions)
    log.info("review %s = %g (%s)", key, value, counts)
    return counts
