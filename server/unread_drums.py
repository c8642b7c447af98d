"""Drums a photo could not read, told by the published readings around it (pure rules, no database).

A photo is refused when one of its drums is unreadable, even when every other drum reads surely. But a register
only goes up: a photo taken between two published readings shows a value between them, so every drum on which
those two agree (the common leading digits) shows the same digit in the photo too. When the unreadable drums are
all among those and the drums the photo did read (the last one included) give exactly one value that fits both
neighbours (``frames.choose``: the rate rule both ways, and no surprise at the meter's typical power), that value
is what the photo shows. Nothing is guessed: the photo's own drums fix everything below the agreed digits, and the
neighbours fix the agreed digits.

The drums read must be sure (``first_confidence``): the value rests on them. The last drum may be the unread one
only between two neighbours that show the *same* value, both read at ``first_confidence``: the register cannot have
moved between them, so the photo shows that value (:func:`pinned_last`); between different values the last drum is
the photo's own evidence: the reader refused it but says how likely each digit is, and when that mass falls clearly
on one of the values the neighbours allow, that is the value (:func:`by_last_drum`); else the photo is refused. With
no reading after it yet, the reading before it may allow one value alone (:func:`carried`).

:func:`unread_choices` lists the values a refused photo may show (every filling of its unread drums that the
assembler accepts); :func:`fill` picks the one its neighbours allow. See docs/validation.md ("Unread drums").
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import replace

from smartmeter.ocr.assemble import assemble
from smartmeter.server.frames import Anchor, Frame, Rules, drum_text, just_below, surprise
from smartmeter.types import DigitValue

MAX_UNREAD = 2  # more unreadable drums than this: the photo is refused as before
# An unread last drum between different neighbours: the share of its digit mass on the values they allow that one
# digit must hold, and the least mass on those values (held-out crops the reader refuses, bench/last_drum.py).
EVIDENCE_SHARE = 0.9
EVIDENCE_MASS = 0.5


def unread(frame: Frame, rules: Rules) -> list[int] | None:
    """Indexes of the drums a refused frame could not read surely (``hold_confidence``), or None when it is not
    such a frame: it was read, has no drums, or has too many unread ones. Whether the neighbours can tell them is
    :func:`fill`'s question (the last drum only between equal neighbours, the others when what was read is sure)."""
    if frame.value is not None or frame.choices or not frame.digits:
        return None
    bar = rules.validation.hold_confidence
    idx = [i for i, d in enumerate(frame.digits) if d.value is None or d.confidence < bar]
    if not idx or len(idx) > MAX_UNREAD or len(idx) == len(frame.digits):
        return None
    return idx


def fillings(frame: Frame, i: int) -> list[float]:
    """The positions an unread drum ``i`` may be at: any digit, resting, half-way on, or as far on as the first
    drum read to its right (a drum carried along by its right neighbour's 9 -> 0 moves with it)."""
    right = next((d.value for d in frame.digits[i + 1:] if d.value is not None), None)
    fractions = {0.0, 0.5} | ({round(right % 1.0, 3)} if right is not None else set())
    return [d + f for d in range(10) for f in sorted(fractions)]


def unread_choices(frame: Frame, rules: Rules) -> tuple[float, ...]:
    """Every value the frame may show, its unread drums at any position :func:`fillings` lists that the
    assembler finds consistent with the drums read; () when it is not a frame with unread drums (:func:`unread`)."""
    idx = unread(frame, rules)
    return () if idx is None else _choices(frame, idx, rules)


def _choices(frame: Frame, idx: list[int], rules: Rules) -> tuple[float, ...]:
    positions = [d.value for d in frame.digits]
    out: set[float] = set()
    for fill_in in itertools.product(*(fillings(frame, i) for i in idx)):
        for i, x in zip(idx, fill_in, strict=True):
            positions[i] = x
        a = assemble(positions, decimals=rules.decimals)
        texts = [a.reading] if a.reading is not None else a.candidates
        out.update(round(float(t), 6) for t in texts)
    return tuple(sorted(out))


def known_confidence(frame: Frame, rules: Rules) -> float:
    """The lowest confidence of the drums the frame did read surely (the confidence of a filled reading)."""
    bar = rules.validation.hold_confidence
    sure = [d.confidence for d in frame.digits if d.value is not None and d.confidence >= bar]
    return min(sure, default=0.0)


def fill(frame: Frame, prev: Anchor | None, nxt: Anchor | None, rate: float, rules: Rules,
         between: Sequence[float] = ()) -> tuple[Frame | None, str]:
    """The frame read as the one value its neighbours allow it (the rule of ``frames.choose``; its confidence that
    of its sure drums, its drums as read), or None; and why. ``between``: the values of the other photos waiting
    between the neighbours (an unread last drum is told only when none of them reads another value)."""
    idx = unread(frame, rules)
    drums = ", ".join(str(i + 1) for i in idx or [])
    what = frame.error or f"digit {drums} unreadable"
    choices = () if idx is None else _choices(frame, idx, rules)
    if not choices:
        return None, what
    if prev is None or nxt is None:
        return None, f"{what}, and no published readings on both sides to tell digit {drums}"
    around = f"{prev.key} ({prev.value:g}) and {nxt.key} ({nxt.value:g})"
    last = idx is not None and idx[-1] == len(frame.digits) - 1
    pinned = last and pinned_last(prev, nxt, rules)
    own = last and not pinned and frame.digits[-1].digit_mass is not None  # its own drum must choose
    if last and not pinned and not own:
        return None, f"{what}: its last drum is told only between two sure readings of the same value, not {around}"
    if pinned and any(abs(v - prev.value) > rules.resolution_kwh * 1e-3 for v in between):
        # other photos between them read another value: one of the two may be a misread (a tenths drum at 3.6 read
        # 5.7 at 0.98, the photos after it read .4 and waited), and the value would be copied from it
        return None, f"{what}: photos between {around} read other values"
    sure = known_confidence(frame, rules)
    if sure < rules.validation.first_confidence:
        # what it did read must be sure: the value rests on it. An LCD's last '1' read as 7.10 at 0.88 filled
        # 59081.7 for 59081.1 (bench/unseen_streams.py lcd2 seed 43); on the line between two neighbours misread the
        # same way (7.14 at 0.84), a 7.136 at 0.82 copied their wrong 67054.7 (seed 47, adapter off)
        return None, f"{what}, and the drums it read are not sure ({sure:.2f} < {rules.validation.first_confidence})"
    agreed = [c for c in choices if rules.fits(prev.t, prev.value, frame.t, c)
              and rules.fits(frame.t, c, nxt.t, nxt.value)]
    drum = ""
    if own and agreed:
        chosen, drum = by_last_drum(frame, agreed, rules)
        if chosen is None:
            return None, f"{what}: {len(agreed)} of the values it may show fit {around}, and {drum}"
        agreed, drum = [chosen], f", {drum}"
    upper = just_below(frame, agreed, rules)
    agreed = agreed if upper is None else [upper]
    if len(agreed) != 1:
        return None, f"{what}: {len(agreed)} of the values it may show fit {around}"
    pick = replace(frame, value=agreed[0], confidence=sure, decimals=rules.decimals)
    why = surprise(pick, prev, nxt, rate, rules)
    if why is not None:
        return None, f"{what}: only {agreed[0]:g} fits {around}{drum}, but it is {why}"
    return pick, f"{what}; {agreed[0]:g} from its other digits{drum} and {around}"


def by_last_drum(frame: Frame, values: Sequence[float], rules: Rules) -> tuple[float | None, str]:
    """Of the ``values`` a refused frame's neighbours allow, the one its unread last drum itself shows, or None;
    and how it was told. The reader refused the drum (two half digits, spread over positions) but still says how
    likely each digit is (``DigitValue.digit_mass``); among the values allowed, one digit must hold
    :data:`EVIDENCE_SHARE` of the drum's mass on them, and they :data:`EVIDENCE_MASS` of its whole mass (a drum
    whose mass lies elsewhere, on a value the neighbours exclude, tells nothing). Two allowed values with the same
    last digit cannot be told by that drum."""
    mass = frame.digits[-1].digit_mass
    if mass is None:
        return None, "its last drum tells nothing"
    n = len(frame.digits)
    by_digit: dict[int, list[float]] = {}
    for v in values:
        text = drum_text(v, n, rules.decimals)
        if len(text) == n:
            by_digit.setdefault(int(text[-1]), []).append(v)
    best, share, total = told_digit(mass, by_digit)
    if total < EVIDENCE_MASS:
        return None, f"its last drum shows none of their last digits ({total:.2f} of its mass on them)"
    if share < EVIDENCE_SHARE or len(by_digit[best]) != 1:
        return None, f"its last drum does not tell them apart (a {best} at {share:.2f} of its mass on them)"
    return by_digit[best][0], f"its last drum a {best} ({share:.2f} of its mass on the values allowed)"


def told_digit(mass: Sequence[float], digits: Iterable[int]) -> tuple[int, float, float]:
    """Of ``digits``, the one with the most of a drum's ``mass``; its share of the mass on ``digits``; that mass.
    :func:`by_last_drum` takes the digit when the share is at least :data:`EVIDENCE_SHARE` and the mass at least
    :data:`EVIDENCE_MASS` (bench/last_drum.py measures both on held-out crops)."""
    on = {d: float(mass[d]) for d in digits}
    if not on:
        return -1, 0.0, 0.0
    best = max(on, key=lambda d: on[d])
    total = sum(on.values())
    return best, (on[best] / total if total > 0 else 0.0), total


def carried(frame: Frame, prev: Anchor, rules: Rules) -> Frame | None:
    """The frame read as the one value the reading before it allows, or None. A slow drum that turns to a digit the
    reader cannot read (an LCD's hundreds turning to a '1' the model never saw) stays unreadable in every photo
    after it, so no photo after it is ever published and none can tell it from both sides (``fill``). But the
    register only goes up, by at most ``max_power_w`` in the time: from 63099.8 a quarter of an hour earlier,
    630?2.0 can only be 63102.0 (63002.0 runs backwards, 63202.0 is 100 kWh). The other drums must read at
    ``first_confidence`` and the last one among them; the frame is then judged like a read one (fits, surprise,
    witnesses), its unread drums taken as read at that confidence."""
    idx = unread(frame, rules)
    if idx is None or idx[-1] == len(frame.digits) - 1:
        return None
    sure = known_confidence(frame, rules)
    if sure < rules.validation.first_confidence:
        return None
    fitting = sorted({c for c in _choices(frame, idx, rules) if rules.fits(prev.t, prev.value, frame.t, c)})
    if len(fitting) != 1:
        return None
    value = fitting[0]
    text = drum_text(value, len(frame.digits), rules.decimals)
    if len(text) != len(frame.digits):
        return None
    digits = [DigitValue(float(text[i]), sure) if i in idx else d for i, d in enumerate(frame.digits)]
    drums = ", ".join(str(i + 1) for i in idx)
    return replace(frame, value=value, confidence=sure, digits=digits, decimals=rules.decimals, error=None,
                   note=f"digit {drums} unreadable, {value:g} the only value {prev.key} ({prev.value:g}) allows")


def pinned_last(prev: Anchor, nxt: Anchor, rules: Rules) -> bool:
    """Can the neighbours tell an unread last drum? Only when both show the same value, each read surely (or set
    by a person): the register did not move between them. Between different values the photo would get a value of
    the neighbours' choosing, and a misread neighbour copied (a tenths drum at 3.6 read 5.7 in one photo of a
    30-day emeter1 stream, and the next photo got the same wrong 12540.5)."""
    first = rules.validation.first_confidence
    return (abs(prev.value - nxt.value) < rules.resolution_kwh * 1e-3
            and all(a.trusted or a.confidence >= first for a in (prev, nxt)))
