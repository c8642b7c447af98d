"""Turn raw drum positions into a register reading, the way a careful person reads a drum counter.

Positions are the digits (most significant first) followed by the pointers (dials). Each raw value ``x`` is a
drum position in ``[0, 10)``: ``3.0`` = the 3 is centred, ``3.5`` = halfway from 3 to 4, ``9.8`` = the 9 almost
gone and the 0 coming in. Positions are resolved right to left:

* The rightmost position moves continuously: ``d = floor(x)``, except when ``frac(x) >= 0.95`` (within 0.05 of
  the next integer, model noise around a digit that has arrived): then ``d = floor(x) + 1 (mod 10)``, "snapped".
  Positions are labelled in tenths, so 0.95 is the boundary between a drum at ``2.9`` (a careful person reads
  ``2``) and a drum at ``3.0`` read a little low; a wider snap would read every ``x.9`` as the next digit.
* Every other drum only moves while its right neighbour rolls from 9 to 0. With the neighbour's raw value ``r``
  and resolved digit ``d_r`` the expected fraction of this drum's own roll is ``e = clip(r - 9, 0, 1)`` when
  ``d_r == 9`` and the neighbour was not snapped, else ``0``; then ``d = round(x - e) (mod 10)``. All of this is
  circular arithmetic, so ``x = 9.9, e = 0`` gives ``0`` and a neighbour that already wrapped to ``0.05`` still
  counts as ``e = 1``.
* The residual ``|x - e - d|`` (circular) says how well a drum fits its neighbour. Above ``max_residual`` the
  photo is inconsistent: no reading, and an error naming the position. A wrong reading is worse than none.

The most significant drum may wrap (``9.9, 9.95`` reads ``00``): the digits are reported as they are.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from smartmeter.errors import InputError

log = logging.getLogger(__name__)

SNAP_FRACTION = 0.95  # halfway between the last tenth (x.9) and the next digit
MAX_RESIDUAL = 0.35
_EPS = 1e-9  # float noise at the residual limit must not flip a decision


@dataclass(frozen=True)
class Assembly:
    """The register as resolved from raw positions."""

    reading: str | None  # "376.9"; None when the positions cannot be read consistently
    value: float | None
    confidence: float  # consistency of the drums with each other, 0..1 (1 = every drum sits where expected)
    digits: list[int | None] = field(default_factory=list)  # resolved digit per position (None = not resolved)
    residuals: list[float] = field(default_factory=list)
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


def assemble(digits: Sequence[float | None], pointers: Sequence[float | None] = (),
             decimals: int | None = None, max_residual: float = MAX_RESIDUAL) -> Assembly:
    """Resolve raw positions into a reading; ``decimals`` defaults to the number of pointers.

    Raises InputError for malformed input (no positions, values outside [0, 10), bad ``decimals``);
    an unreadable or inconsistent drum gives an ``Assembly`` with ``reading=None`` and ``error`` set.
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

    missing = [_label(i, n_digits) for i, x in enumerate(raw) if x is None]
    if missing:
        return Assembly(None, None, 0.0, [None] * n, [], error=f"{', '.join(missing)} unreadable")

    values = [x for x in raw if x is not None]
    resolved: list[int] = [0] * n
    residuals: list[float] = [0.0] * n

    last = values[-1]
    base = math.floor(last)
    snapped = last - base >= SNAP_FRACTION - _EPS  # 9.95 - 9 is 0.9499999...
    resolved[-1] = (base + 1) % 10 if snapped else base
    residuals[-1] = (base + 1 - last) if snapped else 0.0

    for i in range(n - 2, -1, -1):
        x, r, d_r = values[i], values[i + 1], resolved[i + 1]
        right_snapped = snapped if i + 1 == n - 1 else False
        e = min(max(_circ(r - 9.0), 0.0), 1.0) if d_r == 9 and not right_snapped else 0.0
        y = (x - e) % 10.0
        d = math.floor(y + 0.5)
        residual = abs(y - d)
        resolved[i] = d % 10
        residuals[i] = residual
        if residual > max_residual + _EPS:
            err = (f"{_label(i, n_digits)} at {_fmt(x)} does not fit its right neighbour {_fmt(r)}"
                   f" (off by {residual:.2f})")
            log.debug("assemble %s: %s", values, err)
            return Assembly(None, None, 0.0, [*([None] * (i + 1)), *resolved[i + 1:]], residuals, error=err)

    text = "".join(str(d) for d in resolved)
    reading = f"{text[:n - decimals]}.{text[n - decimals:]}" if decimals else text
    if reading.startswith("."):
        reading = "0" + reading
    value = int(text) / 10 ** decimals
    # residuals up to 0.1 are ordinary model noise; beyond that confidence falls to 0 at a residual of 0.5
    confidence = min(1.0, max(0.0, 1.0 - (max(residuals) - 0.1) / 0.4))
    return Assembly(reading, value, round(confidence, 4), list(resolved), residuals)
