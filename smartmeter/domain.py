"""The meter's domain rules, written once: what a meter id is, which stored readings count, how far a register
can move in a given time.

Every layer uses these (core: no I/O). Before, the meter id pattern was written out in five places, the "current"
statuses as SQL literals in six, and the register-step rule twice (cross-frame validation and ingest) with two
different rounding tolerances.

- Meter id: 1-64 of ``A-Z a-z 0-9 _ . -`` (it is part of photo names, URLs and MQTT topics). ``METER_ID_CHARS``
  is the bare pattern for embedding in other patterns; :func:`check_meter_id` validates (a trailing newline is
  refused: ``re.match`` with ``$`` would let it through).
- Reading statuses: ``accepted`` and ``corrected`` readings are current; ``superseded`` ones are kept for the
  audit trail only (``server/migrations/001_readings.sql`` checks the column against ``READING_STATUSES``).
- Register step: :func:`step_violation` says why a register cannot go from v1 to v2 in dt seconds, or None.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal, Protocol

from smartmeter.errors import InputError

METER_ID_CHARS = r"[A-Za-z0-9_.-]{1,64}"
METER_ID = re.compile(METER_ID_CHARS)
METER_ID_RULE = "1-64 letters, digits, '_', '.' or '-'"

CURRENT_STATUSES: tuple[str, ...] = ("accepted", "corrected")
READING_STATUSES: tuple[str, ...] = (*CURRENT_STATUSES, "superseded")


def is_meter_id(text: object) -> bool:
    return isinstance(text, str) and METER_ID.fullmatch(text) is not None


def check_meter_id(meter_id: object) -> str:
    """``meter_id`` if it is a valid meter id, else :class:`InputError` naming the rule."""
    if not is_meter_id(meter_id):
        raise InputError(f"meter id {meter_id!r} is not {METER_ID_RULE}")
    assert isinstance(meter_id, str)
    return meter_id


def current_sql(column: str = "status") -> str:
    """SQL condition "``column`` is a current status" (the statuses are constants, never user input)."""
    return f"{column} IN ({', '.join(repr(s) for s in CURRENT_STATUSES)})"


class RegisterLimits(Protocol):
    """What the step rule needs of a meter (``smartmeter.settings.MeterSettings`` has these)."""

    @property
    def resolution_kwh(self) -> float: ...

    @property
    def backwards_tolerance_kwh(self) -> float: ...

    @property
    def max_power_w(self) -> float: ...


@dataclass(frozen=True)
class StepViolation:
    """Why a step is impossible: the register went back by ``amount`` kWh, or needs ``amount`` W on average."""

    kind: Literal["backwards", "power"]
    amount: float


def step_violation(dt_s: float, dv_kwh: float, limits: RegisterLimits) -> StepViolation | None:
    """Why the register cannot rise by ``dv_kwh`` in ``dt_s`` seconds (dt_s >= 0), or None when it can.

    It may go back by at most ``backwards_tolerance_kwh`` (last-digit jitter). It may rise by at most what
    ``max_power_w`` delivers in the time plus one register step (a drum caught mid-roll). Both bounds get a
    thousandth of a step of slack, so values that differ only by float rounding (100.02 - 100.0) are not refused.
    """
    eps = limits.resolution_kwh * 1e-3
    if dv_kwh < -(limits.backwards_tolerance_kwh + eps):
        return StepViolation("backwards", -dv_kwh)
    energy = dv_kwh - limits.resolution_kwh  # the least energy used: one step may be a drum caught mid-roll
    if energy > limits.max_power_w * max(dt_s, 0.0) / 3.6e6 + eps:
        return StepViolation("power", energy * 3.6e6 / dt_s if dt_s > 0 else math.inf)
    return None
