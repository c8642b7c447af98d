"""What cross-frame validation works with: the meter's rules, a frame (one photo's OCR result), a published
reading (anchor), a decision, the values a frame may stand for when drums are caught mid-roll, and the evidence
rules (pure): the meter's typical power from its history, and when a reading is a surprise that needs independent
witnesses (``typical_rate``, ``surprise``).

``smartmeter.server.validation.MeterValidator`` judges frames with these (docs/validation.md).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import numpy as np

from smartmeter.domain import step_violation
from smartmeter.ocr.assemble import RESTING_BAND
from smartmeter.settings import MeterSettings, Settings, ValidationSettings
from smartmeter.types import DigitValue, OcrResult, utc


class Action(StrEnum):
    PUBLISH = "publish"
    HOLD = "hold"
    SUSPECT = "suspect"
    REJECT = "reject"
    CORRECT = "correct"
    WITHDRAW = "withdraw"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Rules:
    """The validation settings of one meter: its register's limits and the validation section, as configured."""

    meter: MeterSettings = field(default_factory=lambda: MeterSettings(id="meter"))
    validation: ValidationSettings = field(default_factory=ValidationSettings)

    @classmethod
    def from_settings(cls, settings: Settings, meter_id: str) -> Rules:
        return cls(settings.meter(meter_id), settings.validation)

    @classmethod
    def of(cls, **values: float) -> Rules:
        """The default rules with some values changed, by field name of either section (tests, benchmarks)."""
        meter = {k: v for k, v in values.items() if k in MeterSettings.model_fields}
        unknown = set(values) - set(meter) - set(ValidationSettings.model_fields)
        if unknown:
            raise TypeError(f"no such validation setting: {', '.join(sorted(unknown))}")
        validation = {k: v for k, v in values.items() if k not in meter}
        return cls(MeterSettings(id="meter", **meter), ValidationSettings(**validation))  # type: ignore[arg-type]

    @property
    def resolution_kwh(self) -> float:
        return self.meter.resolution_kwh

    @property
    def decimals(self) -> int:
        return max(0, round(-math.log10(self.resolution_kwh)))

    def fits(self, t1: float, v1: float, t2: float, v2: float) -> bool:
        """Can the register go from v1 at t1 to v2 at t2 (epoch seconds, either order)? The rule is
        ``smartmeter.domain.step_violation``, the one ingest applies too."""
        if t2 < t1:
            t1, v1, t2, v2 = t2, v2, t1, v1
        return step_violation(t2 - t1, v2 - v1, self.meter) is None


@dataclass
class Frame:
    """One photo as the validator sees it: capture time, value read, per-digit detail."""

    key: str
    ts: datetime
    value: float | None
    confidence: float
    digits: list[DigitValue] = field(default_factory=list)
    reader_version: str = ""
    decimals: int | None = None
    error: str | None = None
    choices: tuple[float, ...] = ()  # refused by the assembler: the readings all plausible (``choose``)
    note: str = ""  # how a refused frame's value was told (``unread_drums.carried``): added to the reason published

    def __post_init__(self) -> None:
        self.ts = utc(self.ts)
        self.t = self.ts.timestamp()

    @classmethod
    def from_ocr(cls, key: str, ts: datetime, result: OcrResult) -> Frame:
        text = result.reading or (result.candidates[0] if result.candidates else None)
        decimals = None if text is None else len(text.rsplit(".", 1)[1]) if "." in text else 0
        return cls(key, ts, result.value, result.confidence, list(result.digits), result.reader_version,
                   decimals, result.error, parse_choices(result.candidates) if result.value is None else ())

    def fine(self, resolution: float) -> float | None:
        """The value with the last drum's fraction added (mid-step estimate when the drum does not match)."""
        if self.value is None:
            return None
        last = self.digits[-1].value if self.digits else None
        if last is not None:
            step = round(self.value / resolution) % 10
            lo = math.floor(last)
            if lo % 10 == step:
                return self.value + (last - lo) * resolution
            if (lo + 1) % 10 == step:  # snapped up: the drum is just below the shown number
                return self.value - (lo + 1 - last) * resolution
        return self.value + resolution / 2


@dataclass(frozen=True)
class Anchor:
    """A published reading. ``trusted`` anchors (review, import) are never overruled by frames."""

    key: str
    ts: datetime
    value: float
    trusted: bool = False
    confidence: float = 1.0
    reader_version: str = ""
    fine: float | None = None  # value with the last drum's fraction (None: value + half a step)

    @property
    def t(self) -> float:
        return self.ts.timestamp()


@dataclass(frozen=True)
class Decision:
    """What happened to one photo. ``value`` is the published/corrected value; ``old_value`` the replaced one."""

    action: Action
    key: str
    ts: datetime
    value: float | None
    reason: str
    old_value: float | None = None
    evidence: tuple[str, ...] = ()
    confidence: float = 0.0
    reader_version: str = ""


def mid_roll(frame: Frame, rules: Rules) -> list[int]:
    """Indexes of non-last digits caught between two numbers (drum position frac in [band, 1 - band])."""
    out = []
    for i, d in enumerate(frame.digits[:-1]):
        if d.value is not None:
            frac = d.value - math.floor(d.value)
            if rules.validation.transition_band <= frac <= 1 - rules.validation.transition_band:
                out.append(i)
    return out


def candidates(frame: Frame, rules: Rules) -> list[float]:
    """Values the register may show when mid-roll digits are taken one number lower or higher."""
    if frame.value is None:
        return []
    idx = mid_roll(frame, rules)
    decimals = frame.decimals if frame.decimals is not None else rules.decimals
    n = len(frame.digits)
    steps = [10.0 ** (n - 1 - i - decimals) for i in idx]
    out = {round(frame.value + sum(s * k for s, k in zip(steps, ks, strict=True)), 6)
           for ks in itertools.product((-1, 0, 1), repeat=len(steps))}
    return sorted(v for v in out if v >= 0)


HOUR_S = 3600.0
DAY_S = 86400.0
MIN_HISTORY_S = 6 * HOUR_S  # less history than this: the typical power is unknown


def anchor_fine(a: Anchor, resolution: float) -> float:
    return a.fine if a.fine is not None else a.value + resolution / 2


def typical_rate(times: Sequence[float], fines: Sequence[float], rules: Rules) -> float | None:
    """The meter's typical top rate, kWh/s: the highest rate over an hour or more between the published readings
    of the last day (capture times, oldest first, and their fine values), times ``typical_power_margin``. None with
    under 6 h of history."""
    if len(times) < 2 or times[-1] - times[0] < MIN_HISTORY_S:
        return None
    t, v = np.asarray(times, np.float64), np.asarray(fines, np.float64)
    i = np.arange(len(t))
    j = np.maximum(np.searchsorted(t, t + HOUR_S, "left"), i + 1)
    ok = j < len(t)
    if not ok.any():
        return None
    i, j = i[ok], j[ok]
    best = float(np.max((v[j] - v[i]) / (t[j] - t[i])))
    return max(best, 0.0) * rules.validation.typical_power_margin


def weak(frame: Frame, rules: Rules) -> bool:
    """A digit read below ``hold_confidence``."""
    return any(d.confidence < rules.validation.hold_confidence for d in frame.digits)


def surprise(frame: Frame, prev: Anchor | None, nxt: Anchor | None, rate: float, rules: Rules) -> str | None:
    """Why the frame's value is further than ``surprise_steps`` from the expected register, or None.

    Expected: from the anchor before, a rise of at most the typical rate over the time between; to the anchor
    after, likewise. A surprise is not refused: it needs ``witnesses`` independent values."""
    assert frame.value is not None
    res = rules.resolution_kwh
    slack = rules.validation.surprise_steps * res
    fine = frame.fine(res)
    assert fine is not None
    if prev is not None:
        rise = fine - anchor_fine(prev, res) - rate * (frame.t - prev.t)
        if rise > slack + 1e-9:
            return f"{rise / res:.1f} steps above the expected register after {prev.key}"
    if nxt is not None:
        short = anchor_fine(nxt, res) - fine - rate * (nxt.t - frame.t)
        if short > slack + 1e-9:
            return f"{short / res:.1f} steps below the expected register before {nxt.key}"
    return None


def unanchored(frame: Frame, prev: Anchor | None, rules: Rules) -> str | None:
    """Why a frame before the meter's first anchor (``prev`` None) may not be its first reading: a digit read
    below ``first_confidence``. Nothing can check it, and a misread drum that does not move reads the same in
    every photo, so later photos are no witnesses (docs/validation.md); None when it may be. The digits count,
    not the whole reading's confidence: that one also falls when a resting drum of a meter the model never saw
    reads a little off its digit (an altair 2 read 2.27: whole-reading confidence 0.85, every digit >= 0.97),
    and such a meter got no first reading in 8 days, so nothing at all was stored."""
    first = rules.validation.first_confidence
    least = min((d.confidence for d in frame.digits), default=frame.confidence)
    if prev is None and least < first:
        return f"first reading of the meter, a digit read at {least:.2f} < {first:.2f}"
    return None


def drum_text(value: float, drums: int, decimals: int) -> str:
    """The digits ``drums`` drums show for ``value`` with ``decimals`` of them after the point ("0124693" for
    12469.3 on 7 drums, 1 decimal); longer than ``drums`` when the value does not fit."""
    return f"{value:0{drums + (1 if decimals else 0)}.{decimals}f}".replace(".", "")


SLOW_FROM = 2  # drums left of the last two turn a hundred register steps apart: later photos rarely re-read them
SLOW_STEPS = 10 ** SLOW_FROM  # a dispute this many register steps wide is one about slow drums


def disputed(frame: Frame, anchor: Anchor, rules: Rules) -> list[int]:
    """Indexes of the frame's slow drums (all but the last ``SLOW_FROM``) that show another digit than ``anchor``'s
    value. The last two move often enough that later values read them again; the others may not move for days."""
    n = len(frame.digits)
    if frame.value is None or n <= SLOW_FROM:
        return []
    dec = frame.decimals if frame.decimals is not None else rules.decimals
    mine, theirs = drum_text(frame.value, n, dec), drum_text(anchor.value, n, dec)
    if len(mine) != n or len(theirs) != n:
        return list(range(n - SLOW_FROM))
    return [i for i in range(n - SLOW_FROM) if mine[i] != theirs[i]]


def unsure_dispute(group: Sequence[Frame], conflicts: Sequence[Anchor], rules: Rules) -> str | None:
    """Why the frames of ``group`` cannot outweigh the ``conflicts`` (overrule them in a consensus, or witness a
    surprise against them): they disagree with one by ``SLOW_STEPS`` or more, and a slow drum on which they do
    (``disputed``) no frame of the group read at ``first_confidence``. Such a drum does not move between the
    group's photos, so its misread repeats, and distinct values, made by the moving drums, witness nothing about it
    (an LCD's new '1' read as 7 at 0.70-0.87 in every photo: 63709 for 63109 was published as a surprise that
    later values "witnessed", and 168 wrong values were stored in 4 days, bench/unseen_streams.py --meters lcd2
    --seed 27). None when they can."""
    first, res = rules.validation.first_confidence, rules.resolution_kwh
    for a in conflicts:
        wide = [g for g in group if g.value is not None and abs(g.value - a.value) >= SLOW_STEPS * res - 1e-9]
        for i in sorted({i for g in wide for i in disputed(g, a, rules)}):
            best = max((g.digits[i].confidence for g in wide if i < len(g.digits)), default=0.0)
            if best < first:
                return f"digit {i + 1} read at {best:.2f} at best, where it disagrees with {a.key} ({a.value:g})"
    return None


def parse_choices(texts: Sequence[str] | str) -> tuple[float, ...]:
    """The values of the readings an assembler found all plausible (``OcrResult.candidates``, or the photos
    table's ``reading`` of such a frame: ``"1834 or 1835"``); () when fewer than two or not numbers."""
    if isinstance(texts, str):
        texts = texts.split(" or ")
    try:
        values = tuple(float(t) for t in texts)
    except ValueError:
        return ()
    return values if len(values) > 1 else ()


def just_below(frame: Frame, values: Sequence[float], rules: Rules) -> float | None:
    """Of two readings one step apart that both fit the neighbours, the upper one when the frame's last drum reads
    just below its digit (``ocr.assemble.RESTING_BAND`` on: 4.85-4.92 for a 5). That drum is a resting 5 read low,
    or a 4 about to roll: the upper reading is at most 0.15 of a step above the register either way, the lower a
    whole step below it in the first case (the CNN reads resting digits of unseen meters up to 0.1 low). None
    otherwise."""
    last = frame.digits[-1].value if frame.digits else None
    if len(values) != 2 or last is None or last % 1.0 < RESTING_BAND:
        return None
    res = rules.resolution_kwh
    lo, hi = sorted(values)
    if abs(hi - lo - res) > res * 1e-3 or round(hi / res) % 10 != (math.floor(last) + 1) % 10:
        return None
    return hi


def choose(frame: Frame, prev: Anchor | None, nxt: Anchor | None, rate: float, rules: Rules
           ) -> tuple[float | None, str]:
    """Which of a refused frame's plausible readings (``frame.choices``) its neighbours allow: the value, or None,
    and why. History chooses only when there are anchors on both sides, exactly one reading fits both (the rule of
    ``Rules.fits``, as for a held frame) and that one is no surprise (``surprise``, at the typical ``rate``; its
    fine value is mid-step, as the anchor it becomes)."""
    shown = " or ".join(f"{c:g}" for c in frame.choices)
    if prev is None or nxt is None:
        return None, f"{shown}: both plausible, and no neighbours on both sides to choose"
    fitting = [c for c in frame.choices
               if rules.fits(prev.t, prev.value, frame.t, c) and rules.fits(frame.t, c, nxt.t, nxt.value)]
    upper = just_below(frame, fitting, rules)
    fitting = fitting if upper is None else [upper]
    if len(fitting) != 1:
        which = "fit" if fitting else "fits"
        return None, f"{shown}: {'both' if fitting else 'neither'} {which} {prev.key} ({prev.value:g}) and " \
                     f"{nxt.key} ({nxt.value:g})"
    pick = Frame(frame.key, frame.ts, fitting[0], frame.confidence, [], frame.reader_version, frame.decimals)
    why = surprise(pick, prev, nxt, rate, rules)
    if why is not None:
        return None, f"{shown}: only {fitting[0]:g} fits the neighbours, but it is {why}"
    how = "(the last drum just below its digit) fits" if upper is not None else "chosen by"
    return fitting[0], f"{shown} read; {fitting[0]:g} {how} {prev.key} ({prev.value:g}) and {nxt.key} " \
                       f"({nxt.value:g})"


def witnessed(frame: Frame, later: Sequence[tuple[float, float]], rules: Rules) -> bool:
    """Do ``witnesses - 1`` of the ``later`` (time, value) readings, each different from the one before, follow
    ``frame`` in a chain that fits it? Equal values are one witness; the first different one that does not fit
    contradicts it."""
    assert frame.value is not None
    need = rules.validation.witnesses - 1
    t, v = frame.t, frame.value
    for gt, gv in sorted(later):
        if need <= 0:
            break
        if abs(gv - v) < rules.resolution_kwh / 2:
            continue
        if not rules.fits(t, v, gt, gv):
            return False
        need -= 1
        t, v = gt, gv
    return need <= 0


def consensus_witnesses(group: Sequence[Frame], prev: Anchor | None, rules: Rules) -> int:
    """Independent witnesses of a consensus group: its distinct values, plus one when ``prev`` (the anchor just
    before the ones it overrules) shows the group's first value."""
    n = len({g.value for g in group})
    g = group[0]
    assert g.value is not None
    if prev is not None and prev.t < g.t and abs(prev.value - g.value) < rules.resolution_kwh / 2:
        n += 1
    return n
