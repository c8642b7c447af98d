"""Camera backends behind one small interface, chosen by ``camera.backend``: picamera2 | opencv | sim.

Every backend returns a JPEG. Hardware libraries are imported lazily so the package imports anywhere.
"""

from __future__ import annotations

import io
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from smartmeter.errors import ConfigError, ExternalToolError
from smartmeter.settings import CameraSettings

log = logging.getLogger(__name__)


class Camera(ABC):
    name = "camera"

    @abstractmethod
    def capture(self, ts: datetime) -> bytes:
        """Take one photo at (about) ``ts``; return JPEG bytes. Raise on failure."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device."""


class Picamera2Camera(Camera):
    """Raspberry Pi camera through picamera2 (apt: python3-picamera2)."""

    name = "picamera2"

    def __init__(self, settings: CameraSettings) -> None:
        try:
            from picamera2 import Picamera2  # type: ignore[import-not-found]
        except ImportError as exc:
            raise ExternalToolError("picamera2 is not installed", hint="apt install python3-picamera2 and create "
                                    "the venv with --system-site-packages") from exc
        self.settings = settings
        self.cam: Any = Picamera2()
        config = self.cam.create_still_configuration(main={"size": (settings.width, settings.height)})
        self.cam.configure(config)
        controls: dict[str, Any] = {}
        if settings.exposure_us:
            controls.update(ExposureTime=settings.exposure_us, AeEnable=False)
        if settings.lens_position is not None:
            controls.update(AfMode=0, LensPosition=settings.lens_position)
        if controls:
            self.cam.set_controls(controls)
        self.cam.start()
        time.sleep(1.0)  # let exposure settle
        self.led: Any = None
        if settings.flash_gpio is not None:
            from gpiozero import LED  # type: ignore[import-not-found]

            self.led = LED(settings.flash_gpio)

    def capture(self, ts: datetime) -> bytes:
        if self.led is not None:
            self.led.on()
            time.sleep(0.2)
        try:
            buf = io.BytesIO()
            self.cam.capture_file(buf, format="jpeg")
            return buf.getvalue()
        finally:
            if self.led is not None:
                self.led.off()

    def close(self) -> None:
        self.cam.close()


class OpenCvCamera(Camera):
    """A USB/V4L2 camera through OpenCV."""

    name = "opencv"

    def __init__(self, settings: CameraSettings) -> None:
        import cv2

        self.cv2 = cv2
        self.settings = settings
        self.cap = cv2.VideoCapture(settings.device)
        if not self.cap.isOpened():
            raise ExternalToolError(f"cannot open camera device {settings.device}")
        self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, settings.width)
        self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, settings.height)

    def capture(self, ts: datetime) -> bytes:
        for _ in range(3):  # drop buffered frames so the photo is fresh
            self.cap.grab()
        ok, frame = self.cap.read()
        if not ok:
            raise ExternalToolError("camera returned no frame")
        ok, jpg = self.cv2.imencode(".jpg", frame, [self.cv2.IMWRITE_JPEG_QUALITY, self.settings.jpeg_quality])
        if not ok:
            raise ExternalToolError("cannot encode the frame as JPEG")
        return bytes(jpg.tobytes())

    def close(self) -> None:
        self.cap.release()


class SimCamera(Camera):
    """A virtual camera in front of a simulated meter (the simulator's renderer), for demos and tests.

    The register advances at ``power_w`` (constant) from ``start_kwh`` at ``start``; ``register_at`` may be
    replaced with any function of time (e.g. a simulated household).
    """

    name = "sim"

    def __init__(self, settings: CameraSettings, *, register_at: Callable[[datetime], float] | None = None,
                 seed: int = 1) -> None:
        from smartmeter.simulator.meter_render import MeterRenderer

        self.renderer = MeterRenderer(seed=seed)
        self.start = datetime.now(UTC)
        self.start_kwh, self.power_w = settings.sim_start_kwh, settings.sim_power_w
        self.register_at = register_at or self._constant_power

    def _constant_power(self, ts: datetime) -> float:
        hours = max((ts - self.start).total_seconds(), 0.0) / 3600.0
        return self.start_kwh + self.power_w * hours / 1000.0

    def capture(self, ts: datetime) -> bytes:
        jpeg, _truth = self.renderer.render(self.register_at(ts), ts)
        return jpeg


def open_camera(settings: CameraSettings) -> Camera:
    """Create the configured camera backend."""
    if settings.backend == "picamera2":
        return Picamera2Camera(settings)
    if settings.backend == "opencv":
        return OpenCvCamera(settings)
    if settings.backend == "sim":
        return SimCamera(settings)
    raise ConfigError(f"unknown camera backend {settings.backend!r}")
