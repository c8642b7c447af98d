"""smartmeter.lifecycle.stop_on_signals: a signal sets the stop event, and the old handlers come back."""

import os
import signal
import threading

from smartmeter.lifecycle import stop_on_signals


def test_sigterm_sets_the_event_and_the_old_handler_is_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals() as stop:
        assert not stop.is_set()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(2.0)
    assert signal.getsignal(signal.SIGTERM) is before


def test_outside_the_main_thread_handlers_are_left_alone() -> None:
    seen: list[bool] = []
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN when started in the background

    def run() -> None:
        with stop_on_signals(threading.Event()) as stop:
            seen.append(signal.getsignal(signal.SIGINT) is before and not stop.is_set())

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert seen == [True]
