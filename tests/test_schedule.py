from __future__ import annotations

import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from smartmeter.errors import ConfigError
from smartmeter.raspi import schedule
from smartmeter.raspi.schedule import Cron, Every, clock_synchronised, make_schedule
from smartmeter.raspi.sdnotify import Notifier


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M")


def test_every_is_clock_aligned() -> None:
    assert Every(300).next_after(ts("2025-03-01T12:03:10")) == ts("2025-03-01T12:05:00")
    assert Every(300).next_after(ts("2025-03-01T12:05:00")) == ts("2025-03-01T12:10:00")


@pytest.mark.parametrize(("expr", "after", "expected"), [
    ("*/5 * * * *", "2025-03-01T12:03", "2025-03-01T12:05"),
    ("*/5 * * * *", "2025-03-01T12:55", "2025-03-01T13:00"),
    ("0 6-22 * * *", "2025-03-01T22:30", "2025-03-02T06:00"),
    ("*/15 6-22 * * 1-5", "2025-03-01T07:00", "2025-03-03T06:00"),  # Saturday -> Monday
    ("30 2 1 * *", "2025-03-01T02:30", "2025-04-01T02:30"),
    ("0 0 29 2 *", "2025-03-01T00:00", "2028-02-29T00:00"),
    ("0 12 * * 0", "2025-03-01T13:00", "2025-03-02T12:00"),  # Sunday as 0
    ("0 12 * * 7", "2025-03-01T13:00", "2025-03-02T12:00"),  # ... and as 7
    ("0 12 13 * 5", "2025-06-01T00:00", "2025-06-06T12:00"),  # day-of-month OR weekday, as cron does
    ("5,35 * * * *", "2025-03-01T12:06", "2025-03-01T12:35"),
])
def test_cron_next_fire(expr: str, after: str, expected: str) -> None:
    assert iso(Cron(expr).next_after(ts(after))) == expected


@pytest.mark.parametrize("expr", ["* * * *", "61 * * * *", "*/0 * * * *", "a * * * *", "0 0 31 2 *"])
def test_bad_cron_is_a_config_error(expr: str) -> None:
    with pytest.raises(ConfigError, match="camera.schedule"):
        Cron(expr).next_after(ts("2025-03-01T00:00"))


def test_make_schedule_prefers_the_expression() -> None:
    assert isinstance(make_schedule("*/5 * * * *", 60), Cron)
    assert isinstance(make_schedule(None, 60), Every)


def test_clock_sync_from_the_kernel_flag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(schedule, "TIMESYNCD_FLAG", tmp_path / "synchronized")
    monkeypatch.setattr(schedule, "kernel_clock_state", lambda: (schedule.TIME_ERROR, schedule.STA_UNSYNC))
    assert not clock_synchronised()
    monkeypatch.setattr(schedule, "kernel_clock_state", lambda: (0, 0x2001))  # TIME_OK, STA_PLL|STA_NANO
    assert clock_synchronised()
    monkeypatch.setattr(schedule, "kernel_clock_state", lambda: None)
    assert not clock_synchronised()
    (tmp_path / "synchronized").touch()  # systemd-timesyncd's flag
    assert clock_synchronised()


def test_kernel_clock_state_is_read_for_real() -> None:
    state = schedule.kernel_clock_state()
    assert state is not None and 0 <= state[0] <= 5  # TIME_OK .. TIME_ERROR


def test_notify_never_blocks_on_a_stuck_reader(tmp_path: Path) -> None:
    reader = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    reader.bind(str(tmp_path / "notify"))  # bound, never read: its queue fills up
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "2000000"})
    assert n.watchdog_s == 2.0
    start = time.monotonic()
    sent = [n.watchdog() for _ in range(2000)]
    assert time.monotonic() - start < 5 and sent[0] and not all(sent)
    reader.close()


def test_notify_abstract_socket_and_outside_systemd() -> None:
    assert Notifier({"NOTIFY_SOCKET": "@/org/test"}).address == "\0/org/test"
    off = Notifier({})
    assert not off.enabled and not off.ready() and off.watchdog_s is None
    assert Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "5", "WATCHDOG_PID": "1"}).watchdog_s is None  # not us
