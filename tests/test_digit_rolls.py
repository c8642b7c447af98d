"""Synthetic half-rolled drums from a meter's whole-digit crops (training data for the digit model)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from smartmeter.ocr.digit_data import DigitSet
from smartmeter.ocr.digit_rolls import build_roll_pools, roll_crop, synth_rolls

H, W = 40, 24


def digit(d: int) -> np.ndarray:
    img = np.full((H, W, 3), 30, np.uint8)
    cv2.putText(img, str(d), (3, 31), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (230, 230, 230), 2)
    return img


def drum_window(d: int, frac: float, pitch: int) -> np.ndarray:
    """A drum strip drawn digit by digit ``pitch`` rows apart, looked at ``frac`` of a step past ``d``."""
    strip = np.full((pitch * 3 + H, W, 3), 30, np.uint8)
    for k in range(3):
        strip[k * pitch:k * pitch + H] = np.maximum(strip[k * pitch:k * pitch + H], digit((d + k) % 10))
    y0 = round(frac * pitch)
    return strip[y0:y0 + H]


def dataset() -> DigitSet:
    crops, labels, meters = [], [], []
    for d in range(10):  # a drum meter: whole digits and some half-rolled ones
        crops += [digit(d), drum_window(d, 0.5, H)]
        labels += [float(d), d + 0.5]
        meters += ["drum", "drum"]
    for d in range(10):  # an LCD: whole digits only, nothing rolls
        crops.append(digit(d))
        labels.append(float(d))
        meters.append("lcd")
    return DigitSet(crops, np.array(labels), np.array(meters), [f"{i}.jpg" for i in range(len(crops))])


def test_roll_crop_geometry() -> None:
    top, bottom = digit(3), digit(4)
    assert np.array_equal(roll_crop(top, bottom, 0.0, H), top)  # at rest: the digit itself
    assert np.array_equal(roll_crop(top, bottom, 0.5, H), drum_window(3, 0.5, H))
    assert roll_crop(top, bottom, 0.5, H - 10).shape == top.shape  # crops that show their neighbours: trimmed
    banded = roll_crop(top, bottom, 0.99, H + 8)  # digits further apart: a band of drum between them
    assert banded.shape == top.shape


def test_pools_skip_meters_that_do_not_roll_and_find_the_pitch() -> None:
    pools = build_roll_pools(dataset())
    assert set(pools) == {"drum"}
    ratio, by_digit = pools["drum"]
    assert all(len(p) == 1 for p in by_digit)
    assert ratio == pytest.approx(1.0, abs=0.05)  # the half-rolled crops were drawn with pitch = crop height


def test_a_static_pitch_rolls_the_meters_that_never_roll_too() -> None:
    """With ``static_pitch`` the LCD gets a pool at that pitch; the drum keeps the pitch measured on its crops."""
    pools = build_roll_pools(dataset(), static_pitch=1.1)
    assert set(pools) == {"drum", "lcd"}
    assert pools["lcd"][0] == 1.1
    assert pools["drum"][0] == pytest.approx(1.0, abs=0.05)


def test_synth_rolls_replaces_a_share_with_consistent_labels() -> None:
    data = dataset()
    pools = build_roll_pools(data)
    crops, labels = synth_rolls(data, pools, np.random.default_rng(0), share=1.0)
    drum = data.meters == "drum"
    assert np.array_equal(labels[~drum], data.labels[~drum])  # the LCD is left alone
    assert all(crops[i] is data.crops[i] for i in np.flatnonzero(~drum))
    assert not np.array_equal(labels[drum], data.labels[drum])
    assert ((labels >= 0) & (labels < 10)).all()
    for i in np.flatnonzero(drum):  # every synthetic crop is what a drum at its label shows
        d, frac = int(labels[i]), labels[i] % 1.0
        pitch = round(pools["drum"][0] * H)
        if abs(pitch - H) <= 2:
            diff = np.abs(crops[i].astype(int) - drum_window(d, frac, H).astype(int)).mean()
            assert diff < 25, (labels[i], diff)
    untouched, same = synth_rolls(data, pools, np.random.default_rng(0), share=0.0)
    assert np.array_equal(same, data.labels)
