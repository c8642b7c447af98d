"""Real local servers for the tests and benches: ``smartmeter serve`` in its own process (the API tests,
bench/api.py, bench/fleet.py), and what the alert and Home Assistant tests (and bench/alerts.py) deliver to: an
HTTP server that records webhook POSTs, an SMTP server (aiosmtpd) that records mails, an MQTT client that records
what arrives."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from aiosmtpd.controller import Controller
from paho.mqtt.enums import CallbackAPIVersion


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any SMARTMETER_* variable, plus ``extra``."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SMARTMETER_")} | extra


@contextmanager
def smartmeter_serve(config: Path, port: int, env: Mapping[str, str], log: Path, cwd: Path | None = None,
                     timeout: float = 120.0) -> Iterator[subprocess.Popen[bytes]]:
    """``smartmeter -c config serve`` in its own process (as in production; output to ``log``), yielded once
    ``/healthz`` on ``port`` answers 200; SIGTERM and a wait for its exit afterwards (its ``returncode`` then
    tells how it ended). ``env`` is its whole environment: with ``PYTHONPATH`` pointing at another tree (and a
    ``cwd`` outside this one) that tree's code runs. A server that exits or does not answer within ``timeout``
    seconds raises RuntimeError with the end of its log."""
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "smartmeter.cli", "-c", str(config), "serve"], env=dict(env),
                                cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"smartmeter serve did not come up: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class WebhookServer:
    """POSTs land in ``received`` as (monotonic arrival, headers, body); ``status`` is what it answers."""

    def __init__(self) -> None:
        self.received: queue.Queue[tuple[float, Any, bytes]] = queue.Queue()
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if outer.status == 200:
                    outer.received.put((time.monotonic(), self.headers, body))  # case-insensitive
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SmtpServer:
    """aiosmtpd on ``port``; mails land in ``received`` as (monotonic arrival, envelope)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.received: queue.Queue[tuple[float, Any]] = queue.Queue()
        outer = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                outer.received.put((time.monotonic(), envelope))
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


class MqttWatcher:
    """Subscribes to ``topics``; messages land in ``received`` as (monotonic arrival, topic, payload, retained)."""

    def __init__(self, port: int, *topics: str) -> None:
        self.received: queue.Queue[tuple[float, str, bytes, bool]] = queue.Queue()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"watch-{time.monotonic_ns()}")
        self.c.on_message = lambda c, u, m: self.received.put(
            (time.monotonic(), m.topic, bytes(m.payload), bool(m.retain)))
        done = threading.Event()
        self.c.on_subscribe = lambda *a: done.set()
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.c.subscribe([(t, 1) for t in topics])
        assert done.wait(5), "not subscribed"

    def publish(self, topic: str, payload: str, retain: bool = False) -> None:
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def drain(self, seconds: float) -> list[tuple[str, bytes, bool]]:
        """Everything that arrives within ``seconds``."""
        out, end = [], time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                _, topic, payload, retained = self.received.get(timeout=left)
            except queue.Empty:
                break
            out.append((topic, payload, retained))
        return out

    def json_on(self, topic: str, timeout: float = 5.0) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            try:
                _, t, payload, _ = self.received.get(timeout=left)
            except queue.Empty:
                break
            if t == topic:
                return json.loads(payload)  # type: ignore[no-any-return]
        raise AssertionError(f"nothing on {topic} within {timeout} s")

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()
