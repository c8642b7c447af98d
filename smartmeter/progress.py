"""Progress for long jobs: a bar on a terminal, periodic lines in logs and CI."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


class Progress:
    """Counts work and prints ``label: done/total (rate/s)`` to stderr at most every ``every_s`` seconds."""

    def __init__(self, label: str, total: int | None = None, every_s: float = 1.0, enabled: bool = True) -> None:
        self.label, self.total, self.every_s, self.enabled = label, total, every_s, enabled
        self.done = 0
        self.start = self._last = time.monotonic()
        self.tty = sys.stderr.isatty()

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self._last >= self.every_s:
            self._last = now
            self._print(final=False)

    def _print(self, final: bool) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        total = f"/{self.total}" if self.total is not None else ""
        pct = f" {100 * self.done / self.total:5.1f}%" if self.total else ""
        line = f"{self.label}: {self.done}{total}{pct} ({self.done / elapsed:,.0f}/s, {elapsed:.1f}s)"
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


def track(items: Iterable[T], label: str, total: int | None = None, enabled: bool = True) -> Iterator[T]:
    """Iterate with progress."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(label, total, enabled=enabled) as p:
        for item in items:
            yield item
            p.advance()
