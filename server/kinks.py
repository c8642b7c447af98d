"""Straight-line checks on published readings (pure): how far a reading lies off the line between its neighbours
(``line_off``), when an image anchor is a kink (a confident misread that values alone cannot refute: ``kink``,
with a limit that grows with a bursty meter's load, ``kink_limit``, and not when it continues the trend before it,
``on_trend``), and when a held frame with a weak digit is too far off its neighbours' line (``off_line``).
See docs/validation.md ("Kinks").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from smartmeter.server.frames import Anchor, Frame, Rules, anchor_fine


def evenly_spaced(g1: float, g2: float) -> bool:
    """Are two consecutive gaps between captures (seconds) alike enough to draw a line through three readings? A
    gap, e.g. a withdrawn frame, hides load changes."""
    return min(g1, g2) > 0 and max(g1, g2) <= 1.5 * min(g1, g2)


def line_off(times: Sequence[float], fines: Sequence[float], res: float) -> float | None:
    """How many register steps the middle of three readings (capture times and fine values) lies off the straight
    line between the other two; None when they are not evenly spaced (``evenly_spaced``)."""
    (t0, t1, t2), (v0, v1, v2) = times, fines
    g1, g2 = t1 - t0, t2 - t1
    if not evenly_spaced(g1, g2):
        return None
    return (v1 - (v0 + (v2 - v0) * g1 / (g1 + g2))) / res


def kink_off(prev: Anchor, a: Anchor, nxt: Anchor, rules: Rules) -> float | None:
    """``line_off`` of the image anchor ``a`` between its neighbouring anchors; None when it is trusted or read
    more surely than ``kink_confidence`` (``sure``)."""
    if a.trusted or sure(a, rules):
        return None
    res = rules.resolution_kwh
    fines = [anchor_fine(x, res) for x in (prev, a, nxt)]
    return line_off((prev.t, a.t, nxt.t), fines, res)


def sure(a: Anchor, rules: Rules) -> bool:
    """Is the image anchor ``a`` read too surely to be a kink (its confidence, at most its weakest digit's, above
    ``kink_confidence``)? The misreads kinks catch are unsure ones: on held-out streams (bench/unseen_streams.py,
    adapter on; docs/validation.md, "A sure reading is not a kink") the rule withdrew 56 right readings and caught
    one misread, a rolling 3.6 read 5.75 at 0.88 (the same crop was read at up to 0.968 elsewhere); 34 of the
    right ones were read above 0.97. A digit the adapter answered for an unsure model reads exactly 0.97 and
    stays checked."""
    return a.confidence > rules.validation.kink_confidence


MIN_KINK_HISTORY = 8  # fewer recent offsets than this: the kink limit is kink_steps


def kink_limit(times: Sequence[float], fines: Sequence[float], rules: Rules) -> float:
    """How far off the line a reading may lie before it is a kink: ``kink_steps``, or more for a meter whose load
    is bursty (a water meter: a tap opened for a minute): ``kink_spread`` times the 90th percentile of how far the
    meter's recent published readings (capture times, oldest first, and fine values; those withdrawn since
    included, or a bursty meter's kinks would hide its burstiness) lie off the lines between their neighbours
    (``line_off``). On two 30-day held-out streams every one of 101 readings withdrawn at ``kink_steps`` alone
    was right (docs/validation.md)."""
    base, res = rules.validation.kink_steps, rules.resolution_kwh
    offs = [o for o in (line_off(times[i - 1:i + 2], fines[i - 1:i + 2], res) for i in range(1, len(times) - 1))
            if o is not None]
    if len(offs) < MIN_KINK_HISTORY or rules.validation.kink_spread <= 0:
        return base
    return max(base, rules.validation.kink_spread * float(np.quantile(np.abs(offs), 0.9)))


def kink(prev: Anchor, a: Anchor, nxt: Anchor, rules: Rules, limit: float | None = None,
         before: Anchor | None = None) -> str | None:
    """Why the image anchor ``a`` is a confident misread that values alone cannot refute: further than ``limit``
    (default ``kink_steps``) off the straight line between its neighbouring anchors (``kink_off``), and not on the
    trend of ``before`` and ``prev`` (``on_trend``); or None."""
    off = kink_off(prev, a, nxt, rules)
    if off is not None and abs(off) > (rules.validation.kink_steps if limit is None else limit):
        if before is not None and on_trend(before, prev, a, rules):
            return None
        return f"{off:+.1f} steps off the line between {prev.key} and {nxt.key}"
    return None


def on_trend(before: Anchor, prev: Anchor, a: Anchor, rules: Rules) -> bool:
    """Does ``a`` continue the line of the two anchors before it (evenly spaced, within ``surprise_steps``)? Then
    the load changed after ``a``, not its reading: a misread lies off that line as well as off its neighbours'. On
    5-day held-out streams every one of 45 readings withdrawn as kinks was right, most of them on such a trend
    (bench/unseen_streams.py, seed 11)."""
    res = rules.resolution_kwh
    g1, g2 = prev.t - before.t, a.t - prev.t
    if not evenly_spaced(g1, g2):
        return False
    b, p, x = (anchor_fine(y, res) for y in (before, prev, a))
    return abs(x - (p + (p - b) * g2 / g1)) <= rules.validation.surprise_steps * res + 1e-9


def off_line(frame: Frame, prev: Anchor, nxt: Anchor, rules: Rules) -> str | None:
    """Why a frame with a weak digit is not pinned by its neighbours: further than ``surprise_steps`` from the
    straight line between them. No later photo can witness the value at its time, so it is refused."""
    assert frame.value is not None
    res = rules.resolution_kwh
    fine = frame.fine(res)
    assert fine is not None
    if nxt.t <= prev.t:
        return None
    p, n = anchor_fine(prev, res), anchor_fine(nxt, res)
    off = fine - (p + (n - p) * (frame.t - prev.t) / (nxt.t - prev.t))
    if abs(off) > rules.validation.surprise_steps * res + 1e-9:
        return f"weak digit, {off / res:+.1f} steps off the line between {prev.key} and {nxt.key}"
    return None
