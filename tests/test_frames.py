"""The validator's vocabulary (server/frames.py): rules from settings, frames from OCR results, the value with the
last drum's fraction, and the values a frame may stand for when drums are caught mid-roll."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from smartmeter.server.frames import Frame, Rules, candidates, mid_roll
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
