"""The daemon's health: a heartbeat file and a tiny local HTTP endpoint (``GET /health``), both the same JSON.

Fields: time, state (starting | waiting for clock sync | capturing | failing | stopping), capture and upload stats
(last capture, last upload, errors), spool photos/bytes/thinned/refused, oldest photo waiting, CPU temperature
(``/sys/class/thermal``, None where absent) and free disk on the spool's filesystem. ``smartmeter camera status``
asks the endpoint and falls back to the file. Nothing here lists the spool folder: the spool keeps counts.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

log = logging.getLogger(__name__)

THERMAL = Path("/sys/class/thermal/thermal_zone0/temp")


def cpu_temperature_c(path: Path = THERMAL) -> float | None:
    try:
        return int(path.read_text().strip()) / 1000.0
    except (OSError, ValueError):
        return None


def free_disk_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def write_heartbeat(path: Path, data: dict[str, object]) -> None:
    """Replace the heartbeat file atomically (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".health-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class HealthServer:
    """``GET /health`` -> the snapshot as JSON, served from a daemon thread; anything else 404."""

    def __init__(self, snapshot: Callable[[], dict[str, object]], host: str = "127.0.0.1", port: int = 0) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path.split("?", 1)[0] != "/health":
                    self.send_error(404, "only /health is served")
                    return
                try:
                    body = json.dumps(snapshot()).encode()
                except Exception:  # noqa: BLE001 - the endpoint must answer, never die
                    log.exception("health snapshot failed")
                    self.send_error(500, "health snapshot failed")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("health: " + format, *args)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.5},
                                       name="health", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> HealthServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
