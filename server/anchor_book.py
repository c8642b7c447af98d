"""A meter's published readings (anchors) in capture-time order, and what the validator reads off them: the
anchors around a time, whether a value fits between them, and the meter's recent history (its typical rate and
its kink limit, cached per hour). ``smartmeter.server.validation.MeterValidator`` builds on it; the rules it
applies are the pure ones of ``smartmeter.server.frames``.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from smartmeter.server.frames import DAY_S, HOUR_S, Anchor, Rules, anchor_fine, typical_rate
from smartmeter.server.kinks import kink_limit

MAX_HISTORY = 200  # readings of the day before that the history rules look at, at most
_T = TypeVar("_T", bound=tuple[Any, ...])


def _time(entry: tuple[Any, ...]) -> float:
    return float(entry[0])


class AnchorBook:
    """The anchors of one meter, sorted by capture time, with per-hour caches of their history."""

    def __init__(self, rules: Rules, anchors: Iterable[Anchor] = ()) -> None:
        self.rules = rules
        self._order: list[tuple[float, str]] = []
        self._anchors: dict[str, Anchor] = {}
        self._rates: dict[int, float] = {}  # typical rate by hour (epoch hours)
        self._limits: dict[int, float] = {}  # kink limit by hour
        self._rates_end = 0.0  # start of the latest hour cached
        self._published: list[tuple[float, float]] = []  # (time, fine) of every anchor ever added, withdrawn too
        for a in anchors:
            self._insert(a)

    @property
    def anchors(self) -> list[Anchor]:
        return [self._anchors[k] for _, k in self._order]

    def _insert(self, a: Anchor) -> None:
        if a.t < self._rates_end:
            self._forget_history()  # the history of a cached hour changed
        bisect.insort(self._order, (a.t, a.key))
        self._anchors[a.key] = a
        bisect.insort(self._published, (a.t, anchor_fine(a, self.rules.resolution_kwh)))
        if len(self._published) > 2 * MAX_HISTORY:
            del self._published[:MAX_HISTORY]

    def _remove(self, key: str) -> Anchor:
        a = self._anchors.pop(key)
        i = bisect.bisect_left(self._order, (a.t, key))
        del self._order[i]
        self._forget_history()
        return a

    def _forget_history(self) -> None:
        self._rates.clear()
        self._limits.clear()
        self._rates_end = 0.0

    def _around(self, t: float, skip: frozenset[str] = frozenset()) -> tuple[Anchor | None, Anchor | None]:
        """Nearest anchors before (<= t) and after (> t), ignoring keys in ``skip``."""
        i = bisect.bisect_right(self._order, (t, "\uffff"))
        prev = nxt = None
        j = i - 1
        while j >= 0 and prev is None:
            if self._order[j][1] not in skip:
                prev = self._anchors[self._order[j][1]]
            j -= 1
        j = i
        while j < len(self._order) and nxt is None:
            if self._order[j][1] not in skip:
                nxt = self._anchors[self._order[j][1]]
            j += 1
        return prev, nxt

    def _after(self, t: float) -> int:
        return len(self._order) - bisect.bisect_right(self._order, (t, "\uffff"))

    def _fits_around(self, t: float, v: float, skip: frozenset[str] = frozenset()) -> tuple[bool, list[Anchor]]:
        prev, nxt = self._around(t, skip)
        bad = [a for a in (prev, nxt) if a is not None and not self.rules.fits(a.t, a.value, t, v)]
        return not bad, bad

    # -- history -----------------------------------------------------------------------------------------
    def _day_before(self, items: Sequence[_T], hour: int) -> Sequence[_T]:
        """The entries of ``items`` (sorted, capture time first) of the day before the start of ``hour`` (epoch
        hours), at most ``MAX_HISTORY``; the caches of that hour are forgotten when an anchor comes before it."""
        end = hour * HOUR_S
        hi = bisect.bisect_left(items, end, key=_time)
        lo = max(bisect.bisect_left(items, end - DAY_S, key=_time), hi - MAX_HISTORY)
        self._rates_end = max(self._rates_end, end)
        return items[lo:hi]

    def _rate(self, t: float) -> float:
        """The typical top rate (kWh/s) from the day of anchors before the hour of ``t`` (cached per hour)."""
        hour = int(t // HOUR_S)
        if hour not in self._rates:
            day = [self._anchors[k] for _, k in self._day_before(self._order, hour)]
            fines = [anchor_fine(a, self.rules.resolution_kwh) for a in day]
            rate = typical_rate([a.t for a in day], fines, self.rules)
            self._rates[hour] = self.rules.validation.initial_power_w / 3.6e6 if rate is None else rate
        return self._rates[hour]

    def _kink_limit(self, t: float) -> float:
        """``kinks.kink_limit`` over the day of readings published before the hour of ``t`` (cached per hour)."""
        hour = int(t // HOUR_S)
        if hour not in self._limits:
            day = self._day_before(self._published, hour)
            self._limits[hour] = kink_limit([p[0] for p in day], [p[1] for p in day], self.rules)
        return self._limits[hour]
