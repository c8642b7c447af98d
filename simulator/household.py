"""Synthetic household load at 1 s resolution: appliance components, their sum, and the kWh register.

Vectorised with numpy: daily schedules (a handful of Python objects per day) become per-second arrays by
painting intervals into difference arrays; slowly varying loads (air conditioning, lighting) are computed per
minute and repeated. The water heater is an exact event-driven thermostat (tank heat deficit, piecewise linear).
Everything is drawn from one seeded generator, so the same arguments give the same arrays.

Profiles: ``day-worker`` (away on weekdays 8-18), ``office`` (a small office, open on weekdays only),
``shift-worker`` (early / late / night shifts rotating weekly). Components: standby, fridge, water_heater, ac,
cooking, lighting (+ ``noise`` when noise is on, + the loads injected by :mod:`simulator.events`); they always
sum exactly to ``power_w``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from smartmeter.errors import InputError
from smartmeter.simulator.events import Event, apply_events, stop_fridge
from smartmeter.simulator.schedule import PROFILES, DayPlan, plan_day
from smartmeter.types import utc

log = logging.getLogger(__name__)

COMPONENTS = ("standby", "fridge", "water_heater", "ac", "cooking", "lighting")
DAY = 86400


@dataclass
class Household:
    """Per-second power of one household from ``start`` (UTC), and its register."""

    profile: str
    start: datetime
    power_w: np.ndarray  # float32, one value per second: mean power during [t, t+1s)
    components: dict[str, np.ndarray] = field(default_factory=dict)
    start_kwh: float = 0.0
    _register: np.ndarray | None = field(default=None, repr=False)

    @property
    def seconds(self) -> int:
        return int(self.power_w.shape[0])

    @property
    def register_kwh(self) -> np.ndarray:
        """Register (kWh, float64) at ``start + i`` seconds: energy used before that instant."""
        if self._register is None:
            reg = np.empty(self.seconds, dtype=np.float64)
            reg[0] = 0.0
            np.cumsum(self.power_w[:-1], dtype=np.float64, out=reg[1:])
            reg *= 1.0 / 3.6e6
            reg += self.start_kwh
            self._register = reg
        return self._register

    def register_at(self, ts: datetime) -> float:
        """Register at any instant inside the span (linear within the second)."""
        s = (utc(ts) - self.start).total_seconds()
        if not 0 <= s <= self.seconds:
            raise InputError(f"{ts} is outside the simulated span {self.start} + {self.seconds} s")
        i = min(int(s), self.seconds - 1)
        return float(self.register_kwh[i] + self.power_w[i] * (s - i) / 3.6e6)


def paint(n: int, starts: np.ndarray, ends: np.ndarray, values: np.ndarray | float) -> np.ndarray:
    """Sum of ``values`` (rounded to whole W) over the half-open second intervals [start, end), clipped to [0, n).

    Whole numbers keep the float32 running sum exact (no drift over a year) at half the memory traffic.
    """
    s = np.clip(np.asarray(starts, dtype=np.int64), 0, n)
    e = np.clip(np.asarray(ends, dtype=np.int64), 0, n)
    v = np.rint(np.broadcast_to(np.asarray(values, dtype=np.float64), s.shape)).astype(np.float32)
    diff = np.zeros(n + 1, dtype=np.float32)
    np.add.at(diff, s, v)
    np.add.at(diff, e, -v)
    np.cumsum(diff, out=diff)
    return diff[:-1]


def outdoor_temperature(minutes_utc: np.ndarray, rng: np.random.Generator, lat_season: float = 1.0) -> np.ndarray:
    """Outdoor temperature, degC, per minute: annual + daily cycle + hourly weather (AR(1)) noise."""
    days = minutes_utc / 1440.0  # days since 1970-01-01 UTC
    doy = (days - 10.0) % 365.25  # ~10 Jan = coldest
    annual = 15.5 - 10.0 * lat_season * np.cos(2 * np.pi * doy / 365.25)
    daily = -5.0 * np.cos(2 * np.pi * ((days % 1.0) - 0.125))  # warmest ~15:00 local (UTC+1/2)
    hours = int(np.ceil(minutes_utc.shape[0] / 60)) + 2
    shocks = rng.normal(0.0, 0.6, hours)
    weather = np.empty(hours)
    acc = 0.0
    for i in range(hours):  # AR(1) over hours: a few thousand steps per year
        acc = 0.97 * acc + shocks[i]
        weather[i] = acc
    hour_idx = (np.arange(minutes_utc.shape[0]) / 60.0)
    return annual + daily + np.interp(hour_idx, np.arange(hours), weather)


def _fridge(n: int, temp_min: np.ndarray, rng: np.random.Generator, watts: float) -> np.ndarray:
    """Compressor cycling: ~15 min on, off time shrinking with warmer rooms; a start surge of 2 s."""
    mean_period = 45 * 60
    k = int(n / (mean_period * 0.6)) + 10
    on = rng.normal(15 * 60, 120, k).clip(6 * 60, 25 * 60)
    approx_start = np.cumsum(np.full(k, float(mean_period))).astype(np.int64).clip(0, n - 1)
    room = 20.0 + 0.35 * (temp_min[approx_start // 60] - 15.0)  # indoor follows outdoor weakly
    duty = np.clip(0.28 + 0.018 * (room - 20.0), 0.15, 0.6)
    off = on * (1 - duty) / duty * rng.uniform(0.85, 1.15, k)
    durations = np.empty(2 * k, dtype=np.int64)
    durations[0::2] = on.astype(np.int64)
    durations[1::2] = off.astype(np.int64)
    first_off = int(rng.integers(0, 30 * 60))
    bounds = first_off + np.concatenate([[0], np.cumsum(durations)])
    starts, ends = bounds[0:-1:2], bounds[1::2]
    return paint(n, np.concatenate([starts, starts]), np.concatenate([ends, starts + 2]),
                 np.concatenate([np.full(k, watts), np.full(k, 2.5 * watts)]))


def _water_heater(n: int, draws: list[tuple[int, float]], rng: np.random.Generator, watts: float,
                  loss_w: float, hysteresis_wh: float) -> np.ndarray:
    """Thermostat on a tank heat deficit (Wh): draws add to it, losses grow it, the element removes it."""
    rate_loss = loss_w / 3600.0  # Wh per second
    rate_heat = (watts - loss_w) / 3600.0
    events = sorted((t, wh) for t, wh in draws if 0 <= t < n)
    events.append((n, 0.0))
    deficit, t, on_since = float(rng.uniform(0, hysteresis_wh)), 0, -1
    starts: list[int] = []
    ends: list[int] = []
    for t_next, wh in events:
        while t < t_next:
            if on_since >= 0:  # heating: deficit falls to 0
                t_off = t + int(np.ceil(deficit / rate_heat))
                if t_off <= t_next:
                    starts.append(on_since)
                    ends.append(t_off)
                    deficit, t, on_since = 0.0, t_off, -1
                else:
                    deficit -= rate_heat * (t_next - t)
                    t = t_next
            else:  # idle: losses grow the deficit to the switch-on point
                t_on = t + int(np.ceil(max(hysteresis_wh - deficit, 0.0) / rate_loss))
                if t_on <= t_next:
                    deficit += rate_loss * (t_on - t)
                    t, on_since = t_on, t_on
                else:
                    deficit += rate_loss * (t_next - t)
                    t = t_next
        deficit += wh
        if on_since < 0 and deficit >= hysteresis_wh:
            on_since = t
    if on_since >= 0:
        starts.append(on_since)
        ends.append(n)
    return paint(n, np.array(starts), np.array(ends), watts)


def _ac(temp_min: np.ndarray, home_min: np.ndarray, awake_min: np.ndarray, pmax: float,
        rng: np.random.Generator) -> np.ndarray:
    """Cooling above 26 degC when home, heat-pump heating below 9 degC when awake; cycles at low demand."""
    cool = np.clip((temp_min - 25.0) * 320.0, 0.0, pmax) * home_min
    heat = np.clip((9.0 - temp_min) * 110.0, 0.0, 0.6 * pmax) * awake_min
    demand = cool + heat
    pmin = 0.35 * pmax
    duty = np.clip(demand / pmin, 0.0, 1.0)
    phase = (np.arange(demand.shape[0]) + rng.integers(0, 12)) % 12 / 12.0  # 12-minute cycles
    cycling = np.where(phase < duty, np.maximum(demand, pmin), 0.0)
    return np.where(demand >= pmin, demand, cycling).astype(np.float32)


def _daylight(minutes_local: np.ndarray) -> np.ndarray:
    """True while it is dark outside (latitude ~42 N), per minute of local time."""
    doy = (minutes_local / 1440.0 - 80.0) % 365.25
    half_day_h = 6.0 + 1.6 * np.sin(2 * np.pi * doy / 365.25)
    hour = (minutes_local % 1440) / 60.0
    return np.abs(hour - 12.5) > half_day_h - 0.5  # dusk/dawn: lights half an hour before sunset


class _Components:
    """Component arrays by name, or (keep=False) one running sum to save memory."""

    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self.arrays: dict[str, np.ndarray] = {}

    def __setitem__(self, name: str, arr: np.ndarray) -> None:
        if self.keep:
            self.arrays[name] = arr
        elif "sum" in self.arrays:
            self.arrays["sum"] += arr
        else:
            self.arrays["sum"] = arr.astype(np.float32, copy=True)


def check_days(days: float) -> None:
    if not 0 < days <= 3660:
        raise InputError(f"days must be within (0, 3660], got {days}")


def _normal_block(rng: np.random.Generator, n: int, block: int = 1 << 20) -> np.ndarray:
    """Standard normal noise of length n: one block of fresh draws, reused at seeded random offsets (fast)."""
    base = rng.standard_normal(block + 4096, dtype=np.float32)
    out = np.empty(n, dtype=np.float32)
    offsets = rng.integers(0, 4096, n // block + 1)
    for i, off in enumerate(offsets):
        a = i * block
        b = min(a + block, n)
        out[a:b] = base[off:off + b - a]
        if i % 2:
            out[a:b] *= -1.0
    return out


def generate(profile: str = "day-worker", days: float = 1.0, start: datetime | None = None, seed: int = 1, *,
             noise: bool = True, components: bool = True, start_kwh: float = 1000.0,
             timezone: str = "Europe/Rome", events: Sequence[Event] = ()) -> Household:
    """One household at 1 s resolution; ``components=False`` keeps only the total (less memory)."""
    if profile not in PROFILES:
        raise InputError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    check_days(days)
    start = utc(start or datetime(2024, 1, 1, tzinfo=UTC)).replace(microsecond=0)
    n = int(round(days * DAY))
    rng = np.random.default_rng(seed)
    zone = ZoneInfo(timezone)
    t0_s = int(start.timestamp())
    # Day plans in local time -> absolute seconds from start
    first_local = start.astimezone(zone).date() - timedelta(days=1)
    plans: list[tuple[int, DayPlan]] = []
    for d in range(int(np.ceil(days)) + 2):
        date = first_local + timedelta(days=d)
        midnight = int(datetime(date.year, date.month, date.day, tzinfo=zone).timestamp()) - t0_s
        plans.append((midnight, plan_day(profile, date, rng)))
    spec = plans[0][1].spec

    def intervals(attr: str) -> tuple[np.ndarray, np.ndarray]:
        pairs = [(m + a, m + b) for m, p in plans for a, b in getattr(p, attr)]
        arr = np.array(pairs, dtype=np.int64).reshape(-1, 2)
        return arr[:, 0], arr[:, 1]

    awake = paint(n, *intervals("awake"), 1.0) > 0
    m = (n + 59) // 60
    minute_utc = t0_s / 60.0 + np.arange(m)
    offset_min = start.astimezone(zone).utcoffset().total_seconds() / 60.0  # type: ignore[union-attr]
    temp_min = outdoor_temperature(minute_utc, rng)

    out = _Components(keep=components)
    standby = paint(n, *intervals("awake"), spec.awake_w)
    standby += np.float32(spec.standby_w)
    out["standby"] = standby
    out["fridge"] = stop_fridge(_fridge(n, temp_min, rng, spec.fridge_w), start, events)
    draws = [(m + t, wh * (1.25 - 0.25 * np.cos(2 * np.pi * ((m / DAY) % 365.25) / 365.25)))
             for m, p in plans for t, wh in p.hot_water]
    out["water_heater"] = _water_heater(n, draws, rng, spec.heater_w, spec.heater_loss_w, spec.hysteresis_wh)
    hs, he = intervals("home")
    home_min = paint(m, hs // 60, he // 60, 1.0) > 0
    awake_min = awake[::60][:m]
    out["ac"] = np.repeat(_ac(temp_min, home_min, awake_min, spec.ac_w, rng), 60)[:n]
    cook = [(mid + a, mid + b, w) for mid, p in plans for a, b, w in p.cooking]
    c = np.array(cook, dtype=np.float64).reshape(-1, 3)
    out["cooking"] = paint(n, c[:, 0], c[:, 1], c[:, 2])
    dark = _daylight(minute_utc + offset_min)
    light_level = np.repeat(rng.uniform(0.6, 1.4, m // 30 + 2), 30)[:m] * spec.light_w
    light_min = np.where(spec.light_always | dark, light_level, 0.0).astype(np.float32)
    out["lighting"] = np.repeat(light_min, 60)[:n] * awake
    hh = Household(profile=profile, start=start, power_w=np.broadcast_to(np.float32(0), (n,)), components=out.arrays,
                   start_kwh=start_kwh)
    apply_events(hh, events)  # adds the event loads as components, blanks blackouts in all of them
    parts = list(hh.components.values())
    total = parts[0] if not components else parts[0].copy()
    for v in parts[1:]:
        total += v
    hh.power_w = total
    if noise:  # meter-like ripple: 2 W + 1 % of the load; none while the supply is off
        z = _normal_block(rng, n)
        scale = total * np.float32(0.01)
        scale += np.float32(2.0)
        scale[total <= 0] = 0.0
        z *= scale
        del scale
        np.maximum(z, -total, out=z)  # never negative power
        total += z
        hh.components["noise"] = z
    if not components:
        hh.components = {}
    log.debug("household %s: %d s, %.1f kWh", profile, n, float(hh.power_w.sum(dtype=np.float64)) / 3.6e6)
    return hh
