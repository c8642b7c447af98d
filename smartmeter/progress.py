"""Progress for long jobs: a bar on a terminal, periodic lines in logs and CI."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


class Progress:
    """Counts work (and bytes, when given) and prints ``label: done/total, MB (rate/s, MB/s)`` to stderr at most
    every ``every_s`` seconds."""

    def __init__(self, label: str, total: int | None = None, every_s: float = 1.0, enabled: bool = True,
                 unit: str = "") -> None:
        self.label, self.total, self.every_s, self.enabled, self.unit = label, total, every_s, enabled, unit
        self.done = 0
        self.bytes = 0  # shown with its rate once advance() was given any
        self.start = self._last = time.monotonic()
        self.tty = sys.stderr.isatty()

    def advance(self, n: int = 1, nbytes: int = 0) -> None:
        self.done += n
        self.bytes += nbytes
        now = time.monotonic()
        if self.enabled and now - self._last >= self.every_s:
            self._last = now
            self._print(final=False)

    def _print(self, final: bool) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        total = f"/{self.total}" if self.total is not None else ""
        pct = f" {100 * self.done / self.total:5.1f}%" if self.total else ""
        unit = f" {self.unit}" if self.unit else ""
        size = f", {_size(self.bytes)}" if self.bytes else ""
        byte_rate = f", {_size(self.bytes / elapsed)}/s" if self.bytes else ""
        line = (f"{self.label}: {self.done}{total}{unit}{pct}{size} "
                f"({self.done / elapsed:,.0f}/s{byte_rate}, {elapsed:.1f}s)")
        end = "\n" if final or not self.tty else ""
        sys.stderr.write(("\r" if self.tty else "") + line + end)
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            self._print(final=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,.0f} B"


def track(items: Iterable[T], label: str, total: int | None = None, enabled: bool = True) -> Iterator[T]:
    """Iterate with progress."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(label, total, enabled=enabled) as p:
        for item in items:
            yield item
            p.advance()
