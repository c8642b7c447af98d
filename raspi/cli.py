"""``smartmeter camera``: the Raspberry Pi camera daemon and its tools."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from smartmeter.errors import NotFoundError
from smartmeter.raspi.camera import open_camera
from smartmeter.raspi.daemon import CameraDaemon, CaptureLoop
from smartmeter.raspi.schedule import make_schedule
from smartmeter.raspi.spool import Spool
from smartmeter.raspi.uploader import Uploader
from smartmeter.settings import CameraSettings, Settings
from smartmeter.store import open_store


def open_spool(cam: CameraSettings) -> Spool:
    return Spool(cam.spool.dir, int(cam.spool.max_mb * 1e6), min_free_bytes=int(cam.spool.min_free_mb * 1e6))


def build_daemon(settings: Settings) -> CameraDaemon:
    """Wire camera, spool, store and the two loops from the settings."""
    cam = settings.camera
    spool = open_spool(cam)
    schedule = make_schedule(cam.schedule, cam.interval_s)
    store = open_store(settings.store)
    capture = CaptureLoop(open_camera(cam), spool, cam.meter_id, schedule, max_failed=cam.max_failed_shots,
                          capture_timeout_s=cam.capture_timeout_s, require_clock_sync=cam.require_clock_sync)
    uploader = Uploader(spool, store, idle_s=cam.uploader.idle_s, max_backoff_s=cam.uploader.max_backoff_s)
    return CameraDaemon(capture, uploader, cam.health.file, health_port=cam.health.port, health_host=cam.health.host)


def upload_spool(settings: Settings) -> int:
    """Drain the spool into the image store once; returns how many photos were uploaded."""
    return Uploader(open_spool(settings.camera), open_store(settings.store)).upload_once()


def read_health(path: Path) -> dict[str, object]:
    try:
        data: dict[str, object] = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise NotFoundError(f"no heartbeat at {path}: is the camera daemon running?") from exc
    return data


def fetch_health(cam: CameraSettings, timeout_s: float = 3.0) -> dict[str, object] | None:
    """The running daemon's /health, or None when its endpoint is off or does not answer."""
    if not cam.health.port:
        return None
    import urllib.error
    import urllib.request

    url = f"http://{cam.health.host}:{cam.health.port}/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - a fixed local http URL
            data: dict[str, object] = json.loads(resp.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None
    return data


@click.group("camera")
def camera_group() -> None:
    """Raspberry Pi camera daemon and uploader."""


@camera_group.command("run")
@click.pass_obj
def run_cmd(obj: object) -> None:
    """Photograph the meter on schedule and upload in the background (until SIGTERM)."""
    build_daemon(obj.settings).run()  # type: ignore[attr-defined]


@camera_group.command("snap")
@click.argument("output", type=click.Path(path_type=Path))
@click.pass_obj
def snap_cmd(obj: object, output: Path) -> None:
    """Take one photo into OUTPUT (for aiming and focusing the camera)."""
    camera = open_camera(obj.settings.camera)  # type: ignore[attr-defined]
    try:
        output.write_bytes(camera.capture(datetime.now(UTC)))
    finally:
        camera.close()
    click.echo(f"wrote {output}")


@camera_group.command("upload")
@click.option("--once", is_flag=True, required=True, help="Drain the spool once and exit.")
@click.pass_obj
def upload_cmd(obj: object, once: bool) -> None:
    """Upload spooled photos to the image store now."""
    n = upload_spool(obj.settings)  # type: ignore[attr-defined]
    click.echo(f"uploaded {n} photo(s)")


@camera_group.command("status")
@click.pass_obj
def status_cmd(obj: object) -> None:
    """Show the daemon's health: state, last capture and upload, spool, CPU temperature, free disk."""
    cam: CameraSettings = obj.settings.camera  # type: ignore[attr-defined]
    health = fetch_health(cam)
    source = f"http://{cam.health.host}:{cam.health.port}/health"
    if health is None:
        health, source = read_health(cam.health.file), str(cam.health.file)
    age = time.time() - float(health.get("time", 0))  # type: ignore[arg-type]
    click.echo(json.dumps(health, indent=2))
    stale = age > 3 * 10 + cam.interval_s
    click.echo(f"from {source}, {age:.0f}s old" + (" (STALE: is the daemon running?)" if stale else ""))
