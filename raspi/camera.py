"""Camera backends behind one small interface, chosen by ``camera.backend``: picamera2 | opencv | replay | sim.

Every backend returns a JPEG. The backend class is looked up in ``BACKENDS`` (import paths, imported on first use),
so the Pi imports only the backend it runs: never OpenCV with picamera2, and raspi never imports the simulator
(the ``sim`` backend lives in ``smartmeter.simulator.camera``, a layer above) except through this table. The
``replay`` backend (a folder of photos in name order, for tests, demos and rehearsals) lives here.
"""

from __future__ import annotations

import importlib
import logging
from abc import ABC, abstractmethod
from datetime import datetime
from pathlib import Path

from smartmeter.errors import ConfigError, ExternalToolError
from smartmeter.settings import CameraSettings

log = logging.getLogger(__name__)

# backend name -> "module:Class"; the class takes the CameraSettings.
BACKENDS: dict[str, str] = {
    "picamera2": "smartmeter.raspi.picamera2_camera:Picamera2Camera",
    "opencv": "smartmeter.raspi.opencv_camera:OpenCvCamera",
    "replay": "smartmeter.raspi.camera:ReplayCamera",
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


SUFFIXES = (".jpg", ".jpeg")


class ReplayCamera(Camera):
    """Returns the next photo of ``camera.replay_dir`` each shot; at the end starts over (``replay_loop``) or fails."""

    name = "replay"

    def __init__(self, settings: CameraSettings) -> None:
        if settings.replay_dir is None:
            raise ConfigError("camera.replay_dir is not set", hint="the replay backend needs a folder of photos")
        folder = Path(settings.replay_dir)
        if not folder.is_dir():
            raise ConfigError(f"camera.replay_dir {folder} is not a folder")
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
        if not self.files:
            raise ConfigError(f"camera.replay_dir {folder} holds no .jpg photos")
        self.loop = settings.replay_loop
        self.index = 0

    def capture(self, ts: datetime) -> bytes:
        if self.index >= len(self.files):
            if not self.loop:
                raise ExternalToolError(f"replay: all {len(self.files)} photos were shown")
            self.index = 0
        path = self.files[self.index]
        self.index += 1
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ExternalToolError(f"replay: cannot read {path.name}: {exc.strerror}") from exc


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
