"""The validator's vocabulary (server/frames.py): rules from settings, frames from OCR results, the value with the
last drum's fraction, and the values a frame may stand for when drums are caught mid-roll."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from smartmeter.server.frames import (
    Anchor,
    Frame,
    Rules,
    candidates,
    choose,
    mid_roll,
    parse_choices,
)
from smartmeter.server.kinks import kink, kink_limit
from smartmeter.settings import Settings
from smartmeter.types import DigitValue, OcrResult

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def drums(text: str, conf: float = 0.95) -> list[DigitValue]:
    return [DigitValue(float(c), conf) for c in text]


def test_frame_from_ocr_and_rules_from_settings() -> None:
    res = OcrResult("00123.4", 123.4, 0.9, [DigitValue(float(c), 0.9) for c in "001234"], reader_version="cnn-2")
    f = Frame.from_ocr("k", T0, res)
    assert f.decimals == 1 and f.reader_version == "cnn-2"
    settings = Settings.model_validate({"meters": [{"id": "m1", "resolution_kwh": 0.01, "max_power_w": 9000}],
                                        "validation": {"confirm_frames": 4}})
    rules = Rules.from_settings(settings, "m1")
    assert rules.validation.confirm_frames == 4 and rules.meter.max_power_w == 9000 and rules.decimals == 2
    assert Rules.from_settings(Settings(), "any").meter.max_power_w == 3 * 63 * 230
    assert Rules.of(confirm_frames=5, resolution_kwh=0.01).validation.confirm_frames == 5
    with pytest.raises(TypeError, match="no such validation setting: confirm"):
        Rules.of(confirm=5)


def test_fine_adds_the_last_drums_fraction() -> None:
    digits = drums("01234")
    digits[-1] = DigitValue(4.3, 0.95)
    assert Frame("k", T0, 123.4, 0.95, digits, decimals=1).fine(0.1) == pytest.approx(123.43)
    digits[-1] = DigitValue(3.97, 0.95)  # snapped up to 4: the drum is just below the shown number
    assert Frame("k", T0, 123.4, 0.95, digits, decimals=1).fine(0.1) == pytest.approx(123.397)
    assert Frame("k", T0, 123.4, 0.95, [], decimals=1).fine(0.1) == pytest.approx(123.45)  # no drums: mid-step
    assert Frame("k", T0, None, 0.0).fine(0.1) is None


def test_a_drum_caught_mid_roll_gives_its_neighbouring_values() -> None:
    rules = Rules.of(resolution_kwh=0.1)
    digits = drums("01294")
    digits[2] = DigitValue(2.5, 0.9)  # the tens drum halfway from 2 to 3
    f = Frame("k", T0, 129.4, 0.9, digits, decimals=1)
    assert mid_roll(f, rules) == [2]
    assert candidates(f, rules) == [pytest.approx(119.4), pytest.approx(129.4), pytest.approx(139.4)]
    assert candidates(Frame("k", T0, 129.4, 0.9, drums("01294"), decimals=1), rules) == [pytest.approx(129.4)]
    assert candidates(Frame("k", T0, None, 0.0), rules) == []


def test_fits_allows_the_main_fuse_and_the_backwards_tolerance_only() -> None:
    rules = Rules.of(resolution_kwh=0.1, max_power_w=6000, backwards_tolerance_kwh=0.0)
    assert rules.fits(0, 100.0, 600, 101.0)  # 1 kWh in 10 min = 6 kW: the fuse's limit
    assert not rules.fits(0, 100.0, 600, 101.2)
    assert rules.fits(600, 101.0, 0, 100.0)  # either order
    assert not rules.fits(0, 100.0, 600, 99.9)  # backwards
    assert Rules.of(resolution_kwh=0.1, backwards_tolerance_kwh=0.2).fits(0, 100.0, 600, 99.9)


# -- a refused frame with two plausible readings: the neighbours choose (frames.choose) --------------------------
def _anchor(key: str, minutes: float, value: float) -> Anchor:
    return Anchor(key, T0 + timedelta(minutes=minutes), value)


def _choice_frame(choices: tuple[float, ...], decimals: int = 1) -> Frame:
    return Frame("x", T0 + timedelta(minutes=15), None, 0.95, drums("18349"), "v1", decimals, "both plausible",
                 choices)


R01 = Rules.of(resolution_kwh=0.1)
# (choices, anchor before 15 min earlier, anchor after 15 min later, rules, typical rate kWh/s, chosen or None, why)
CHOICE_CASES = [
    ((1835.0, 1834.9), 1835.0, 1835.1, R01, 0.0, 1835.0, "a resting drum read low: 1834.9 would run backwards"),
    ((1834.9, 1835.0), 1834.9, 1835.0, R01, 0.0, None, "both fit the neighbours: refused"),
    ((1834.9, 1835.0), 1834.9, 1834.9, R01, 0.0, 1834.9, "neighbours show the same value: only that one fits"),
    ((35.82, 36.82), 35.70, 35.95, Rules.of(resolution_kwh=0.01), 1 / 3600, 35.82, "a drum at 5.7 beside a pointer"),
    ((1834.9, 1835.0), 1840.0, 1841.0, R01, 0.0, None, "neither fits: refused, never the nearer one"),
    ((109.5, 110.5), 100.0, 110.0, R01, 0.0, None, "only one fits, but a jump the typical power does not allow"),
    ((109.5, 110.5), 100.0, 110.0, R01, 45.0 / 3600, 109.5, "the same jump when the typical power allows it"),
]


@pytest.mark.parametrize(("choices", "before", "after", "rules", "rate", "chosen", "why"), CHOICE_CASES,
                         ids=[c[-1] for c in CHOICE_CASES])
def test_history_chooses_between_plausible_readings(choices: tuple[float, ...], before: float, after: float,
                                                    rules: Rules, rate: float, chosen: float | None,
                                                    why: str) -> None:
    value, reason = choose(_choice_frame(choices), _anchor("p", 0, before), _anchor("n", 30, after), rate, rules)
    assert value == chosen, reason
    assert ("chosen by p" in reason) == (chosen is not None)


def test_choice_needs_neighbours_on_both_sides() -> None:
    f = _choice_frame((1835.0, 1834.9))
    assert choose(f, _anchor("p", 0, 1835.0), None, 0.0, R01)[0] is None
    assert choose(f, None, _anchor("n", 30, 1835.0), 0.0, R01)[0] is None


def test_frame_carries_the_assemblers_candidates() -> None:
    res = OcrResult(None, None, 0.9, drums("18349"), error="1835 or 1834: both plausible", candidates=["1835", "1834"])
    f = Frame.from_ocr("k", T0, res)
    assert f.choices == (1835.0, 1834.0) and f.decimals == 0 and f.value is None
    assert Frame.from_ocr("k", T0, OcrResult("1835", 1835.0, 0.9, drums("1835"))).choices == ()
    assert parse_choices("0123.4 or 0123.5") == (123.4, 123.5)  # the photos table's reading of a held frame
    assert parse_choices("") == () and parse_choices("12.3") == () and parse_choices(["a", "b"]) == ()


def history(increments: list[float], start: float = 100.0) -> tuple[list[float], list[float]]:
    """Times 15 minutes apart and fine values of readings whose register rises by ``increments`` (kWh)."""
    v = np.cumsum([start, *increments])
    return [T0.timestamp() + 900.0 * i for i in range(len(v))], v.tolist()


def test_the_kink_limit_grows_with_a_meters_bursty_load() -> None:
    rules = Rules.of(resolution_kwh=0.1)
    assert kink_limit(*history([0.05] * 40), rules) == rules.validation.kink_steps  # a smooth load
    assert kink_limit(*history([0.0, 0.6] * 3), rules) == rules.validation.kink_steps  # too little history
    bursty = history([0.0, 0.6] * 20)  # a tap opened every half hour: each reading 3 steps off its line
    assert kink_limit(*bursty, rules) == pytest.approx(2 * 3.0)
    assert kink_limit(*bursty, Rules.of(resolution_kwh=0.1, kink_spread=0)) == rules.validation.kink_steps
    p, a, n = (Anchor(f"a{i}", datetime.fromtimestamp(bursty[0][i], UTC), round(bursty[1][i], 1),
                      confidence=UNSURE, fine=bursty[1][i]) for i in (-3, -2, -1))
    assert kink(p, a, n, rules) is not None and kink(p, a, n, rules, kink_limit(*bursty, rules)) is None


UNSURE = 0.9  # below validation.kink_confidence: an anchor the kink rule checks


def anchors(values: list[float], confidence: float = UNSURE) -> list[Anchor]:
    """Anchors 15 minutes apart with these fine values (value: the step below), read at ``confidence``."""
    return [Anchor(f"a{i}", T0 + timedelta(minutes=15 * i), int(v * 10) / 10, confidence=confidence, fine=v)
            for i, v in enumerate(values)]


def test_a_reading_on_the_trend_before_it_is_a_load_change_not_a_kink() -> None:
    """A kettle switched on after a2: 100.05, 100.25, 100.45 rise steadily, then 101.05. a2 lies 2.0 steps below the
    line from a1 to a3 but on the line of a0 and a1: not withdrawn. A misread (steady load, a2 read 3 steps high)
    lies off both lines: withdrawn. An anchor long before gives no trend."""
    rules = Rules.of(resolution_kwh=0.1)
    b, p, a, n = anchors([100.05, 100.25, 100.45, 101.05])
    assert kink(p, a, n, rules) is not None  # without the anchor before: withdrawn as before
    assert kink(p, a, n, rules, before=b) is None
    b, p, a, n = anchors([100.05, 100.45, 101.15, 101.25])  # the truth at a2: 100.85
    assert kink(p, a, n, rules, before=b) is not None
    b, p, a, n = anchors([100.05, 100.45, 101.15, 101.25], confidence=0.99)  # read surely: not a kink (kinks.sure)
    assert kink(p, a, n, rules, before=b) is None
    b, p, a, n = anchors([100.05, 100.25, 100.45, 101.05])
    long_before = Anchor("b", T0 - timedelta(hours=2), 99.9, fine=99.95)
    assert kink(p, a, n, rules, before=long_before) is not None
