"""The digit-reader interface: a batch of digit crops in, a drum position and confidence per crop out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from smartmeter.types import DigitValue


class DigitReader(ABC):
    """Reads single-digit crops.

    Input crops are numpy arrays as decoded by OpenCV: ``HxWx3`` BGR uint8 or ``HxW`` grey uint8, any size.
    Output per crop: ``DigitValue(value, confidence)`` where ``value`` is the drum position 0.0-9.99
    (3.5 = halfway from 3 to 4; 9.8 = the 9 almost gone, the 0 coming in) or ``None`` when unreadable.
    """

    name: str = "reader"
    version: str = "0"

    @abstractmethod
    def read_batch(self, crops: Sequence[np.ndarray]) -> list[DigitValue]:
        """Read many crops at once (the fast path)."""

    def read(self, crop: np.ndarray) -> DigitValue:
        return self.read_batch([crop])[0]
