"""A stand-in for picamera2 (the apt package, Pi only) with its real call signatures, for tests and bench/camera.py.

Signatures follow raspberrypi/picamera2 (picamera2/picamera2.py): ``Picamera2(camera_num=0, verbose_console=None,
tuning=None)`` raising RuntimeError("Camera __init__ sequence did not complete.") when there is no camera;
``create_still_configuration(main={}, lores=None, raw={}, transform=..., colour_space=..., buffer_count=1,
controls={}, display=None, encode=None, queue=True)`` (ValueError on a bad stream key); ``configure(camera_config=
"preview")``; ``start(config=None, show_preview=False)``; ``set_controls(controls)`` (libcamera refuses controls the
camera does not advertise); ``options["quality"]`` (JPEG quality used by ``capture_file``, default 90);
``capture_file(file_output, name="main", format=None, wait=None, signal_function=None)`` returning metadata;
``capture_array(name="main", wait=None, signal_function=None)``; ``autofocus_cycle(wait=None,
signal_function=None)`` = set AfMode Auto + AfTrigger Start, return True when focused; ``close()``.

Switches (module globals, reset with ``reset()``): ``CAMERAS`` (models attached; "imx708" = Camera Module 3 with a
motorised lens, "imx219" = v2, fixed focus), ``AF_SUCCESS``, ``FAIL_CAPTURES`` (the next N captures raise as a
frontend timeout does), ``INSTANCES`` (every camera made).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

CAMERAS: list[str] = ["imx708"]
AF_SUCCESS = True
FAIL_CAPTURES = 0
INSTANCES: list[Picamera2] = []

AF_MODELS = {"imx708"}
BASE_CONTROLS: dict[str, tuple[Any, Any, Any]] = {
    "AeEnable": (False, True, True), "ExposureTime": (13, 112015443, 20000), "AnalogueGain": (1.0, 16.0, 1.0),
    "AwbEnable": (False, True, True), "FrameDurationLimits": (33333, 120000, 33333),
    "NoiseReductionMode": (0, 4, 0),
}
AF_CONTROLS: dict[str, tuple[Any, Any, Any]] = {
    "AfMode": (0, 2, 0), "AfTrigger": (0, 1, 0), "LensPosition": (0.0, 15.0, 1.0), "AfSpeed": (0, 1, 0),
}


def reset() -> None:
    global CAMERAS, AF_SUCCESS, FAIL_CAPTURES
    CAMERAS, AF_SUCCESS, FAIL_CAPTURES = ["imx708"], True, 0
    INSTANCES.clear()


class Picamera2:
    def __init__(self, camera_num: int = 0, verbose_console: Any = None, tuning: Any = None) -> None:
        if camera_num >= len(CAMERAS):
            raise RuntimeError("Camera __init__ sequence did not complete.")
        self.model = CAMERAS[camera_num]
        self.camera_num = camera_num
        self.is_open = True
        self.started = False
        self.camera_config: dict[str, Any] | None = None
        self.options: dict[str, Any] = {}
        self.controls_set: list[dict[str, Any]] = []
        self.state: dict[str, Any] = {"AfMode": 0, "LensPosition": 1.0, "AeEnable": True}
        self.autofocus_cycles = 0
        self.captures = 0
        INSTANCES.append(self)

    @property
    def camera_controls(self) -> dict[str, tuple[Any, Any, Any]]:
        return BASE_CONTROLS | (AF_CONTROLS if self.model in AF_MODELS else {})

    @property
    def sensor_resolution(self) -> tuple[int, int]:
        return (4608, 2592) if self.model == "imx708" else (3280, 2464)

    def create_still_configuration(self, main: dict[str, Any] | None = None, lores: Any = None, raw: Any = None,
                                   transform: Any = None, colour_space: Any = None, buffer_count: int = 1,
                                   controls: dict[str, Any] | None = None, display: Any = None, encode: Any = None,
                                   queue: bool = True) -> dict[str, Any]:
        stream = {"format": "BGR888", "size": self.sensor_resolution}
        for key, value in (main or {}).items():
            if key not in ("format", "size"):
                raise ValueError(f"Bad key {key!r}: valid stream configuration keys are ('format', 'size')")
            stream[key] = value
        return {"use_case": "still", "buffer_count": buffer_count, "queue": queue, "main": stream, "lores": lores,
                "raw": raw, "controls": dict(controls or {}), "display": display, "encode": encode}

    def configure(self, camera_config: Any = "preview") -> None:
        if not self.is_open:
            raise RuntimeError("Camera not opened")
        if isinstance(camera_config, str):
            camera_config = self.create_still_configuration()
        w, h = camera_config["main"]["size"]
        if w % 2 or h % 2:
            raise RuntimeError("width and height should be even")
        self.camera_config = camera_config

    def start(self, config: Any = None, show_preview: Any = False) -> None:
        if config is not None:
            self.configure(config)
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def stop(self) -> None:
        self.started = False

    def set_controls(self, controls: dict[str, Any]) -> None:
        for name in controls:
            if name not in self.camera_controls:
                raise RuntimeError(f"Control {name} is not advertised by libcamera")
        self.controls_set.append(dict(controls))
        self.state.update(controls)

    def _frame(self) -> np.ndarray:
        """A new frame, as the real one copies each out of its DMA buffer: a grey ramp with sensor noise (uint8)."""
        assert self.camera_config is not None
        w, h = self.camera_config["main"]["size"]
        if getattr(self, "_ramp", None) is None or self._ramp.shape != (h, w):
            ramp = np.arange(w, dtype=np.uint16)[None, :] + np.arange(h, dtype=np.uint16)[:, None]
            ramp //= 2
            ramp %= 128
            self._ramp = ramp.astype(np.uint8)
        rng = np.random.default_rng(self.captures)
        frame = np.empty((h, w, 3), dtype=np.uint8)
        np.add(self._ramp, rng.integers(0, 12, size=(h, w), dtype=np.uint8), out=frame[:, :, 0])
        frame[:, :, 1] = frame[:, :, 0]
        frame[:, :, 2] = frame[:, :, 0]
        return frame

    def capture_array(self, name: str = "main", wait: Any = None, signal_function: Any = None) -> np.ndarray:
        self._check_capture()
        return self._frame()

    def _check_capture(self) -> None:
        global FAIL_CAPTURES
        if not self.started:
            raise RuntimeError("Camera is not started")
        self.captures += 1
        if FAIL_CAPTURES > 0:
            FAIL_CAPTURES -= 1
            raise RuntimeError("Camera frontend has timed out!")

    def capture_file(self, file_output: Any, name: str = "main", format: str | None = None, wait: Any = None,
                     signal_function: Any = None) -> dict[str, Any]:
        self._check_capture()
        if format is None:
            if not isinstance(file_output, str):
                raise RuntimeError("Cannot determine format to save")
            format = file_output.rsplit(".", 1)[-1]
        img = Image.fromarray(self._frame())
        quality = self.options.get("quality", 90)
        if isinstance(file_output, io.IOBase):
            img.save(file_output, format="JPEG" if format.lower() in ("jpg", "jpeg") else format, quality=quality)
        else:
            img.save(file_output, quality=quality)
        return self.capture_metadata()

    def capture_metadata(self, wait: Any = None, signal_function: Any = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"ExposureTime": self.state.get("ExposureTime", 20000), "AnalogueGain": 1.0}
        if self.model in AF_MODELS:
            meta["LensPosition"] = self.state["LensPosition"]
        return meta

    def autofocus_cycle(self, wait: Any = None, signal_function: Any = None) -> bool:
        self.set_controls({"AfMode": 1, "AfTrigger": 0})
        self.autofocus_cycles += 1
        if AF_SUCCESS:
            self.state["LensPosition"] = 8.0
        return AF_SUCCESS

    def close(self) -> None:
        self.stop()
        self.is_open = False
