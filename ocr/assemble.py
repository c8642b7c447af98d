"""Turn raw drum and pointer positions into a register reading, the way a careful person reads a counter.

Positions are the digits (drums, most significant first) followed by the pointers (dials). Each raw value ``x``
is a position in ``[0, 10)``: ``3.0`` = the 3 is centred (a needle on the 3), ``3.5`` = halfway from 3 to 4.
Positions are resolved right to left; docs/transitions.md explains the rules for a user.

* **The rightmost position.** ``continuous`` (a pointer, or a drum that creeps): ``d = floor(x)``, except within
  0.05 of the next digit (0.08 for a drum: a resting digit is often read that low): that digit, "snapped".
  ``roll`` (a drum whose right neighbours are left out of the profile): the drum rests on whole digits, so
  ``x.85-x.95`` is a resting ``x+1`` read low or an ``x`` about to roll over: the drum's appearance
  (``last_resting``) decides, and without it both readings are returned as ``candidates`` and no reading.
  ``auto`` for a last drum showing decimals is ``either``: it may creep or rest, so ``x.85-x.92`` gives both
  candidates as ``roll`` does, and from ``x.92`` on it is ``x+1`` as for ``continuous``.
* **Every other position** moves with its right neighbour, whose value ``r`` is known by then (its digit plus
  the fraction its own neighbour implies). The coupling (``coupling``: per drum beside a drum, the last drum
  beside the first pointer, a pointer beside a pointer) gives the fraction ``e`` this position should show:
  ``roll`` (odometer drums): ``e = r - 9`` while the neighbour rolls 9 -> 0, else 0; ``continuous`` (pointers,
  many drum counters): ``e = r / 10``; ``either`` (the default for the last drum beside the first pointer,
  which creeps on some meters and rolls late on others): anything from a roll that starts at ``r = 9.2`` to
  creeping along. A digit ``d`` next to ``x`` is plausible when ``x - d`` lies within the tolerance of its kind
  of ``e`` (circular; drums 0.35, pointers 0.65: dial models are often 0.3-0.5 off): its residual.
* **Choosing.** A pointer leans to the mark it has visibly passed: a candidate on the other side of a mark
  costs half its distance from that mark on top of its residual (more would read needles 0.5 off wrong). The
  cheapest plausible candidate wins; when a second one costs little more (drums 0.15, pointers 0.25), both are
  followed to the end, and if the readings differ the photo gets none: ``error`` names both and ``candidates``
  lists them (likelier first). A position with no plausible digit gives no reading either, and the error names
  it. A wrong reading is worse than none.

The most significant drum may wrap (``9.9, 9.95`` reads ``00``): the digits are reported as they are.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from smartmeter.errors import InputError

log = logging.getLogger(__name__)

CouplingName = Literal["roll", "continuous", "either"]
RightmostCoupling = Literal["auto", "continuous", "roll"]

LATEST_ROLL_START = 9.2  # either: the latest a neighbour's value at which a roll starts (water meters: 9.2)
SNAP_FRACTION = 0.95  # halfway between the last tenth (x.9) and the next digit
# A creeping last drum from x.92 on is the next digit: the CNN reads a resting digit of a meter it never saw up to
# 0.1 low (bench/unseen_streams.py: gasmeter-gmt's resting 9s read 8.93-8.95), and flooring that stores a value a
# whole step below the register; taking x+1 for a drum truly at x.92 is at most a tenth of a step high.
DRUM_SNAP_FRACTION = 0.92  # x.9 itself is a drum a tenth before the next digit, as a person reads it
RESTING_BAND = 0.85  # a roll-only last drum from x.85 on may be a resting x+1 read low
MAX_RESIDUAL = 0.35  # drums: a CNN reads a drum within 0.1-0.2
POINTER_TOLERANCE = 0.65  # pointers: dial models are often 0.3-0.5 off
POINTER_NOISE = 0.5  # pointer residuals up to here are ordinary and keep confidence 1
CROSSING_COST = 0.5  # pointers: per unit of distance from the raw value to a mark the candidate puts it across
AMBIGUOUS_MARGIN = {"drum": 0.15, "pointer": 0.25}  # a runner-up costing less than this more is plausible too
_EPS = 1e-9  # float noise at a limit must not flip a decision
_MAX_BRANCHES = 32  # readings followed at once (each ambiguous position doubles them)


class Couplings(Protocol):
    """How positions move with their right neighbour (``ocr.profile.Coupling`` is one)."""

    @property
    def drum(self) -> str: ...

    @property
    def last_drum(self) -> str: ...

    @property
    def pointer(self) -> str: ...

    @property
    def rightmost(self) -> str: ...


@dataclass(frozen=True)
class Coupling:
    """The assembler's default couplings (see docs/transitions.md)."""

    drum: CouplingName = "roll"  # a drum beside the drum to its right
    last_drum: CouplingName = "either"  # the last drum beside the first pointer
    pointer: CouplingName = "continuous"  # a pointer beside the pointer to its right
    rightmost: RightmostCoupling = "auto"  # auto = roll for a whole-unit drum (no decimals shown), else continuous


DEFAULT_COUPLING = Coupling()


@dataclass(frozen=True)
class Assembly:
    """The register as resolved from raw positions."""

    reading: str | None  # "376.9"; None when the positions cannot be read consistently
    value: float | None
    confidence: float  # consistency of the positions with each other, 0..1 (1 = every one sits where expected)
    digits: list[int | None] = field(default_factory=list)  # resolved digit per position (None = not resolved)
    residuals: list[float] = field(default_factory=list)
    error: str | None = None
    candidates: list[str] = field(default_factory=list)  # readings that are all plausible, most likely first


@dataclass
class _Branch:
    digits: list[int]  # resolved from the right: digits[0] is the rightmost position
    values: list[float]  # the value of each resolved position (digit + implied fraction)
    residuals: list[float]
    cost: float
    error: str | None = None


def _circ(y: float) -> float:
    """Map a position difference into [-5, 5)."""
    return (y + 5.0) % 10.0 - 5.0


def _label(index: int, n_digits: int) -> str:
    return f"digit {index + 1}" if index < n_digits else f"pointer {index - n_digits + 1}"


def _fmt(x: float) -> str:
    """2.0 -> "2.0", 4.5 -> "4.5", 9.95 -> "9.95"."""
    s = f"{x:.2f}".rstrip("0")
    return s + "0" if s.endswith(".") else s


def check_position(x: object, where: str) -> float | None:
    """Validate one raw position: a number in [0, 10) or None (unreadable); NaN counts as unreadable."""
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise InputError(f"{where}: expected a number 0-9.99 or null, got {x!r}")
    v = float(x)
    if math.isnan(v):
        return None
    if not 0.0 <= v < 10.0:
        raise InputError(f"{where}: position {v!r} is outside 0 <= x < 10")
    return v


def _coupling(kind: str, right_kind: str, c: Couplings) -> str:
    if kind == "pointer":
        return c.pointer
    return c.last_drum if right_kind == "pointer" else c.drum


def _band(name: str, r: float, d_r: int) -> tuple[float, float]:
    """The fraction a position should show, as an interval, for its right neighbour's value ``r``."""
    roll = min(max(r - 9.0, 0.0), 1.0) if d_r == 9 else 0.0
    if name == "roll":
        return roll, roll
    cont = min(r, 10.0) / 10.0
    if name == "continuous":
        return cont, cont
    late = min(max((r - LATEST_ROLL_START) / (10.0 - LATEST_ROLL_START), 0.0), 1.0) if d_r == 9 else 0.0
    return late, cont  # either: from a roll that starts as late as 9.2 to creeping along


def _options(x: float, lo: float, hi: float, tol: float, crossing_cost: float) -> list[tuple[float, int, float, float]]:
    """(cost, digit, residual, value) for the digits next to ``x`` within ``tol``, cheapest first."""
    k = math.floor(x)
    g = x - k
    out = []
    for step, crossing in ((0, 0.0), (1, 1.0 - g), (-1, g)):
        d = (k + step) % 10
        z = _circ(x - d - (lo + hi) / 2.0)
        residual = max(0.0, abs(z) - (hi - lo) / 2.0)
        if residual <= tol + _EPS:
            e = min(max(z + (lo + hi) / 2.0, lo), hi)
            out.append((residual + crossing_cost * crossing, d, residual, d + e))
    return sorted(out)


def _last_options(x: float, mode: str, resting: bool | None,
                  drum: bool = False) -> list[tuple[float, int, float, float]]:
    k = math.floor(x)
    g = x - k
    snap = DRUM_SNAP_FRACTION if drum and mode in ("continuous", "either") else SNAP_FRACTION
    if g >= snap - _EPS:  # 9.95 - 9 is 0.9499999...
        return [(1.0 - g, (k + 1) % 10, 1.0 - g, float((k + 1) % 10))]
    if mode in ("roll", "either") and g >= RESTING_BAND - _EPS:
        arrived = (0.0, (k + 1) % 10, 1.0 - g, float((k + 1) % 10))  # a resting digit read low: the likelier
        rolling = (0.05, k, 0.0, x)  # about to roll over with the hidden drum to its right
        if resting is None:
            return [arrived, rolling]
        return [arrived] if resting else [rolling]
    return [(0.0, k, 0.0, float(k) if mode == "roll" and g < 1.0 - RESTING_BAND else x)]


def _text(digits: Sequence[int], decimals: int) -> tuple[str, float]:
    text = "".join(str(d) for d in digits)
    n = len(text)
    reading = f"{text[:n - decimals]}.{text[n - decimals:]}" if decimals else text
    return ("0" + reading if reading.startswith(".") else reading), int(text) / 10 ** decimals


def assemble(digits: Sequence[float | None], pointers: Sequence[float | None] = (),
             decimals: int | None = None, max_residual: float = MAX_RESIDUAL,
             coupling: Couplings | None = None, last_resting: bool | None = None) -> Assembly:
    """Resolve raw positions into a reading; ``decimals`` defaults to the number of pointers.

    ``coupling`` says how each kind of position moves with its neighbour (default :data:`DEFAULT_COUPLING`);
    ``last_resting`` is what the reader saw of the rightmost drum: True = a centred, resting digit, False = two
    half digits (rolling), None = not known. Raises InputError for malformed input (no positions, values outside
    [0, 10), bad ``decimals``); an unreadable, inconsistent or ambiguous set of positions gives an ``Assembly``
    with ``reading=None`` and ``error`` set (and ``candidates`` when two readings are plausible).
    """
    n_digits = len(digits)
    raw = [check_position(x, _label(i, n_digits)) for i, x in enumerate([*digits, *pointers])]
    n = len(raw)
    if n == 0:
        raise InputError("no positions to assemble")
    if decimals is None:
        decimals = len(pointers)
    if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= n:
        raise InputError(f"decimals must be an integer 0..{n}, got {decimals!r}")
    c = coupling or DEFAULT_COUPLING
    missing = [_label(i, n_digits) for i, x in enumerate(raw) if x is None]
    if missing:
        return Assembly(None, None, 0.0, [None] * n, [], error=f"{', '.join(missing)} unreadable")

    values = [x for x in raw if x is not None]
    kinds = ["drum"] * n_digits + ["pointer"] * (n - n_digits)
    last = c.rightmost
    if last == "auto":  # a last drum showing decimals may creep or rest on whole digits: "either"
        last = ("roll" if decimals == 0 else "either") if kinds[-1] == "drum" else "continuous"
    branches = [_Branch([d], [v], [res], cost) for cost, d, res, v in _last_options(values[-1], last, last_resting,
                                                                                       kinds[-1] == "drum")]
    for i in range(n - 2, -1, -1):
        tol = POINTER_TOLERANCE if kinds[i] == "pointer" else max_residual
        margin = AMBIGUOUS_MARGIN[kinds[i]]
        name = _coupling(kinds[i], kinds[i + 1], c)
        grown: list[_Branch] = []
        for b in branches:
            if b.error is not None:
                grown.append(b)
                continue
            lo, hi = _band(name, b.values[-1], b.digits[-1])
            opts = _options(values[i], lo, hi, tol, CROSSING_COST if kinds[i] == "pointer" else 0.0)
            if not opts:
                z = _circ(values[i] - (lo + hi) / 2.0)
                off = min(abs(z - round(z)) - (hi - lo) / 2.0, 0.5)
                b.error = (f"{_label(i, n_digits)} at {_fmt(values[i])} does not fit its right neighbour "
                           f"{_fmt(values[i + 1])} (off by {max(off, 0.0):.2f})")
                b.digits.extend([-1] * (i + 1))
                grown.append(b)
                continue
            for cost, d, res, v in opts:
                if cost > opts[0][0] + margin - _EPS:
                    break
                grown.append(_Branch([*b.digits, d], [*b.values, v], [*b.residuals, res], b.cost + cost))
        branches = sorted(grown, key=lambda b: (b.error is not None, b.cost))[:_MAX_BRANCHES]
    return _decide(branches, kinds, decimals, n_digits, values)


def _decide(branches: list[_Branch], kinds: list[str], decimals: int, n_digits: int,
            values: list[float]) -> Assembly:
    ok = [b for b in branches if b.error is None]
    n = len(kinds)
    if not ok:
        b = branches[0]
        digits: list[int | None] = [None if d < 0 else d for d in reversed(b.digits)]
        log.debug("assemble %s: %s", values, b.error)
        return Assembly(None, None, 0.0, digits, list(reversed(b.residuals)), error=b.error)
    readings: dict[str, _Branch] = {}
    for b in ok:
        readings.setdefault(_text(list(reversed(b.digits)), decimals)[0], b)
    best = ok[0]
    resolved = list(reversed(best.digits))
    residuals = list(reversed(best.residuals))
    if len(readings) > 1:
        names = list(readings)
        per_reading = [list(reversed(b.digits)) for b in readings.values()]
        where = [f"{_label(i, n_digits)} at {_fmt(values[i])} reads {' or '.join(str(d[i]) for d in per_reading)}"
                 for i in range(n) if len({d[i] for d in per_reading}) > 1]
        err = (f"{' or '.join(names)}: both plausible ({'; '.join(where)}): the meter's history or the "
               "profile's coupling must decide")
        log.debug("assemble %s: %s", values, err)
        return Assembly(None, None, 0.0, [*resolved], residuals, error=err, candidates=names)
    reading, value = _text(resolved, decimals)
    # residuals up to the ordinary noise of each kind keep confidence 1; it falls to 0 0.4 beyond that
    confidence = min(1.0 - max(0.0, r - (POINTER_NOISE if k == "pointer" else 0.1)) / 0.4
                     for r, k in zip(residuals, kinds, strict=True))
    return Assembly(reading, value, round(min(1.0, max(0.0, confidence)), 4), [*resolved], residuals)
