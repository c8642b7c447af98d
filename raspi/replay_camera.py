"""The ``replay`` camera: the photos of a folder, in name order, one per shot (tests, demos, a rehearsal on a Pi
without the camera). Files are returned as they are: the folder should hold JPEGs."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from smartmeter.errors import ConfigError, ExternalToolError
from smartmeter.raspi.camera import Camera
from smartmeter.settings import CameraSettings

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
