"""One rule turns per-digit values into a reading's confidence (smartmeter/ocr/reading.py), on both read paths."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from ocr_doubles import FixedReader

from smartmeter.ocr import autolocate
from smartmeter.ocr.assemble import assemble
from smartmeter.ocr.pipeline import MeterReader
from smartmeter.ocr.profile import Profile, load_profile
from smartmeter.ocr.reading import least_sure, reading_confidence
from smartmeter.types import DigitValue

PHOTOS = Path(__file__).parent / "resources" / "photos"
# drum 6 at 2.3 while drum 7 shows 7: a carry residual of 0.3, the assembly's consistency is 0.5
ROW = [0.0, 0.0, 4.0, 8.0, 1.0, 2.3, 7.0, 3.0]


def digits(confidences: Sequence[float], values: Sequence[float] = ROW) -> list[DigitValue]:
    return [DigitValue(v, c) for v, c in zip(values, confidences, strict=True)]


def test_the_least_sure_digit_times_the_consistency() -> None:
    assert reading_confidence(digits([0.99] * 7 + [0.9])) == 0.9  # not 0.99**7 * 0.9 = 0.84
    assert reading_confidence(digits([0.95] * 8), 0.5) == 0.475
    assert reading_confidence(digits([0.95] * 8), 1.0) == reading_confidence(digits([0.95] * 5, ROW[:5])) == 0.95
    assert reading_confidence([DigitValue(None, 0.9), DigitValue(1.0, 0.95)]) == 0.0  # an unread digit
    assert reading_confidence([]) == 0.0 == least_sure([])
    assert reading_confidence(digits([1.0] * 8), 1.2) == 1.0  # clamped to 0..1
    assert reading_confidence(digits([0.123456] * 8)) == 0.1235  # rounded as results carry it


def test_the_row_used_here_is_inconsistent() -> None:
    a = assemble(ROW, decimals=1)
    assert a.reading == "0048127.3" and a.confidence == pytest.approx(0.5)


def test_both_read_paths_give_the_same_confidence_for_the_same_digits() -> None:
    """Before, auto-locate took min(consistency, least sure digit) = 0.5 here and a profiled meter 0.95 x 0.5."""
    values = digits([0.95] * 8)
    profile = load_profile(PHOTOS / "meter.yaml").model_copy(update={"reference": None, "min_confidence": 0.3})
    profiled = MeterReader(profile, FixedReader(values)).read(PHOTOS / "upright.jpg")
    located = autolocate._assemble(values, Profile(kind="drum", digits=profile.digits, decimals=1))
    assert profiled.reading == located.reading == "0048127.3"
    assert profiled.confidence == located.confidence == pytest.approx(0.95 * 0.5, abs=1e-4)


def test_a_consistent_row_is_as_sure_as_its_least_sure_digit_on_both_paths() -> None:
    values = digits([0.99, 0.97, 0.99, 0.93, 0.99, 0.99, 0.98, 0.99], [0, 0, 4, 8, 1, 2, 7, 3])
    profile = load_profile(PHOTOS / "meter.yaml").model_copy(update={"reference": None})
    profiled = MeterReader(profile, FixedReader(values)).read(PHOTOS / "upright.jpg")
    located = autolocate._assemble(values, Profile(kind="drum", digits=profile.digits, decimals=1))
    assert profiled.confidence == located.confidence == 0.93
