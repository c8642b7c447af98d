"""Which spooled photos to give up when the spool must shrink: thin the backlog, never cut it off.

The register is cumulative, so a photo read later still gives the energy up to its time: dropping photos in the
middle of an outage loses time resolution, not energy. Dropping the oldest photos wholesale (what a plain cap does)
loses the readings for good. So, oldest backlog first:

1. keep one photo per hour (the last of each hour);
2. then one per day (the last of each day);
3. never the first photo of the backlog, the newest photo, or the last photo of a day: past that, nothing more
   can go, and the caller stops capturing (the last resort).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

PERIODS_S = (3600, 86400)  # one photo an hour, then one a day


@dataclass(frozen=True)
class Photo:
    name: str
    ts: datetime
    size: int


def plan_thinning(photos: Sequence[Photo], excess_bytes: int) -> tuple[list[Photo], int]:
    """Photos to delete (oldest backlog first) to free ``excess_bytes``, and the bytes they free.

    ``photos`` are sorted oldest first. Frees less than asked when only protected photos are left.
    """
    if excess_bytes <= 0 or len(photos) <= 2:
        return [], 0
    gone: set[str] = set()
    out: list[Photo] = []
    freed = 0
    protected = {photos[0].name, photos[-1].name}
    for period in PERIODS_S:
        alive = [p for p in photos if p.name not in gone]
        for i, p in enumerate(alive[:-1]):
            last_of_period = int(alive[i + 1].ts.timestamp()) // period != int(p.ts.timestamp()) // period
            if last_of_period or p.name in protected:
                continue
            gone.add(p.name)
            out.append(p)
            freed += p.size
            if freed >= excess_bytes:
                return out, freed
    return out, freed
