"""Daily plans of the household profiles: when people are home and awake, hot-water draws and meals.

Times are seconds from local midnight (they may run past 24 h: a late evening ends after midnight). Each plan is
jittered with the caller's seeded generator, so days differ but a seed reproduces them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np

H = 3600


@dataclass(frozen=True)
class ProfileSpec:
    """Appliance ratings of one profile (W, Wh)."""

    standby_w: float
    awake_w: float  # TV, computer, small loads while someone is awake at home
    fridge_w: float
    heater_w: float  # water-heater element
    heater_loss_w: float  # tank standing losses
    hysteresis_wh: float  # tank heat deficit that switches the element on
    ac_w: float
    light_w: float
    light_always: bool = False  # lights on whenever occupied (office), not only after dark


SPECS: dict[str, ProfileSpec] = {
    "day-worker": ProfileSpec(45, 120, 110, 2000, 70, 250, 2400, 180),
    "office": ProfileSpec(140, 650, 90, 1200, 35, 120, 3500, 420, light_always=True),
    "shift-worker": ProfileSpec(40, 110, 100, 1500, 60, 200, 1800, 150),
}
PROFILES = tuple(SPECS)


@dataclass
class DayPlan:
    spec: ProfileSpec
    home: list[tuple[int, int]] = field(default_factory=list)
    awake: list[tuple[int, int]] = field(default_factory=list)
    hot_water: list[tuple[int, float]] = field(default_factory=list)  # (time, Wh of heat drawn)
    cooking: list[tuple[int, int, float]] = field(default_factory=list)  # (start, end, W)


def _j(rng: np.random.Generator, hours: float, minutes: float = 15.0) -> int:
    """A time of day in seconds, jittered by about ``minutes``."""
    return int(hours * H + rng.normal(0.0, minutes * 60.0))


def _cycling(rng: np.random.Generator, start: int, minutes: float, watts: float, duty: float,
             period_s: int = 240) -> list[tuple[int, int, float]]:
    """A hob or oven under its thermostat: full power first, then on/off cycles at ``duty``."""
    end = start + int(minutes * 60)
    out = [(start, start + min(600, end - start), watts)]
    t = start + 600
    while t < end:
        on = int(period_s * duty * rng.uniform(0.8, 1.2))
        out.append((t, min(t + on, end), watts))
        t += period_s
    return out


def _home_day(plan: DayPlan, rng: np.random.Generator, wake: float, sleep: float,
              away: list[tuple[float, float]], dinner: float | None, lunch: float | None) -> None:
    """Fill a residential day: awake at home from wake to sleep except ``away``; meals and hot water."""
    w, s = _j(rng, wake, 10), _j(rng, sleep, 20)
    cuts = sorted((_j(rng, a, 10), _j(rng, b, 15)) for a, b in away)
    t = w
    for a, b in cuts:
        plan.awake.append((t, a))
        t = b
    plan.awake.append((t, s))
    plan.home.append((0, cuts[0][0] if cuts else 24 * H))
    for (_, b), nxt in zip(cuts, [c[0] for c in cuts[1:]] + [24 * H], strict=False):
        plan.home.append((b, nxt))
    plan.hot_water.append((w + int(rng.uniform(300, 1500)), float(rng.uniform(900, 1700))))  # morning shower
    plan.cooking.append((w + 600, w + 600 + int(rng.uniform(150, 240)), 2000.0))  # kettle / coffee
    if rng.random() < 0.5:
        plan.hot_water.append((s - int(rng.uniform(1200, 3600)), float(rng.uniform(800, 1500))))  # evening shower
    for meal, minutes in ((lunch, rng.uniform(15, 35)), (dinner, rng.uniform(25, 70))):
        if meal is None:
            continue
        m = _j(rng, meal, 20)
        plan.cooking += _cycling(rng, m, minutes, float(rng.choice([1500.0, 2200.0])), rng.uniform(0.4, 0.7))
        plan.hot_water.append((m + int(minutes * 60) + 1200, float(rng.uniform(150, 400))))  # dishes
    for _ in range(int(rng.integers(2, 6))):  # hand washing and small draws while awake
        a, b = plan.awake[int(rng.integers(0, len(plan.awake)))]
        if b > a:
            plan.hot_water.append((int(rng.uniform(a, b)), float(rng.uniform(40, 120))))


def _office_day(plan: DayPlan, rng: np.random.Generator, weekday: bool) -> None:
    if not weekday:
        return
    o, c = _j(rng, 8.0, 10), _j(rng, 18.5, 20)
    plan.home.append((o, c))
    plan.awake.append((o, c))
    for _ in range(int(rng.integers(6, 14))):  # coffee machine
        t = int(rng.uniform(o, c))
        plan.cooking.append((t, t + 45, 1300.0))
        plan.hot_water.append((int(rng.uniform(o, c)), float(rng.uniform(20, 60))))
    lunch = _j(rng, 12.75, 15)
    for _ in range(int(rng.integers(2, 5))):  # microwave
        plan.cooking.append((lunch, lunch + int(rng.uniform(90, 240)), 900.0))
        lunch += int(rng.uniform(200, 500))


def plan_day(profile: str, day: date, rng: np.random.Generator) -> DayPlan:
    """The plan of one local day for one profile."""
    plan = DayPlan(SPECS[profile])
    weekday = day.weekday() < 5
    if profile == "office":
        _office_day(plan, rng, weekday)
    elif profile == "day-worker" or not weekday:
        if weekday:
            _home_day(plan, rng, 6.5, 23.0, [(7.75, 18.25)], dinner=19.75, lunch=None)
        else:
            outing = [(15.0, 17.5)] if rng.random() < 0.5 else []
            _home_day(plan, rng, 8.5, 23.75, outing, dinner=20.0, lunch=13.0)
    else:  # shift-worker on a working day: early / late / night, rotating every ISO week
        shift = day.isocalendar().week % 3
        if shift == 0:  # early 06-14
            _home_day(plan, rng, 5.0, 22.0, [(5.5, 14.5)], dinner=19.0, lunch=15.0)
        elif shift == 1:  # late 14-22
            _home_day(plan, rng, 9.0, 24.75, [(13.5, 22.5)], dinner=23.0, lunch=12.5)
        else:  # night 22-06: home 06:30, sleeps 07:30-14:00, leaves 21:30
            _home_day(plan, rng, 14.0, 21.5, [], dinner=20.0, lunch=15.0)
            plan.home = [(_j(rng, 6.5, 10), _j(rng, 21.5, 5))]
            plan.awake.insert(0, (_j(rng, 6.5, 10), _j(rng, 7.5, 10)))
    return plan
