"""Power between register steps: resolution-aware, gap-aware, reported power kept beside derived."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from smartmeter.server.power import clean_series, derive_power, register_at, sensor_samples, step_points
from smartmeter.types import Reading

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def quantised(power_w: Callable[[float], float], hours: float, every_s: float = 60, res: float = 0.1,
              holes: tuple[tuple[float, float], ...] = (), report: bool = False) -> list[Reading]:
    """A simulated register: integrate power (1 s steps), show it floored to ``res``; skip readings in holes (h)."""
    out, energy, t = [], 1000.0, 0.0
    next_sample = 0.0
    while t <= hours * 3600:
        if t >= next_sample:
            next_sample += every_s
            if not any(a * 3600 <= t < b * 3600 for a, b in holes):
                shown = math.floor(energy / res + 1e-9) * res
                out.append(Reading("m", T0 + timedelta(seconds=t), round(shown, 6), "sim", 1.0, "",
                                   power_w(t) if report else None))
        energy += power_w(t) / 3.6e6
        t += 1.0
    return out


def test_low_constant_power_is_not_zero() -> None:
    rs = quantised(lambda t: 150.0, hours=4.3)
    iv = derive_power(rs, 0.1, gap_s=900)
    steps = [i for i in iv if i.kind == "step"]
    assert len(steps) >= 4  # a step every 40 minutes
    for i in steps:
        assert i.power_w == pytest.approx(150.0, rel=0.05)
        assert i.seconds == pytest.approx(2400, abs=61)
    lead, tail = iv[0], iv[-1]
    assert lead.kind == "flat" and lead.power_w is None and lead.upper_bound_w is not None
    assert tail.kind == "flat" and tail.upper_bound_w >= 150.0 * 0.9  # bound, never "0 W"
    assert all(i.power_w is None or i.power_w > 0 for i in iv)
    assert iv[0].start == rs[0].timestamp and iv[-1].end == rs[-1].timestamp  # covers the whole span
    assert all(a.end == b.start for a, b in zip(iv, iv[1:], strict=False))


def test_gap_is_marked_not_a_spike() -> None:
    rs = quantised(lambda t: 1000.0, hours=6, holes=((2.0, 4.0),))
    iv = derive_power(rs, 0.1, gap_s=900)
    gaps = [i for i in iv if i.kind == "gap"]
    assert len(gaps) == 1
    g = gaps[0]
    assert g.start < T0 + timedelta(hours=2) and g.end >= T0 + timedelta(hours=4)
    assert g.power_w == pytest.approx(1000.0, rel=0.05)  # the mean across the gap, not 2 kWh in one minute
    assert max(i.power_w for i in iv if i.power_w is not None) < 1100
    naive = max((b.value_kwh - a.value_kwh) * 3.6e6 / 60 for a, b in zip(rs, rs[1:], strict=False))
    assert naive > 5000  # what a per-sample delta would have claimed (one step in one minute)


def test_changing_load_tracked_between_steps() -> None:
    rs = quantised(lambda t: 300.0 if t < 3 * 3600 else 3000.0, hours=6, res=0.01)
    iv = [i for i in derive_power(rs, 0.01, 900) if i.kind == "step"]
    early = [i.power_w for i in iv if i.end < T0 + timedelta(hours=2.8)]
    late = [i.power_w for i in iv if i.start > T0 + timedelta(hours=3.2)]
    assert early and late
    # 0.01 kWh at 300 W = 2 min; sampling every minute: each interval within one sample of the truth
    assert sum(early) / len(early) == pytest.approx(300, rel=0.1)
    assert sum(late) / len(late) == pytest.approx(3000, rel=0.1)


def test_backwards_jitter_and_duplicates_make_no_steps() -> None:
    vals = [10.0, 10.0, 9.9, 10.0, 9.9, 10.0, 10.1, 10.0, 10.1]
    rs = [Reading("m", T0 + timedelta(minutes=10 * i), v, "cam", 0.9) for i, v in enumerate(vals)]
    rs.append(Reading("m", T0 + timedelta(minutes=10), 12.0, "other", 0.1))  # same time, lower confidence
    assert len(clean_series(rs)) == len(vals)
    pts = step_points(clean_series(rs), 0.1)
    assert [v for _, v in pts] == [10.0, 10.1]
    assert pts[1][0] == T0 + timedelta(minutes=60)


def test_reported_power_kept_beside_derived() -> None:
    rs = quantised(lambda t: 500.0, hours=1, every_s=5, res=0.01, report=True)
    iv = [i for i in derive_power(rs, 0.01, 900) if i.kind == "step"]
    assert all(i.reported_w == pytest.approx(500.0) for i in iv)
    # a 0.01 kWh step every 72 s, seen within 5 s: each interval within 5/72 of the truth ...
    assert all(i.power_w == pytest.approx(500.0, rel=0.08) for i in iv)
    # ... and the time-weighted mean exact up to one step over the span
    span = sum(i.seconds for i in iv)
    assert sum(i.power_w * i.seconds for i in iv) / span == pytest.approx(500.0, rel=0.01)
    holds = sensor_samples(rs, 900)
    assert len(holds) == len(rs) - 1 and holds[0][2] == 500.0


def test_flat_only_gives_an_upper_bound() -> None:
    rs = [Reading("m", T0 + timedelta(minutes=m), 42.0, "cam") for m in range(0, 121, 5)]
    iv = derive_power(rs, 0.1, 900)
    assert len(iv) == 1 and iv[0].kind == "flat"
    assert iv[0].upper_bound_w == pytest.approx(0.1 * 3.6e6 / 7200)  # 50 W
    assert derive_power(rs[:1], 0.1, 900) == []


def test_register_at_interpolates_between_steps() -> None:
    pts = [(T0, 1.0), (T0 + timedelta(hours=1), 1.1), (T0 + timedelta(hours=3), 1.5)]
    assert register_at(pts, T0 - timedelta(seconds=1)) is None
    assert register_at(pts, T0 + timedelta(minutes=30)) == 1.0
    assert register_at(pts, T0 + timedelta(hours=2)) == pytest.approx(1.3)
    assert register_at(pts, T0 + timedelta(hours=9)) == 1.5
