"""Camera backends behind one small interface, chosen by ``camera.backend``: picamera2 | opencv | replay | sim.

Every backend returns a JPEG. The backend class is looked up in ``BACKENDS`` (import paths, imported on first use),
so the Pi imports only the backend it runs: never OpenCV with picamera2, and raspi never imports the simulator
(the ``sim`` backend lives in ``smartmeter.simulator.camera``, a layer above) except through this table.
"""

from __future__ import annotations

import importlib
import logging
from abc import ABC, abstractmethod
from datetime import datetime

from smartmeter.errors import ConfigError, ExternalToolError
from smartmeter.settings import CameraSettings

log = logging.getLogger(__name__)

# backend name -> "module:Class"; the class takes the CameraSettings.
BACKENDS: dict[str, str] = {
    "picamera2": "smartmeter.raspi.picamera2_camera:Picamera2Camera",
    "opencv": "smartmeter.raspi.opencv_camera:OpenCvCamera",
    "replay": "smartmeter.raspi.replay_camera:ReplayCamera",
    "sim": "smartmeter.simulator.camera:SimCamera",
}

# What to install when a backend's module cannot be imported.
INSTALL_HINTS: dict[str, str] = {
    "picamera2": "apt install python3-picamera2 and create the venv with --system-site-packages",
    "opencv": "pip install opencv-python-headless (USB webcams only; the Pi camera needs no OpenCV)",
    "sim": "the simulated camera needs the simulator's dependencies: pip install 'smartmeter[ocr]'",
}


class Camera(ABC):
    name = "camera"

    @abstractmethod
    def capture(self, ts: datetime) -> bytes:
        """Take one photo at (about) ``ts``; return JPEG bytes. Raise on failure."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device."""


def backend_class(name: str) -> type[Camera]:
    """The camera class registered as ``name``; a clear error when unknown or not installed."""
    try:
        target = BACKENDS[name]
    except KeyError as exc:
        raise ConfigError(f"unknown camera backend {name!r}", hint="one of: " + ", ".join(BACKENDS)) from exc
    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ExternalToolError(f"camera backend {name!r} is not available: {exc}",
                                hint=INSTALL_HINTS.get(name)) from exc
    cls: type[Camera] = getattr(module, attr)
    return cls


def open_camera(settings: CameraSettings) -> Camera:
    """Create the configured camera backend."""
    return backend_class(settings.backend)(settings)  # type: ignore[call-arg]
