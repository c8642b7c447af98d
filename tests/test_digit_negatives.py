"""The "not a digit" crops the reject class is trained on (ocr/digit_negatives.py)."""

from __future__ import annotations

import numpy as np
import pytest

from smartmeter.ocr import digit_negatives as neg
from smartmeter.ocr.digit_fonts import find_fonts


def _crops(n: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (40 + i, 24 + i, 3)).astype(np.uint8) for i in range(n)]


def test_between_is_the_right_half_of_one_drum_beside_the_left_half_of_another() -> None:
    a = np.zeros((40, 20, 3), np.uint8)
    a[:, 10:] = 200  # the right half of a is light
    b = np.full((40, 20, 3), 90, np.uint8)
    out = neg.between(a, b)
    assert out.shape == a.shape
    assert out[:, :3].mean() > 150 and abs(float(out[:, -3:].mean()) - 90) < 5  # a's right half ... b's left half


def test_edge_covers_about_half_the_width_and_leaves_the_rest() -> None:
    a = np.full((40, 20, 3), 128, np.uint8)
    out = neg.edge(a, np.random.default_rng(0))
    flat_cols = [c for c in range(20) if (out[:, c] != 128).all()]
    assert 9 <= len(flat_cols) <= 12 and (flat_cols[0] == 0 or flat_cols[-1] == 19)


def test_blank_has_the_border_colour_and_glare_saturates_the_middle() -> None:
    a = np.full((40, 20, 3), 60, np.uint8)
    a[10:30, 5:15] = 250  # the digit
    blank = neg.blank(a, np.random.default_rng(1))
    assert abs(float(np.median(blank)) - 60) < 15 and blank.std() < 20
    glared = neg.glare(np.full((40, 20, 3), 60, np.uint8), np.random.default_rng(2))
    assert glared[20, 10].min() == 255 and glared[0, 0].max() < 255


def test_draw_is_seeded_and_gives_every_kind() -> None:
    crops = _crops()
    one = neg.draw(crops, 40, np.random.default_rng(7))
    two = neg.draw(crops, 40, np.random.default_rng(7))
    assert len(one) == 40 and all(np.array_equal(x, y) for x, y in zip(one, two, strict=True))
    assert all(x.ndim == 3 and x.shape[2] == 3 and x.dtype == np.uint8 for x in one)
    assert neg.share_count(0.0, 1000) == 0 and neg.share_count(0.2, 800) == 200


def test_text_is_print_that_is_no_digit() -> None:
    fonts = [f.path for f in find_fonts() if not f.segments]
    if not fonts:
        pytest.skip("no drum fonts installed (make train installs them)")
    rng = np.random.default_rng(5)
    cells = [neg.text(fonts, rng) for _ in range(30)]
    assert all(c.ndim == 3 and c.shape[0] > c.shape[1] for c in cells)
    assert all(float(c.std()) > 5 for c in cells)  # something is printed on every cell
    assert not set("0123456789BDOSZGbTIl") & set(neg.TEXT)
