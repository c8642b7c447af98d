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
from smartmeter.raspi.spool import Spool
from smartmeter.raspi.uploader import Uploader
from smartmeter.settings import Settings
from smartmeter.store import open_store


def build_daemon(settings: Settings) -> CameraDaemon:
    """Wire camera, spool, store and the two loops from the settings."""
    cam = settings.camera
    spool = Spool(cam.spool_dir, int(cam.spool_max_mb * 1e6))
    capture = CaptureLoop(open_camera(cam), spool, cam.meter_id, cam.interval_s)
    uploader = Uploader(spool, open_store(settings.store), idle_s=cam.upload_idle_s,
                        max_backoff_s=cam.upload_max_backoff_s)
    return CameraDaemon(capture, uploader, cam.health_file)


def upload_spool(settings: Settings) -> int:
    """Drain the spool into the image store once; returns how many photos were uploaded."""
    cam = settings.camera
    spool = Spool(cam.spool_dir, int(cam.spool_max_mb * 1e6))
    return Uploader(spool, open_store(settings.store)).upload_once()


def read_health(path: Path) -> dict[str, object]:
    try:
        data: dict[str, object] = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise NotFoundError(f"no heartbeat at {path}: is the camera daemon running?") from exc
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
    """Show the daemon's last heartbeat: captures, uploads, spool depth."""
    settings: Settings = obj.settings  # type: ignore[attr-defined]
    health = read_health(settings.camera.health_file)
    age = time.time() - float(health.get("time", 0))  # type: ignore[arg-type]
    click.echo(json.dumps(health, indent=2))
    click.echo(f"heartbeat {age:.0f}s ago" + (" (STALE)" if age > 3 * 10 + settings.camera.interval_s else ""))
