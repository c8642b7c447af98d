from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest

from smartmeter.errors import ConfigError, ExternalToolError
from smartmeter.raspi import picamera2_camera
from smartmeter.raspi.camera import BACKENDS, open_camera
from smartmeter.settings import CameraSettings

STANDINS = Path(__file__).parent / "standins"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["simplejpeg", "capture_file"])
def picamera2(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The picamera2 stand-in (real call signatures, see its docstring) in place of the apt package; every test
    runs with both JPEG paths: simplejpeg (as on Raspberry Pi OS) and capture_file (where simplejpeg is missing)."""
    if request.param == "simplejpeg":
        pytest.importorskip("simplejpeg")
    else:
        monkeypatch.setattr(picamera2_camera, "jpeg_encoder", lambda: None)
    monkeypatch.syspath_prepend(str(STANDINS))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    import picamera2

    picamera2.reset()
    yield picamera2
    picamera2.reset()


def pi(**kw: object) -> CameraSettings:
    args: dict[str, object] = {"backend": "picamera2", "settle_s": 0, "width": 320, "height": 240} | kw
    return CameraSettings(**args)  # type: ignore[arg-type]


def test_picamera2_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # not installed here (it comes from apt on the Pi)
    with pytest.raises(ExternalToolError, match="picamera2"):
        open_camera(CameraSettings(backend="picamera2"))


def test_picamera2_still_config_resolution_and_jpeg(picamera2: ModuleType) -> None:
    cam = open_camera(pi())
    jpeg = cam.capture(T0)
    real = picamera2.INSTANCES[0]
    assert real.started and real.camera_config["use_case"] == "still"
    assert real.camera_config["main"]["size"] == (320, 240)
    from PIL import Image

    assert jpeg[:2] == b"\xff\xd8" and Image.open(io.BytesIO(jpeg)).size == (320, 240)
    cam.close()
    assert not real.is_open


def test_picamera2_jpeg_quality_is_honoured(picamera2: ModuleType) -> None:
    sizes = {}
    for q in (50, 100):
        cam = open_camera(pi(jpeg_quality=q))
        sizes[q] = len(cam.capture(T0))
        assert picamera2.INSTANCES[-1].options["quality"] == q
        cam.close()
    assert sizes[100] > 1.5 * sizes[50]


def test_picamera2_autofocus_cycle_before_each_shot_without_lens_position(picamera2: ModuleType) -> None:
    cam = open_camera(pi())
    real = picamera2.INSTANCES[0]
    assert real.state["AfMode"] == 1  # auto, not picamera2's default manual focus
    cam.capture(T0)
    cam.capture(T0 + timedelta(minutes=1))
    assert real.autofocus_cycles == 2 and real.state["LensPosition"] == 8.0
    assert real.controls_set[0]["AeEnable"] is True  # automatic exposure


def test_picamera2_continuous_autofocus(picamera2: ModuleType) -> None:
    cam = open_camera(pi(autofocus="continuous"))
    real = picamera2.INSTANCES[0]
    cam.capture(T0)
    assert real.state["AfMode"] == 2 and real.state["AfTrigger"] == 0 and real.autofocus_cycles == 0


def test_picamera2_fixed_focus_and_manual_exposure(picamera2: ModuleType) -> None:
    cam = open_camera(pi(lens_position=7.5, exposure_us=30000, analogue_gain=2.0))
    real = picamera2.INSTANCES[0]
    cam.capture(T0)
    assert real.controls_set == [{"AeEnable": False, "ExposureTime": 30000, "AnalogueGain": 2.0, "AfMode": 0,
                                  "LensPosition": 7.5}]
    assert real.autofocus_cycles == 0


def test_picamera2_fixed_focus_camera_gets_no_af_controls(picamera2: ModuleType,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    picamera2.CAMERAS[:] = ["imx219"]  # Camera Module v2: no motorised lens (libcamera refuses AfMode)
    cam = open_camera(pi(lens_position=7.5))
    cam.capture(T0)
    assert picamera2.INSTANCES[0].autofocus_cycles == 0
    assert "fixed-focus" in caplog.text


def test_picamera2_failed_autofocus_still_takes_the_photo(picamera2: ModuleType,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    picamera2.AF_SUCCESS = False
    cam = open_camera(pi())
    assert cam.capture(T0)[:2] == b"\xff\xd8"
    assert cam.autofocus_failures == 1 and "autofocus did not converge" in caplog.text  # type: ignore[attr-defined]


def test_simplejpeg_frames_keep_their_colours() -> None:
    """A BGR888 frame is stored R, G, B (picamera2's format table): red in channel 0 stays red in the JPEG."""
    simplejpeg = pytest.importorskip("simplejpeg")
    import numpy as np
    from PIL import Image

    frame = np.zeros((64, 96, 3), dtype=np.uint8)
    frame[:, :, 0] = 255
    jpeg = picamera2_camera.encode_frame(simplejpeg, frame, 90)
    img = Image.open(io.BytesIO(jpeg))
    assert img.size == (96, 64)
    r, g, b = img.convert("RGB").getpixel((48, 32))  # type: ignore[misc]
    assert r > 240 and g < 15 and b < 15


@pytest.mark.parametrize("picamera2", ["simplejpeg"], indirect=True)
def test_picamera2_frame_simplejpeg_cannot_read_is_a_clear_error(picamera2: ModuleType,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cam = open_camera(pi())
    import numpy as np

    monkeypatch.setattr(picamera2.INSTANCES[0], "capture_array", lambda name="main": np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ExternalToolError, match="cannot encode the Pi camera's frame"):
        cam.capture(T0)


def test_picamera2_no_camera_attached(picamera2: ModuleType) -> None:
    picamera2.CAMERAS[:] = []
    with pytest.raises(ExternalToolError, match="cannot open Pi camera 0.*rpicam-hello"):
        open_camera(pi())


@pytest.mark.fault("camera failure", proves="a camera timeout is a clear error and the next shot works")
def test_picamera2_capture_failure_is_a_clear_error(picamera2: ModuleType) -> None:
    cam = open_camera(pi())
    picamera2.FAIL_CAPTURES = 1
    with pytest.raises(ExternalToolError, match="capture failed: Camera frontend has timed out"):
        cam.capture(T0)
    assert cam.capture(T0)[:2] == b"\xff\xd8"  # the next shot works again


def test_picamera2_bad_configuration_closes_the_camera(picamera2: ModuleType) -> None:
    with pytest.raises(ExternalToolError, match="even"):
        open_camera(pi(width=321))
    assert not picamera2.INSTANCES[0].is_open


def test_opencv_without_device_is_a_clear_error() -> None:
    with pytest.raises(ExternalToolError, match="cannot open camera device"):
        open_camera(CameraSettings(backend="opencv", device=97))


def test_replay_gives_the_folder_in_order_then_fails(tmp_path: Path) -> None:
    for name in ("b.jpg", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(name.encode())
    cam = open_camera(CameraSettings(backend="replay", replay_dir=tmp_path))
    assert [cam.capture(T0), cam.capture(T0)] == [b"a.jpg", b"b.jpg"]
    with pytest.raises(ExternalToolError, match="all 2 photos"):
        cam.capture(T0)
    looping = open_camera(CameraSettings(backend="replay", replay_dir=tmp_path, replay_loop=True))
    assert [looping.capture(T0) for _ in range(3)] == [b"a.jpg", b"b.jpg", b"a.jpg"]


def test_replay_without_photos_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="replay_dir"):
        open_camera(CameraSettings(backend="replay"))
    with pytest.raises(ConfigError, match="no .jpg"):
        open_camera(CameraSettings(backend="replay", replay_dir=tmp_path))


def test_sim_camera_renders_jpegs_of_an_advancing_register() -> None:
    pytest.importorskip("smartmeter.simulator.meter_render")
    cam = open_camera(CameraSettings(backend="sim", sim_power_w=3600.0, sim_start_kwh=100.0))
    assert type(cam).__module__ == "smartmeter.simulator.camera"
    t0 = datetime.now(UTC)
    a = cam.capture(t0)
    b = cam.capture(t0 + timedelta(hours=1))
    assert a[:2] == b"\xff\xd8" and b[:2] == b"\xff\xd8"
    assert a != b
    cam.close()


def test_every_backend_is_registered_and_importable_by_path() -> None:
    assert set(BACKENDS) == {"picamera2", "opencv", "replay", "sim"}
    with pytest.raises(ConfigError, match="unknown camera backend"):
        from smartmeter.raspi.camera import backend_class

        backend_class("gopro")


def test_pi_camera_path_imports_neither_opencv_nor_the_simulator(tmp_path: Path) -> None:
    code = ("import sys; sys.path.insert(0, {!r})\n"
            "from smartmeter.raspi.cli import build_daemon\n"
            "from smartmeter.settings import Settings, CameraSettings\n"
            "s = Settings(camera=CameraSettings(backend='picamera2', settle_s=0, width=64, height=64, "
            "spool={{'dir': {!r}}}, health={{'port': None}}))\n"
            "d = build_daemon(s); d.capture.camera.capture(None)\n"
            "bad = sorted(m for m in sys.modules if m == 'cv2' or m.startswith(('smartmeter.simulator', 'pandas', "
            "'onnxruntime', 'smartmeter.server', 'smartmeter.ocr')))\n"
            "print(bad); assert not bad, bad\n").format(str(STANDINS), str(tmp_path / "spool"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr + out.stdout


def test_spool_uploader_and_health_are_sections_and_old_flat_keys_still_load(caplog: pytest.LogCaptureFixture) -> None:
    from smartmeter.settings import parse_settings

    new = parse_settings("camera:\n  spool:\n    dir: /x/spool\n    max_mb: 20\n  health:\n    port: null\n")
    assert new.camera.spool.dir == Path("/x/spool") and new.camera.spool.max_mb == 20
    assert new.camera.health.port is None and new.camera.uploader.idle_s == 5.0
    old = parse_settings("camera:\n  spool_dir: /x/spool\n  spool_max_mb: 20\n  health_port: null\n"
                         "  upload_max_backoff_s: 60\n")
    assert old.camera == new.camera.model_copy(update={"uploader": old.camera.uploader})
    assert old.camera.uploader.max_backoff_s == 60
    assert "camera.spool_dir is now camera.spool.dir" in caplog.text
    with pytest.raises(ConfigError, match="camera.spool.size_mb"):
        parse_settings("camera:\n  spool:\n    size_mb: 3\n")
