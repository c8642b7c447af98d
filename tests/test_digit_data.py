"""Training-data helpers: the augmentation keeps shapes and labels, replays a recipe, adds what it says."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from smartmeter.errors import NotFoundError
from smartmeter.ocr.digit_data import _thin_line, augment_batch, load_digits, plain_batch
from smartmeter.ocr.digit_preprocess import HEIGHT, WIDTH


def crops(n: int = 12) -> list[np.ndarray]:
    out = []
    for i in range(n):
        img = np.full((60, 36, 3), 35, np.uint8)
        cv2.putText(img, str(i % 10), (4, 48), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (220, 220, 220), 3)
        out.append(img)
    return out


def test_augment_keeps_shape_and_labels() -> None:
    labels = np.arange(12) % 10 + 0.3
    planes, out_labels = augment_batch(crops(), labels, np.random.default_rng(1), glare=0.5, recipe=1, lines=0.5)
    assert planes.shape == (12, HEIGHT, WIDTH) and planes.dtype == np.float32
    assert np.array_equal(out_labels, labels)
    assert np.isfinite(planes).all()
    assert not np.allclose(planes, plain_batch(crops())[:, :, :])


def test_a_recipe_replays_draw_for_draw_without_the_new_options() -> None:
    labels = np.zeros(12)
    a, _ = augment_batch(crops(), labels, np.random.default_rng(7), glare=0.2, recipe=1)
    b, _ = augment_batch(crops(), labels, np.random.default_rng(7), glare=0.2, recipe=1, lines=0.0)
    c, _ = augment_batch(crops(), labels, np.random.default_rng(7), glare=0.2, recipe=1, lines=1.0)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_thin_line_is_thin() -> None:
    flat = np.full((60, 36), 40, np.uint8)
    rng = np.random.default_rng(3)
    for _ in range(20):
        changed = np.abs(_thin_line(flat, rng).astype(int) - 40) > 10
        rows = np.flatnonzero(changed.any(axis=1))
        assert 0 < len(rows) <= 0.25 * 60  # a line across, a few rows high even when tilted
        assert changed[rows].any(axis=0).mean() > 0.9  # ... crossing the whole window


def test_missing_data_set_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="labels.csv"):
        load_digits(tmp_path, progress=False)
