"""Rotation by any angle without losing content, flips, and the point mapping that matches them."""

from __future__ import annotations

import numpy as np
import pytest

from smartmeter.ocr.profile import Transform
from smartmeter.ocr.transforms import apply_transform, flip, rotate, transform_points


def marked(w: int = 60, h: int = 40) -> np.ndarray:
    """A black image with a white corner block at top-left and a grey one at bottom-right."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:5, :5] = 255
    img[-5:, -5:] = 128
    return img


def test_quarter_turns_are_exact_and_counter_clockwise() -> None:
    img = marked()
    r90 = rotate(img, 90)
    assert r90.shape == (60, 40, 3)
    assert (r90[-5:, :5] == 255).all()  # top-left goes to bottom-left when turned counter-clockwise
    assert np.array_equal(rotate(img, -90), rotate(img, 270))
    assert np.array_equal(rotate(img, 180), flip(img, "both"))
    assert np.array_equal(rotate(img, 360), img)
    assert np.array_equal(rotate(rotate(img, 90), -90), img)


@pytest.mark.parametrize("angle", [7.5, 30, 45, -33, 135, 200])
def test_any_angle_keeps_every_pixel(angle: float) -> None:
    img = np.full((40, 60), 200, np.uint8)
    out = rotate(img, angle)
    assert out.shape[0] >= 40 and out.shape[1] >= 40
    # all the content survives: the bright area keeps its size (up to interpolation at the edges)
    assert abs(np.count_nonzero(out > 100) - img.size) < 0.06 * img.size
    # and nothing touches the canvas edge except the rotated corners: no cropping
    back = rotate(out, -angle)
    h, w = back.shape
    y0, x0 = (h - 40) // 2, (w - 60) // 2
    assert np.count_nonzero(back[y0 + 2:y0 + 38, x0 + 2:x0 + 58] > 150) == 36 * 56


@pytest.mark.parametrize("mode", ["none", "horizontal", "vertical", "both"])
def test_flip_modes(mode: str) -> None:
    img = marked()
    out = flip(img, mode)
    row = 0 if mode in ("none", "horizontal") else -1
    col = 0 if mode in ("none", "vertical") else -1
    assert out[row, col, 0] == 255
    assert np.array_equal(flip(out, mode), img)


def test_unknown_flip_raises() -> None:
    with pytest.raises(ValueError, match="unknown flip"):
        flip(marked(), "diagonal")


@pytest.mark.parametrize("transform", [
    Transform(), Transform(rotate=90), Transform(rotate=-90, flip="horizontal"), Transform(rotate=180),
    Transform(rotate=30), Transform(rotate=-12.5, flip="vertical"), Transform(flip="both"),
])
def test_points_follow_the_pixels(transform: Transform) -> None:
    img = np.zeros((80, 120), np.uint8)
    img[20, 30] = 255
    img[60, 100] = 255
    out = apply_transform(img, transform)
    moved = transform_points(np.array([[30, 20], [100, 60]]), 120, 80, transform)
    for x, y in moved:
        xi, yi = int(round(x)), int(round(y))
        assert out[max(0, yi - 1):yi + 2, max(0, xi - 1):xi + 2].max() > 40, (transform, x, y)
