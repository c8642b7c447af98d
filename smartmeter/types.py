"""Domain types shared by the Pi, the OCR library and the server."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

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
    except (ValueError, AttributeError) as exc:
        raise InputError(f"not an ISO 8601 timestamp: {text!r}") from exc


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
