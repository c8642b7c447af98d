"""The digit-reader interface: a batch of digit crops in, a drum position and confidence per crop out.

:class:`CheckedReader` wraps any reader and refuses what no reader may return (a wrong count, NaN, a position
outside 0-10, a confidence outside 0-1): that is :class:`ReaderFault`, a per-photo failure, never a reading.
:class:`ReaderUnavailable` is the other kind: the reader cannot run at all (binary gone, model unloadable).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from smartmeter.errors import ExternalToolError, SmartMeterError
from smartmeter.types import DigitValue


class ReaderUnavailable(ExternalToolError):
    """The digit reader cannot run at all (missing binary, unloadable model): a start-up error, exit 69."""


class ReaderFault(SmartMeterError):
    """The digit reader returned nonsense for some crops: the photos they belong to are unreadable."""


class DigitReader(ABC):
    """Reads single-digit crops.

    Input crops are numpy arrays as decoded by OpenCV: ``HxWx3`` BGR uint8 or ``HxW`` grey uint8, any size.
    Output per crop: ``DigitValue(value, confidence)`` where ``value`` is the drum position 0.0-9.99
    (3.5 = halfway from 3 to 4; 9.8 = the 9 almost gone, the 0 coming in) or ``None`` when unreadable.
    """

    name: str = "reader"
    version: str = "0"
    # True when the reader has learnt this very meter's typeface (the per-meter adapter): its resting digits then
    # read centred, so a last drum read at x.85-x.92 is a drum on its way, not a resting digit read low
    # (ocr.assemble, rightmost "auto"). A general model reads the digits of a meter it never saw up to 0.15 low.
    knows_meter: bool = False

    @abstractmethod
    def read_batch(self, crops: Sequence[np.ndarray]) -> list[DigitValue]:
        """Read many crops at once (the fast path)."""

    def read(self, crop: np.ndarray) -> DigitValue:
        return self.read_batch([crop])[0]

    def searching(self) -> DigitReader:
        """The reader to try many candidate boxes with (auto-locate's search): this one, unless a faster variant
        reads them as well (the CNN reads one view of each crop there, ``readers.cnn``)."""
        return self

    def probe(self) -> None:  # noqa: B027 - an optional hook: most readers have nothing to probe
        """Raise :class:`ReaderUnavailable` when the reader can no longer run at all (asked after a failure, to
        tell a bad crop from a broken installation). Readers without outside parts have nothing to check."""


def check_value(v: object) -> str | None:
    """Why ``v`` is not a digit value a reader may return; None when it is one."""
    if not isinstance(v, DigitValue):
        return f"{type(v).__name__} instead of a DigitValue"
    value, conf = v.value, v.confidence
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                              or not math.isfinite(value) or not 0.0 <= value < 10.0):
        return f"drum position {value!r} (must be 0 <= x < 10 or None)"
    if isinstance(conf, bool) or not isinstance(conf, int | float) or not 0.0 <= conf <= 1.0:  # NaN fails too
        return f"confidence {conf!r} (must be 0-1)"
    mass = v.digit_mass
    if mass is not None:
        if value is not None:
            return "digit mass given for a crop that was read (only a refused crop has one)"
        if (not isinstance(mass, tuple) or len(mass) != 10
                or not all(isinstance(m, int | float) and not isinstance(m, bool) and 0.0 <= m <= 1.0 for m in mass)
                or sum(mass) > 1.0 + 1e-3):
            return f"digit mass {mass!r} (must be 10 probabilities summing to at most 1)"
    return None


class CheckedReader(DigitReader):
    """``inner`` with its output checked: a wrong count or a bad value raises :class:`ReaderFault`."""

    def __init__(self, inner: DigitReader) -> None:
        self.inner = inner
        self.name, self.version = inner.name, inner.version

    def __getattr__(self, attr: str) -> Any:  # input size (height, width) and other reader details
        if attr == "inner":
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    def read_batch(self, crops: Sequence[np.ndarray]) -> list[DigitValue]:
        got = self.inner.read_batch(crops)
        try:
            count = len(got)
        except TypeError:
            raise ReaderFault(f"reader {self.name} returned {type(got).__name__} instead of a list") from None
        if count != len(crops):
            raise ReaderFault(f"reader {self.name} returned {count} values for {len(crops)} crops")
        values = list(got)
        for i, v in enumerate(values):
            why = check_value(v)
            if why is not None:
                raise ReaderFault(f"reader {self.name} returned a bad value for crop {i + 1} of {count}: {why}")
        return values

    def searching(self) -> DigitReader:
        fast = self.inner.searching()
        return self if fast is self.inner else CheckedReader(fast)

    def probe(self) -> None:
        self.inner.probe()
