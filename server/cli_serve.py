"""``smartmeter serve`` (the HTTP API with uvicorn) and ``smartmeter mqtt`` (the MQTT subscriber).

Both are thin wrappers: ``serve(settings)`` and ``run_mqtt(settings)`` do the work and can be called from Python.
Both stop cleanly on SIGTERM (systemd) and Ctrl-C.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import click
from fastapi import FastAPI

from smartmeter.errors import ConfigError
from smartmeter.server.api import create_app
from smartmeter.server.database import Database, open_database
from smartmeter.server.mqtt_ingest import MqttIngest
from smartmeter.settings import Settings

log = logging.getLogger(__name__)


def database_factory(settings: Settings) -> Database:
    """Open the readings database of ``settings`` (creating and migrating it on first use)."""
    return open_database(settings.database.url)


def build_app(settings: Settings) -> FastAPI:
    """The API app wired to the configured database."""
    return create_app(settings, lambda: database_factory(settings))


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Run the HTTP API until SIGTERM/SIGINT. The database is opened once first, so a bad URL fails here."""
    import uvicorn

    database_factory(settings).close()  # fail fast (exit 74) instead of answering 503 forever
    host, port = host or settings.api.host, port or settings.api.port
    log.info("serving the API on http://%s:%d", host, port)
    uvicorn.run(build_app(settings), host=host, port=port, log_level="info", access_log=False,
                proxy_headers=True, forwarded_allow_ips="127.0.0.1")


def stop_on_signals(stop: threading.Event) -> None:
    """Set ``stop`` on SIGTERM and SIGINT (call from the main thread)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_mqtt(settings: Settings, stop: threading.Event | None = None) -> MqttIngest:
    """Subscribe and store readings until ``stop`` is set (by default: until SIGTERM/SIGINT)."""
    if not settings.mqtt.enabled:
        raise ConfigError("MQTT ingest is disabled in the settings", hint="set mqtt.enabled: true")
    database_factory(settings).close()  # fail fast on a bad database url
    if stop is None:
        stop = threading.Event()
        stop_on_signals(stop)
    ingest = MqttIngest(settings, lambda: database_factory(settings), stop)
    ingest.run()
    return ingest


@click.command("serve")
@click.option("--host", default=None, help="Listen address (default: api.host from the settings).")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port (default: api.port from the settings).")
@click.pass_obj
def serve_cmd(obj: object, host: str | None, port: int | None) -> None:
    """Run the HTTP API (register meters, ingest readings, query them) until SIGTERM."""
    serve(obj.settings, host, port)  # type: ignore[attr-defined]


@click.command("mqtt")
@click.pass_obj
def mqtt_cmd(obj: object) -> None:
    """Subscribe to meter readings over MQTT and store them until SIGTERM."""
    ingest = run_mqtt(obj.settings)  # type: ignore[attr-defined]
    click.echo(f"mqtt ingest stopped after {ingest.connects} connection(s)", err=True)
