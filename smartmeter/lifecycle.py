"""Long-running commands (``camera run``, ``worker``, ``mqtt``, ``serve``) stop the same way: SIGTERM or SIGINT sets a
stop event, the loop finishes its current item and returns, and the previous handlers come back afterwards."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_on_signals(stop: threading.Event | None = None, what: str = "stopping") -> Iterator[threading.Event]:
    """Within the block, SIGTERM/SIGINT set ``stop`` (a new event when None, yielded) instead of killing the process.

    Only the main thread may install handlers; elsewhere (a test running a loop in a thread) the block runs with the
    handlers untouched and the event still works when set by the caller.
    """
    event = stop if stop is not None else threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("received %s, %s", signal.Signals(signum).name, what)
        event.set()

    if threading.current_thread() is not threading.main_thread():
        yield event
        return
    old = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield event
    finally:
        for s, h in old.items():
            signal.signal(s, h)
