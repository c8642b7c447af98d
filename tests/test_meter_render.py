"""Simulated meter photos: rolling drums, real crops at the exact position, profile, photos command."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from smartmeter.cli import cli
from smartmeter.errors import ConfigError, InputError
from smartmeter.ocr.profile import load_profile
from smartmeter.simulator.meter_render import MeterRenderer, drum_positions, load_crops
from smartmeter.types import parse_photo_name

T = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("register", "tenths", "reading"), [
    (12345.67, [0, 10, 20, 30, 40, 50, 67], 123456),  # only the last drum is between digits
    (12399.96, [0, 10, 20, 36, 96, 96, 96], 123999),  # 9->0 carries roll the drums to the left together
    (1299.95, [0, 0, 10, 25, 95, 95, 95], 12999),
    (99999.99, [9, 99, 99, 99, 99, 99, 99], 999999),
    (1000000.0, [0, 0, 0, 0, 0, 0, 0], 0),  # the counter wraps
    (0.0, [0, 0, 0, 0, 0, 0, 0], 0),
])
def test_drum_positions(register: float, tenths: list[int], reading: int) -> None:
    assert drum_positions(register, 7, 1) == (tenths, reading)


def test_drum_positions_reject_bad_registers() -> None:
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(InputError):
            drum_positions(bad, 7, 1)


def test_every_tenth_position_has_real_crops() -> None:
    for style in ("powermeter-emeter1", "watermeter-techem"):
        pools = load_crops(style)
        assert len(pools) == 100 and all(len(p) >= 2 for p in pools)


def test_render_pastes_a_crop_of_the_exact_position() -> None:
    r = MeterRenderer(seed=2, effects=False)
    img, truth = r.render_array(4242.47, T)
    assert img.shape == (240, 320, 3)
    assert truth.reading == "004242.4" and truth.value == pytest.approx(4242.4)
    assert truth.positions == (0.0, 0.0, 4.0, 2.0, 4.0, 2.0, 4.7)
    pools = load_crops(r.style)
    for (x, y, w, h), pos in zip(r.boxes, truth.positions, strict=True):
        crop = img[y:y + h, x:x + w]
        assert any(np.array_equal(crop, c) for c in pools[round(pos * 10)])


def test_render_jpeg_with_camera_effects_and_reproducible() -> None:
    a, b = MeterRenderer(seed=5), MeterRenderer(seed=5)
    shifts, blurred = set(), 0
    for i in range(40):
        ja, ta = a.render(100 + i * 0.37, T + timedelta(minutes=5 * i))
        jb, tb = b.render(100 + i * 0.37, T + timedelta(minutes=5 * i))
        assert ja == jb and ta == tb
        shifts.add(ta.shift)
        blurred += ta.blurred
        assert abs(ta.shift[0]) <= 6 and abs(ta.shift[1]) <= 6
    img = cv2.imdecode(np.frombuffer(ja, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (240, 320, 3) and len(ja) < 40_000
    assert len(shifts) > 10 and 0 < blurred < 40
    assert MeterRenderer(seed=6).render(100, T)[0] != MeterRenderer(seed=5).render(100, T)[0]


def test_profile_matches_the_reference(tmp_path: Path) -> None:
    r = MeterRenderer(seed=1, meter_id="sim7")
    path = r.write_profile(tmp_path)
    prof = load_profile(path)
    assert prof.meter == "sim7" and prof.decimals == 1 and len(prof.digits) == 7
    assert prof.reference == (tmp_path / "reference.png").resolve()
    ref = cv2.imread(str(prof.reference))
    assert ref.shape == (240, 320, 3)
    for x, y, w, h in prof.digits:
        assert x + w <= 320 and y + h <= 240
        assert ref[y:y + h, x:x + w].mean() < ref.mean()  # a digit on a dark drum, not the light body


def test_bad_renderer_settings() -> None:
    with pytest.raises(ConfigError):
        MeterRenderer(style="gas-meter")
    with pytest.raises(ConfigError):
        MeterRenderer(integer_digits=12)


def test_photos_command(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("timestamp,contatore,potenza\n2024-01-01T00:00:00Z,100.0,0.5\n2024-01-01T02:00:00Z,101.0,0.5\n")
    stale = [{"kind": "stale_camera", "start": "2024-01-01T00:30:00Z", "end": "2024-01-01T01:00:00Z",
              "details": {}}]
    (tmp_path / "events.json").write_text(json.dumps(stale))
    out = tmp_path / "photos"
    res = CliRunner().invoke(cli, ["simulate", "photos", "--csv", str(data), "--out", str(out), "--every", "600",
                                   "--meter", "m9"])
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (out / "images").iterdir())
    assert len(names) == 13 - 3  # 00:30, 00:40, 00:50 are inside the stale window
    assert all(parse_photo_name(n)[0] == "m9" for n in names)
    with (out / "truth.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["photo"] for r in rows] == names
    assert rows[-1]["reading"] == "000101.0" and rows[3]["reading"] == "000100.5"
    assert (out / "profile.yaml").exists() and (out / "reference.png").exists()
    missing = CliRunner().invoke(cli, ["simulate", "photos", "--csv", str(tmp_path / "nope.csv"), "--out", str(out)])
    assert missing.exit_code == 66
