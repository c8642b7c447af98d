"""A USB/V4L2 webcam through OpenCV: the only raspi module allowed to import cv2 (importing it costs ~66 MB, so
the Pi camera path never does)."""

from __future__ import annotations

from datetime import datetime

import cv2

from smartmeter.errors import ExternalToolError
from smartmeter.raspi.camera import Camera
from smartmeter.settings import CameraSettings


class OpenCvCamera(Camera):
    """A USB/V4L2 camera through OpenCV."""

    name = "opencv"

    def __init__(self, settings: CameraSettings) -> None:
        self.settings = settings
        self.cap = cv2.VideoCapture(settings.device)
        if not self.cap.isOpened():
            raise ExternalToolError(f"cannot open camera device {settings.device}")
        self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, settings.width)
        self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, settings.height)
        if settings.exposure_us:
            self.cap.set(cv2.CAP_PROP_AUTO_EXPOSURE, 1)  # V4L2 manual mode
            self.cap.set(cv2.CAP_PROP_EXPOSURE, settings.exposure_us / 100.0)  # V4L2 units of 100 us

    def capture(self, ts: datetime) -> bytes:
        for _ in range(3):  # drop buffered frames so the photo is fresh
            self.cap.grab()
        ok, frame = self.cap.read()
        if not ok:
            raise ExternalToolError("camera returned no frame")
        ok, jpg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.settings.jpeg_quality])
        if not ok:
            raise ExternalToolError("cannot encode the frame as JPEG")
        return bytes(jpg.tobytes())

    def close(self) -> None:
        self.cap.release()
