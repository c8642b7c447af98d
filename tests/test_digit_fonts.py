"""Rendered font digits for training: fonts found, labels match what the window shows."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest

from smartmeter.ocr.digit_fonts import DigitFont, find_fonts, render_digit, render_pool

MPL_FONTS = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf"  # always there with the dev extra
DEJAVU = MPL_FONTS / "DejaVuSans.ttf"


def ink_rows(crop: np.ndarray) -> np.ndarray:
    """Share of ink per row: pixels far from the window's median colour."""
    grey = crop.astype(np.float32).mean(axis=2)
    return (np.abs(grey - np.median(grey)) > 40).mean(axis=1)


def test_find_fonts_lists_fonts_with_digits() -> None:
    fonts = find_fonts(MPL_FONTS)
    names = {f.path.name for f in fonts}
    assert "DejaVuSans.ttf" in names
    assert not any(f.segments for f in fonts)  # no seven-segment font there
    assert find_fonts(Path("/nonexistent")) == []


def test_a_digit_at_rest_is_centred_and_a_rolling_one_is_split() -> None:
    font = DigitFont(DEJAVU, segments=False)
    rng = np.random.default_rng(0)
    for d in range(10):
        rest, label = render_digit(font, d + 0.0, rng)
        assert label == pytest.approx(float(d))
        rows = ink_rows(rest)
        h = len(rows)
        assert rows[h // 3:2 * h // 3].mean() > 0.05  # the digit fills the middle
        half, label = render_digit(font, d + 0.5, rng)
        assert label == pytest.approx((d + 0.5) % 10)
        rows = ink_rows(half)
        h = len(rows)
        assert rows[:h // 4].mean() > rows[2 * h // 5:3 * h // 5].mean()  # two half digits, a gap between


def test_lcd_fonts_render_whole_digits_only() -> None:
    crop, label = render_digit(DigitFont(DEJAVU, segments=True), 6.7, np.random.default_rng(1))
    assert label == 6.0
    assert crop.dtype == np.uint8 and crop.ndim == 3


def test_render_pool_is_seeded_and_labels_are_drum_positions() -> None:
    fonts = find_fonts(MPL_FONTS)[:3]
    a, la = render_pool(fonts, 20, seed=7, progress=False)
    b, lb = render_pool(fonts, 20, seed=7, progress=False)
    assert np.array_equal(la, lb) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert ((la >= 0) & (la < 10)).all()
    assert render_pool([], 5, seed=1, progress=False)[0] == []
