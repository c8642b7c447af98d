"""Domain types shared by the Pi, the OCR library and the server."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo

from smartmeter.domain import METER_ID_CHARS
from smartmeter.errors import InputError

PHOTO_NAME = re.compile(r"^(?P<ts>\d{8}T\d{6}Z)_(?P<meter>" + METER_ID_CHARS + r")\.(?:jpe?g|png)$", re.IGNORECASE)


def utc(ts: datetime) -> datetime:
    """Make a timestamp timezone-aware UTC (naive timestamps are taken as UTC)."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def parse_timestamp(text: str) -> datetime:
    """Parse ISO 8601 (``2014-12-12T00:32:00Z``, with or without offset, or a space) into UTC."""
    try:
        return utc(datetime.fromisoformat(text.strip().replace("Z", "+00:00")))
    except (ValueError, AttributeError, OverflowError) as exc:  # OverflowError: beyond year 1..9999 in UTC
        shown = repr(text) if len(repr(text)) <= 40 else repr(text)[:37] + "..."
        raise InputError(f"not an ISO 8601 timestamp: {shown}") from exc


def format_timestamp(ts: datetime) -> str:
    """ISO 8601 in UTC with a four-digit year: ``2014-12-12T00:32:00Z`` (``.123000`` added when not whole seconds).

    ``strftime("%Y")`` writes year 1 as ``1``, which no ISO parser reads back; this never does.
    """
    t = utc(ts)
    frac = f".{t.microsecond:06d}" if t.microsecond else ""
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}{frac}Z"


def timestamp_problem(ts: datetime, earliest: datetime, now: datetime, future_slack_s: float) -> str | None:
    """Why ``ts`` cannot be the time of a reading (before ``earliest``, or more than ``future_slack_s`` after
    ``now``), or None when it can. The bounds are ``settings.ingest``."""
    t = utc(ts)
    if t < utc(earliest):
        return (f"time {format_timestamp(t)} is before {format_timestamp(earliest)} (ingest.earliest): "
                "a wrong clock or time zone?")
    if (t - utc(now)).total_seconds() > future_slack_s:
        return (f"time {format_timestamp(t)} is more than {future_slack_s:g} s ahead of the server clock "
                f"({format_timestamp(now)}; ingest.future_slack_s)")
    return None


AMBIGUOUS = ("earlier", "later", "reject")
NONEXISTENT = ("shift", "reject")


def localize(ts: datetime, zone: tzinfo, ambiguous: str = "reject", nonexistent: str = "reject") -> datetime:
    """A naive local time in ``zone`` → aware, with the two DST edge cases as explicit choices (ValueError says
    which option decides). An aware ``ts`` is returned as it is.

    - ambiguous (clocks go back: 02:30 happens twice): ``earlier`` (the first, summer time), ``later`` (the
      second), ``reject``;
    - non-existent (clocks jump forward: 02:30 never happens): ``shift`` (forward by the gap: 03:30), ``reject``.
    """
    if ts.tzinfo is not None:
        return ts
    first, second = ts.replace(tzinfo=zone, fold=0), ts.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first
    where = f"{ts.isoformat()} in {zone}"
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == ts:  # the wall time exists: twice
        if ambiguous == "earlier":
            return first
        if ambiguous == "later":
            return second
        raise ValueError(f"local time {where} happens twice (clocks go back): choose with --ambiguous earlier|later")
    if nonexistent == "shift":
        return first.astimezone(UTC).astimezone(zone)  # fold 0 takes the offset before the gap: forward by it
    raise ValueError(f"local time {where} does not exist (clocks jump forward): choose --nonexistent shift to "
                     "move it forward by the gap")


def photo_name(meter_id: str, ts: datetime, ext: str = "jpg") -> str:
    """The photo naming contract: ``YYYYmmddTHHMMSSZ_<meter>.jpg`` (capture time, UTC)."""
    return f"{utc(ts):%Y%m%dT%H%M%SZ}_{meter_id}.{ext}"


def parse_photo_name(name: str) -> tuple[str, datetime]:
    """Return (meter id, capture time) from a photo file name, or raise InputError."""
    base = name.rsplit("/", 1)[-1]
    m = PHOTO_NAME.match(base)
    if not m:
        raise InputError(f"photo name {base!r} is not YYYYmmddTHHMMSSZ_<meter>.jpg")
    ts = datetime.strptime(m["ts"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return m["meter"], ts


@dataclass(frozen=True)
class ImageRef:
    """A photo in an image store."""

    key: str  # path relative to the store root, '/'-separated
    size: int
    content_hash: str  # Dropbox content hash (see smartmeter.hashing), hex
    modified: datetime | None = None


@dataclass(frozen=True)
class Reading:
    """One register value of one meter at one time, traceable to where it came from."""

    meter_id: str
    timestamp: datetime  # UTC
    value_kwh: float  # register value
    source: str  # "image:<key>", "csv:<file>", "api", "mqtt"
    confidence: float = 1.0
    reader_version: str = ""
    power_w: float | None = None  # power reported by a sensor, if any (kept beside derived power)

    def __post_init__(self) -> None:
        object.__setattr__(self, "timestamp", utc(self.timestamp))
        if not (self.value_kwh == self.value_kwh) or self.value_kwh < 0:  # NaN or negative
            raise InputError(f"register value must be a number >= 0, got {self.value_kwh!r}")
        if not 0.0 <= self.confidence <= 1.0:
            raise InputError(f"confidence must be within 0..1, got {self.confidence!r}")


@dataclass(frozen=True)
class DigitValue:
    """One digit as read: drum position 0.0-9.99 (3.5 = halfway from 3 to 4) and a confidence."""

    value: float | None  # None = unreadable
    confidence: float
    # For a crop the reader refused (value None, not blank): the probability of each digit 0-9 that the drum's
    # position lies in [d, d + 1), what the photo still says about that drum (``server.unread_drums`` lets it choose
    # between the values a refused last drum's neighbours allow). None when the reader answered or cannot tell.
    digit_mass: tuple[float, ...] | None = None


@dataclass
class OcrResult:
    """What the OCR library returns for one photo."""

    reading: str | None  # register as text, e.g. "12345.6"; None = cannot read
    value: float | None
    confidence: float
    digits: list[DigitValue] = field(default_factory=list)
    pointers: list[DigitValue] = field(default_factory=list)
    error: str | None = None
    reader_version: str = ""
    candidates: list[str] = field(default_factory=list)  # refused: readings all plausible, likeliest first
