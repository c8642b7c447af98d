from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import pytest

from smartmeter.errors import ExternalToolError
from smartmeter.raspi.camera import open_camera
from smartmeter.settings import CameraSettings


def test_picamera2_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # not installed here (it comes from apt on the Pi)
    with pytest.raises(ExternalToolError, match="picamera2"):
        open_camera(CameraSettings(backend="picamera2"))


def test_opencv_without_device_is_a_clear_error() -> None:
    with pytest.raises(ExternalToolError, match="cannot open camera device"):
        open_camera(CameraSettings(backend="opencv", device=97))


def test_sim_camera_renders_jpegs_of_an_advancing_register() -> None:
    pytest.importorskip("smartmeter.simulator.meter_render")
    cam = open_camera(CameraSettings(backend="sim", sim_power_w=3600.0, sim_start_kwh=100.0))
    t0 = datetime.now(UTC)
    a = cam.capture(t0)
    b = cam.capture(t0 + timedelta(hours=1))
    assert a[:2] == b"\xff\xd8" and b[:2] == b"\xff\xd8"
    assert a != b
    cam.close()
