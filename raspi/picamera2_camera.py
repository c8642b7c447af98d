"""The Raspberry Pi camera through picamera2 (apt: python3-picamera2; the venv sees it via --system-site-packages).

A still configuration at ``width`` x ``height``; exposure automatic or fixed (``exposure_us``, ``analogue_gain``);
focus fixed (``lens_position``) or, on a camera with a motorised lens (Camera Module 3), autofocus: an AF cycle
before each shot (``autofocus: each-shot``, the default: the meter never moves, the light does) or continuous AF.
Without ``lens_position`` picamera2 leaves the Module 3 in manual focus at its default position, so autofocus must
be asked for.

JPEG: the frame is taken with ``capture_array`` and encoded with simplejpeg (libjpeg-turbo), as picamera2's own
``JpegEncoder`` does; simplejpeg comes with picamera2 on Raspberry Pi OS. ``capture_file`` would first copy the
frame into a PIL image (4 bytes a pixel: 8 MB more at 1640x1232, each shot) before encoding. Where simplejpeg is
missing, ``capture_file`` it is, with the quality in picamera2's ``options["quality"]``.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from smartmeter.errors import ExternalToolError
from smartmeter.raspi.camera import Camera
from smartmeter.settings import CameraSettings

log = logging.getLogger(__name__)

# libcamera's controls.AfModeEnum / AfTriggerEnum values (picamera2 takes the plain integers).
AF_MANUAL, AF_AUTO, AF_CONTINUOUS = 0, 1, 2
AF_TRIGGER_START = 0

# The still stream's pixel format and its byte order in memory (picamera2: "BGR888" is stored R, G, B).
STREAM_FORMAT, COLORSPACE = "BGR888", "RGB"

CAMERA_HINT = "is the ribbon cable seated and the camera enabled? try `rpicam-hello --list-cameras`"


def jpeg_encoder() -> Any | None:
    """simplejpeg, or None where it is not installed."""
    try:
        import simplejpeg  # type: ignore[import-not-found]
    except ImportError:
        return None
    return simplejpeg


def encode_frame(encoder: Any, frame: Any, quality: int) -> bytes:
    """A ``STREAM_FORMAT`` frame (height x width x 3, uint8) as JPEG bytes, chroma subsampled 4:2:0."""
    data: bytes = encoder.encode_jpeg(frame, quality=quality, colorspace=COLORSPACE, colorsubsampling="420")
    return data


class Picamera2Camera(Camera):
    """Raspberry Pi camera through picamera2."""

    name = "picamera2"

    def __init__(self, settings: CameraSettings, *, sleep: Callable[[float], None] = time.sleep) -> None:
        try:
            from picamera2 import Picamera2  # type: ignore[import-not-found]
        except ImportError as exc:
            raise ExternalToolError("picamera2 is not installed", hint="apt install python3-picamera2 and create "
                                    "the venv with --system-site-packages") from exc
        self.settings = settings
        self.sleep = sleep
        self.autofocus_failures = 0
        self.encoder = jpeg_encoder()
        try:
            self.cam: Any = Picamera2(settings.camera_num)
        except (RuntimeError, IndexError) as exc:
            raise ExternalToolError(f"cannot open Pi camera {settings.camera_num}: {exc}", hint=CAMERA_HINT) from exc
        try:
            self.has_autofocus = "AfMode" in self.cam.camera_controls
            config = self.cam.create_still_configuration(main={"size": (settings.width, settings.height),
                                                                 "format": STREAM_FORMAT})
            self.cam.configure(config)
            self.cam.options["quality"] = settings.jpeg_quality
            controls = self.controls()
            if controls:
                self.cam.set_controls(controls)
            self.cam.start()
        except Exception as exc:
            self.cam.close()
            raise ExternalToolError(f"cannot configure the Pi camera: {exc}", hint=CAMERA_HINT) from exc
        sleep(settings.settle_s)  # let exposure (and continuous AF) settle
        self.led: Any = None
        if settings.flash_gpio is not None:
            from gpiozero import LED  # type: ignore[import-not-found]

            self.led = LED(settings.flash_gpio)

    @property
    def autofocus_each_shot(self) -> bool:
        return self.has_autofocus and self.settings.lens_position is None and self.settings.autofocus == "each-shot"

    def controls(self) -> dict[str, Any]:
        """The libcamera controls set once at start: exposure and focus."""
        s = self.settings
        controls: dict[str, Any] = {}
        if s.exposure_us:
            controls.update(AeEnable=False, ExposureTime=s.exposure_us)
            if s.analogue_gain is not None:
                controls["AnalogueGain"] = s.analogue_gain
        else:
            controls["AeEnable"] = True
        if not self.has_autofocus:
            if s.lens_position is not None:
                log.warning("camera.lens_position is set but this camera has a fixed-focus lens: ignored")
        elif s.lens_position is not None:
            controls.update(AfMode=AF_MANUAL, LensPosition=s.lens_position)
        elif s.autofocus == "continuous":
            controls.update(AfMode=AF_CONTINUOUS, AfTrigger=AF_TRIGGER_START)
        else:
            controls["AfMode"] = AF_AUTO  # a cycle is triggered before each shot
        return controls

    def capture(self, ts: datetime) -> bytes:
        if self.autofocus_each_shot:
            try:
                focused = self.cam.autofocus_cycle()
            except RuntimeError as exc:
                raise ExternalToolError(f"autofocus failed: {exc}") from exc
            if not focused:
                self.autofocus_failures += 1
                log.warning("autofocus did not converge (%d so far): photo taken anyway", self.autofocus_failures)
        if self.led is not None:
            self.led.on()
            self.sleep(0.2)
        try:
            data = self._shoot()
        finally:
            if self.led is not None:
                self.led.off()
        if not data.startswith(b"\xff\xd8"):
            raise ExternalToolError("the Pi camera returned no JPEG")
        return data

    def _shoot(self) -> bytes:
        try:
            if self.encoder is None:
                buf = io.BytesIO()
                self.cam.capture_file(buf, format="jpeg")
                return buf.getvalue()
            frame = self.cam.capture_array("main")
        except RuntimeError as exc:
            raise ExternalToolError(f"Pi camera capture failed: {exc}", hint=CAMERA_HINT) from exc
        try:
            return encode_frame(self.encoder, frame, self.settings.jpeg_quality)
        except (ValueError, TypeError, RuntimeError) as exc:  # simplejpeg refuses a frame it cannot read
            raise ExternalToolError(f"cannot encode the Pi camera's frame as JPEG: {exc}") from exc

    def close(self) -> None:
        try:
            self.cam.close()
        finally:
            if self.led is not None:
                self.led.close()
