"""When to take photos: clock-aligned intervals or cron-like expressions, and whether the clock can be trusted.

``every 60 s`` fires on every minute of the clock (so photos of many meters line up and restarts do not drift);
``*/5 6-22 * * 1-5`` is a cron expression (minute hour day-of-month month day-of-week, UTC; ``*``, lists, ranges,
steps; day-of-week 0 or 7 = Sunday; as in cron, when both day fields are restricted either may match).

A Raspberry Pi has no real-time clock: after boot it counts from the last shutdown until NTP syncs, and a photo
named with that time is a reading at the wrong time. ``clock_synchronised()`` asks the kernel (adjtimex: the
clock state is not TIME_ERROR and STA_UNSYNC is clear, which NTP clients such as systemd-timesyncd and chrony
maintain) or finds systemd-timesyncd's ``/run/systemd/timesync/synchronized`` flag.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from smartmeter.errors import ConfigError

TIME_ERROR = 5  # adjtimex(2) return value: clock not synchronised
STA_UNSYNC = 0x0040
TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")


class Schedule(Protocol):
    def next_after(self, now: float) -> float:
        """The next slot strictly after ``now`` (epoch seconds)."""


class Every:
    """Every ``interval_s`` seconds, aligned to the clock (multiples of the interval since the epoch)."""

    def __init__(self, interval_s: float) -> None:
        if interval_s <= 0:
            raise ConfigError("camera.interval_s must be > 0")
        self.interval_s = interval_s

    def next_after(self, now: float) -> float:
        return (math.floor(now / self.interval_s) + 1) * self.interval_s


FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12), ("weekday", 0, 7))


def _parse_field(text: str, name: str, lo: int, hi: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        rng, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if rng == "*":
                a, b = lo, hi
            elif "-" in rng:
                a, b = (int(x) for x in rng.split("-", 1))
            else:
                a = b = int(rng)
                if step_text:
                    b = hi
        except ValueError as exc:
            raise ConfigError(f"camera.schedule: {name} field {text!r} is not a number, range or step") from exc
        if step < 1 or not lo <= a <= b <= hi:
            raise ConfigError(f"camera.schedule: {name} field {text!r} is outside {lo}-{hi}")
        values.update(range(a, b + 1, step))
    if name == "weekday" and 7 in values:
        values = (values - {7}) | {0}
    return frozenset(values)


class Cron:
    """A five-field cron expression, evaluated in UTC, to the minute."""

    def __init__(self, expr: str) -> None:
        parts = expr.split()
        if len(parts) != 5:
            raise ConfigError(f"camera.schedule {expr!r}: expected 5 fields (minute hour day month weekday)")
        self.expr = expr
        sets = [_parse_field(p, name, lo, hi) for p, (name, lo, hi) in zip(parts, FIELDS, strict=True)]
        self.minutes, self.hours, self.days, self.months, self.weekdays = sets
        self.any_day, self.any_weekday = parts[2] == "*", parts[4] == "*"

    def _day_ok(self, t: datetime) -> bool:
        dom, dow = t.day in self.days, (t.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return dom and dow
        return dom or dow

    def next_after(self, now: float) -> float:
        t = datetime.fromtimestamp(now, UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = t + timedelta(days=366 * 5)
        while t < limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
            elif not self._day_ok(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
            elif t.minute not in self.minutes:
                t += timedelta(minutes=1)
            else:
                return t.timestamp()
        raise ConfigError(f"camera.schedule {self.expr!r} never fires")


def make_schedule(expr: str | None, interval_s: float) -> Schedule:
    return Cron(expr) if expr else Every(interval_s)


class _Timex(ctypes.Structure):
    # struct timex (linux/timex.h): modes, then longs; status is the 9th field. Padded to the kernel's size.
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("pad", ctypes.c_byte * 256)]


def kernel_clock_state() -> tuple[int, int] | None:
    """(adjtimex return value, status flags), or None where adjtimex is unavailable."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        tx = _Timex()
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return None
    return (int(state), int(tx.status)) if state >= 0 else None


def clock_synchronised() -> bool:
    """True when the system clock is known to be right (NTP synchronised)."""
    if TIMESYNCD_FLAG.exists():
        return True
    state = kernel_clock_state()
    return state is not None and state[0] != TIME_ERROR and not state[1] & STA_UNSYNC
