"""Cross-frame validation: a per-meter state machine that turns OCR results into trusted readings.

A single frame is never judged alone. Each meter keeps its *anchors* (published readings, sorted by capture
time) and a small pool of *pending* frames (held near a digit transition, or suspect because they disagree with
their neighbours). Every new frame is judged against the anchors just before and after its capture time, so
out-of-order delivery is handled and an old frame never moves the register backwards.

Outcomes (``Action``): PUBLISH a reading; HOLD a mid-roll or low-confidence frame until ``confirm_frames`` later
anchors confirm it; SUSPECT a frame that disagrees with its neighbours; REJECT a frame to the review queue;
CORRECT (replace the value of) or WITHDRAW (remove) an anchor that later frames overrule. See docs/validation.md.

A photo refused for unreadable upper drums is held too: its neighbours may tell them (``unread_drums``).
Evidence is counted by independent witnesses, not by frames: a frame further than a step from the expected
register (``frames.surprise``) waits until ``witnesses`` distinct values agree with it, and consensus compares
distinct values, since repeated photos of a drum that has not moved repeat the same misread.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Sequence

from smartmeter.server.anchor_book import AnchorBook
from smartmeter.server.frames import (
    Action,
    Anchor,
    Decision,
    Frame,
    Rules,
    candidates,
    choose,
    consensus_witnesses,
    mid_roll,
    surprise,
    unanchored,
    unsure_dispute,
    weak,
    witnessed,
)
from smartmeter.server.kinks import kink, off_line
from smartmeter.server.unread_drums import carried, fill, unread

log = logging.getLogger(__name__)


# A meter with no reading yet whose pending pool overflows: a digit is never read surely enough for the first
# reading (an LCD '1' the model reads as 7, 1 or 0 in every photo: bench/unseen_streams.py --meters lcd2 --seed
# 11 stored nothing in 30 days, and 90.0 % with the register confirmed once). Values cannot tell such a digit; a
# person can.
NO_FIRST_READING = ("; no reading of this meter has been sure enough to be its first: read the register off the "
                    "meter and confirm it once (smartmeter meter confirm {meter} --reading ...)")


def first_reading_hint(meter_id: str, photos: int, readings: int, after: int) -> str | None:
    """What to do about a meter with ``photos`` photos and ``readings`` stored readings: confirm its register
    once, when it has at least ``after`` photos (``validation.confirm_hint_photos``) and not one reading; else
    None. Until the pending pool overflows (``max_pending``) such photos only wait, silently."""
    if readings or photos < after:
        return None
    return (f"{photos} photos of meter {meter_id} and no reading stored yet: none has been sure enough to be its "
            f"first. Read the register off the meter and confirm it once (smartmeter meter confirm {meter_id} "
            "--reading ..., or the setup page)")


class MeterValidator(AnchorBook):
    """The state machine of one meter. ``feed`` frames in any order; apply the returned decisions in order."""

    def __init__(self, meter_id: str, rules: Rules, anchors: Iterable[Anchor] = (),
                 pending: Iterable[tuple[Frame, Action]] = ()) -> None:
        super().__init__(rules, anchors)
        self.meter_id = meter_id
        self._pending: dict[str, tuple[Frame, Action]] = {}
        self._new: list[float] = []  # times of anchors published since the last kink check
        for f, kind in pending:
            if f.value is None and kind is Action.SUSPECT:  # a carried frame (its photo row keeps no value)
                prev, _ = self._around(f.t)
                told = carried(f, prev, rules) if prev is not None else None
                f, kind = (told, kind) if told is not None else (f, Action.HOLD)
            self._pending[f.key] = (f, kind)
        # the worker log says once that this meter needs its register confirmed: when its pending pool first
        # reaches ``confirm_hint_photos`` (a validator restored with that many already pending has said it)
        self._hinted = len(self._pending) >= rules.validation.confirm_hint_photos

    @property
    def pending(self) -> list[tuple[Frame, Action]]:
        return sorted(self._pending.values(), key=lambda p: (p[0].t, p[0].key))

    # -- entry points ------------------------------------------------------------------------------------
    def feed(self, frame: Frame) -> list[Decision]:
        """Judge one frame; returns every decision it caused (also on earlier frames)."""
        r = self.rules.validation
        if frame.key in self._anchors or frame.key in self._pending:
            return [self._decide(Action.DUPLICATE, frame, None, "photo already judged")]
        if frame.value is None:  # unread drums the reading before allows one value for (unread_drums.carried)
            prev, nxt = self._around(frame.t)
            if prev is not None and nxt is None:
                frame = carried(frame, prev, self.rules) or frame
        # refused, but the neighbours may choose between plausible readings or tell its unread drums
        told = (frame.choices and frame.confidence >= r.min_confidence) or unread(frame, self.rules) is not None
        if frame.value is None and told and r.confirm_frames > 0:
            self._pending[frame.key] = (frame, Action.HOLD)
            return [self._decide(Action.HOLD, frame, None, f"{frame.error}; waits for neighbours"), *self._resolve()]
        if frame.value is None or frame.confidence < r.min_confidence:
            why = frame.error or ("unreadable" if frame.value is None
                                  else f"confidence {frame.confidence:.2f} < {r.min_confidence:.2f}")
            return [self._decide(Action.REJECT, frame, frame.value, why)]
        out: list[Decision] = []
        rolling = mid_roll(frame, self.rules)
        weak = [i for i, d in enumerate(frame.digits) if d.confidence < r.hold_confidence]
        if (rolling or weak) and r.confirm_frames > 0:
            why = f"digit {rolling[0] + 1} mid-roll" if rolling else f"digit {weak[0] + 1} low confidence"
            self._pending[frame.key] = (frame, Action.HOLD)
            out.append(self._decide(Action.HOLD, frame, frame.value, why))
        else:
            out.extend(self._judge(frame))
        out.extend(self._resolve())
        return out

    def add_trusted(self, anchor: Anchor) -> list[Decision]:
        """A value set by a person (review) becomes an anchor; image anchors that disagree are withdrawn."""
        out: list[Decision] = []
        self._pending.pop(anchor.key, None)
        if anchor.key in self._anchors:
            self._remove(anchor.key)
        for a in list(self.anchors):
            if not a.trusted and not self.rules.fits(a.t, a.value, anchor.t, anchor.value):
                out.extend(self._withdraw([a], f"disagrees with reviewed value of {anchor.key}", (anchor.key,)))
        self._insert(anchor)
        out.extend(self._resolve())
        return out

    # -- judging -----------------------------------------------------------------------------------------
    def _decide(self, action: Action, f: Frame, value: float | None, reason: str, old: float | None = None,
                evidence: tuple[str, ...] = ()) -> Decision:
        return Decision(action, f.key, f.ts, value, reason, old, evidence, f.confidence, f.reader_version)

    def _publish(self, f: Frame, value: float, reason: str) -> Decision:
        self._pending.pop(f.key, None)
        fine = f.fine(self.rules.resolution_kwh) if value == f.value else None
        self._insert(Anchor(f.key, f.ts, value, False, f.confidence, f.reader_version, fine))
        self._new.append(f.t)
        return self._decide(Action.PUBLISH, f, value, f"{reason}; {f.note}" if f.note else reason)

    def _kinks(self, t: float) -> list[Decision]:
        """Check the image anchors next to a new anchor at ``t`` (``kinks.kink``): one far off the straight line
        between its own neighbours is a confident misread that values alone cannot refute; it is withdrawn."""
        i = bisect.bisect_left(self._order, (t, ""))
        for j in (i - 1, i + 1):
            if not 1 <= j < len(self._order) - 1:
                continue
            p, a, n = (self._anchors[self._order[x][1]] for x in (j - 1, j, j + 1))
            before = self._anchors[self._order[j - 2][1]] if j >= 2 else None
            why = kink(p, a, n, self.rules, self._kink_limit(a.t), before)
            if why is None:
                continue
            new = p if p.t == t else n if n.t == t else None
            sure = min(a.confidence, self.rules.validation.first_confidence)
            if new is None or new.trusted or new.confidence >= sure:
                return self._withdraw([a], why, (p.key, n.key))
            # the reading that makes ``a`` a kink is not sure, and less sure than ``a`` itself: either may be the
            # misread (a sure reading withdrawn next to a weaker misread kept, docs/validation.md "Kinks"): both go
            for x in (a, new):
                self._remove(x.key)
            return [*self._replace([a], why, (p.key, n.key)),
                    *self._replace([new], f"makes {a.key}, read more surely ({a.confidence:.2f} against "
                                          f"{new.confidence:.2f}), a kink: either may be the misread", (a.key,))]
        return []

    def _judge(self, f: Frame) -> list[Decision]:
        assert f.value is not None
        ok, bad = self._fits_around(f.t, f.value)
        if ok:
            why = self._unproven(f)
            if why is None:
                return [self._publish(f, f.value, "consistent with neighbours")]
            self._pending[f.key] = (f, Action.SUSPECT)
            return [self._decide(Action.SUSPECT, f, f.value, f"needs independent evidence: {why}")]
        self._pending[f.key] = (f, Action.SUSPECT)
        return [self._decide(Action.SUSPECT, f, f.value, "disagrees with " + ", ".join(
            f"{a.key} ({a.value:g})" for a in bad))]

    def _resolve(self) -> list[Decision]:
        """Settle pending frames until nothing changes: confirm held, promote/age suspects, find consensus."""
        out: list[Decision] = []
        changed = True
        while changed:
            changed = False
            while self._new:
                got = self._kinks(self._new.pop())
                out.extend(got)
                changed = changed or bool(got)
            for f, kind in self.pending:
                if f.key not in self._pending:
                    continue
                if kind is Action.HOLD:
                    if self._after(f.t) >= self.rules.validation.confirm_frames:
                        out.extend(self._settle_held(f))
                        changed = True
                    continue
                assert f.value is not None
                ok, _ = self._fits_around(f.t, f.value)
                if ok and self._unproven(f) is None:
                    out.append(self._publish(f, f.value, "consistent after neighbours changed"))
                    changed = True
                elif ok:
                    continue  # fits but unproven: waits for a witness with another value (or a contradiction)
                elif self._after(f.t) >= self.rules.validation.consensus_frames:
                    out.extend(self._age_out(f))
                    changed = True
            if not changed:
                got = self._consensus()
                if got:
                    out.extend(got)
                    changed = True
            hint = None if self._order or self._hinted else first_reading_hint(
                self.meter_id, len(self._pending), 0, self.rules.validation.confirm_hint_photos)
            if hint:
                log.warning("%s", hint)
                self._hinted = True
            while len(self._pending) > self.rules.validation.max_pending:
                f, _ = self.pending[0]
                del self._pending[f.key]
                out.append(self._decide(Action.REJECT, f, f.value, "not confirmed in time (pending pool full)"
                                        + ("" if self._order else NO_FIRST_READING.format(meter=self.meter_id))))
        return out

    def _settle_held(self, f: Frame) -> list[Decision]:
        prev, nxt = self._around(f.t)
        if f.value is None:  # refused between plausible readings (frames.choose) or with unread drums
            if f.choices:
                value, chosen = choose(f, prev, nxt, self._rate(f.t), self.rules)
            else:
                between = [g.value for g, _ in self.pending if g.value is not None and g.key != f.key
                           and prev is not None and nxt is not None and prev.t < g.t < nxt.t]
                told, chosen = fill(f, prev, nxt, self._rate(f.t), self.rules, between)
                f, value = (told, told.value) if told is not None else (f, None)
            if value is not None:
                return [self._publish(f, value, chosen)]
            del self._pending[f.key]
            return [self._decide(Action.REJECT, f, None, chosen, evidence=tuple(a.key for a in (prev, nxt) if a))]
        ok, _ = self._fits_around(f.t, f.value)
        if prev is not None and nxt is not None and ok and weak(f, self.rules):
            loose = off_line(f, prev, nxt, self.rules)
            if loose is not None:
                del self._pending[f.key]
                return [self._decide(Action.REJECT, f, f.value, loose, evidence=(prev.key, nxt.key))]
        if ok:
            why = self._unproven(f)
            if why is None:
                return [self._publish(f, f.value, "held frame confirmed by neighbours")]
            self._pending[f.key] = (f, Action.SUSPECT)
            return [self._decide(Action.SUSPECT, f, f.value, f"held frame needs independent evidence: {why}")]
        fitting = [c for c in candidates(f, self.rules) if self._fits_around(f.t, c)[0]]
        narrow = prev is not None and nxt is not None and nxt.value - prev.value <= self.rules.resolution_kwh * 1.001
        if narrow and len(fitting) == 1:  # the neighbours pin the value to within one step
            return [self._publish(f, fitting[0], f"transition resolved by neighbours (read {f.value:g})")]
        return self._age_out(f, "held frame not confirmed: ")

    def _age_out(self, f: Frame, prefix: str = "") -> list[Decision]:
        """A suspect outvoted by later anchors. If it disagrees with one image anchor only, and fits once that
        anchor is ignored, the two cannot be told apart: both go (the anchor is withdrawn, audited)."""
        assert f.value is not None
        del self._pending[f.key]
        _, bad = self._fits_around(f.t, f.value)
        out: list[Decision] = []
        if (len(bad) == 1 and not bad[0].trusted and not self._before_first(f)
                and self._fits_around(f.t, f.value, frozenset({bad[0].key}))[0]):
            out.extend(self._withdraw(bad, f"disputed by {f.key} ({f.value:g}); neither can be trusted", (f.key,)))
            reason = f"disputes {bad[0].key} ({bad[0].value:g})"
        else:
            reason = "disagrees with neighbours " + ", ".join(f"{a.key} ({a.value:g})" for a in bad)
        out.append(self._decide(Action.REJECT, f, f.value, prefix + reason, evidence=tuple(a.key for a in bad)))
        return out

    def _consensus(self) -> list[Decision]:
        """``consensus_frames`` suspects that agree with each other overrule fewer image anchors they disagree with."""
        k = self.rules.validation.consensus_frames
        # frames that waited for the meter's first sure reading cannot overrule it (frames.unanchored)
        suspects = [f for f, kind in self.pending if kind is Action.SUSPECT and not self._before_first(f)]
        if len(suspects) < k:
            return []
        fits = self.rules.fits
        for start in range(len(suspects) - k, -1, -1):
            group = [suspects[start]]
            for f in suspects[start + 1:]:
                last = group[-1]
                assert f.value is not None and last.value is not None
                if fits(last.t, last.value, f.t, f.value):
                    group.append(f)
            if len(group) < k:
                continue
            conflicts = self._conflicts(group)
            if conflicts is None or not conflicts or self._witnesses(group, conflicts) <= len(
                    {a.value for a in conflicts}) or unsure_dispute(group, conflicts, self.rules) is not None:
                continue
            ev = tuple(g.key for g in group)
            for a in conflicts:
                self._remove(a.key)
            out = []
            for g in group:
                assert g.value is not None
                if self._fits_around(g.t, g.value)[0]:
                    out.append(self._publish(g, g.value, f"consensus of {len(group)} frames"))
            out.extend(self._replace(conflicts, f"overruled by consensus of {len(group)} frames", ev))
            return out
        return []

    def _conflicts(self, group: Sequence[Frame]) -> list[Anchor] | None:
        """Anchors that disagree with a chain of frames; None when a trusted anchor disagrees."""
        times = [g.t for g in group]
        lo, hi = times[0], times[-1]
        out: list[Anchor] = []
        # walk back from the first frame, then forward through and after the group, while anchors disagree
        i = bisect.bisect_right(self._order, (lo, "\uffff")) - 1
        while i >= 0:
            a = self._anchors[self._order[i][1]]
            g = group[0]
            assert g.value is not None
            if self.rules.fits(a.t, a.value, g.t, g.value):
                break
            out.append(a)
            i -= 1
        j = bisect.bisect_right(self._order, (lo, "\uffff"))
        while j < len(self._order):
            a = self._anchors[self._order[j][1]]
            pos = bisect.bisect_right(times, a.t)
            near = [group[p] for p in (pos - 1, pos) if 0 <= p < len(group)]
            if all(self.rules.fits(a.t, a.value, g.t, g.value) for g in near if g.value is not None):
                if a.t > hi:
                    break
            else:
                out.append(a)
            j += 1
        return None if any(a.trusted for a in out) else out

    # -- evidence --------------------------------------------------------------------------------------------
    def _unproven(self, f: Frame) -> str | None:
        """Why ``f`` may not be published yet: the meter's first reading, not sure enough (frames.unanchored); a
        surprise (frames.surprise) without enough witnesses, or in drums it read unsurely (frames.unsure_dispute:
        later values cannot witness a drum that does not move); or None."""
        prev, nxt = self._around(f.t)
        if nxt is None and (first := unanchored(f, prev, self.rules)) is not None:
            return first
        why = surprise(f, prev, nxt, self._rate(f.t), self.rules)
        if why is not None and (low := unsure_dispute([f], [a for a in (prev, nxt) if a], self.rules)):
            return f"{why}; {low}"
        return None if why is None or self._witnessed(f) else why

    def _before_first(self, f: Frame) -> bool:
        return unanchored(f, self._around(f.t)[0], self.rules) is not None  # waits for the first sure reading

    def _witnessed(self, f: Frame) -> bool:
        """``frames.witnessed`` over the anchors and suspects after ``f``."""
        i = bisect.bisect_right(self._order, (f.t, "\uffff"))
        later = [(self._anchors[k].t, self._anchors[k].value) for _, k in self._order[i:i + 200]]
        later += [(g.t, g.value) for g, kind in self._pending.values()
                  if kind is Action.SUSPECT and g.t > f.t and g.value is not None and g.key != f.key]
        return witnessed(f, later, self.rules)

    def _witnesses(self, group: Sequence[Frame], conflicts: Sequence[Anchor]) -> int:
        """``frames.consensus_witnesses``, with the anchor just before the overruled ones."""
        prev, _ = self._around(min(a.t for a in conflicts) - 1e-3, frozenset(a.key for a in conflicts))
        return consensus_witnesses(group, prev, self.rules)

    def _withdraw(self, anchors: Sequence[Anchor], reason: str, evidence: tuple[str, ...]) -> list[Decision]:
        for a in anchors:
            self._remove(a.key)
        return self._replace(anchors, reason, evidence)

    def _replace(self, anchors: Sequence[Anchor], reason: str, evidence: tuple[str, ...]) -> list[Decision]:
        """Settle removed image anchors. When the anchors left on both sides show the same value, that value is
        certain at the anchor's time too, so the reading is corrected to it; otherwise it is withdrawn."""
        out: list[Decision] = []
        drop = frozenset(a.key for a in anchors)
        for a in anchors:
            prev, nxt = self._around(a.t, drop)
            f = Frame(a.key, a.ts, a.value, a.confidence, [], a.reader_version)
            if prev is not None and nxt is not None and abs(nxt.value - prev.value) < self.rules.resolution_kwh / 2:
                self._insert(Anchor(a.key, a.ts, prev.value, False, a.confidence, a.reader_version))
                out.append(self._decide(Action.CORRECT, f, prev.value, f"{reason}; pinned by {prev.key} and "
                                        f"{nxt.key}", a.value, evidence))
            else:
                out.append(self._decide(Action.WITHDRAW, f, None, reason, a.value, evidence))
        return out
