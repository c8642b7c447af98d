"""A digit reader for tests: recognises the crops the test photos were made from by nearest neighbour.

It is a real reader of those photos — a misaligned or wrongly transformed crop matches nothing well and gets a
low confidence — without needing the CNN model or tesseract's speed.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from smartmeter.ocr.image_io import load_image, to_grey
from smartmeter.ocr.readers.base import DigitReader
from smartmeter.types import DigitValue

CROPS = Path(__file__).parent / "resources" / "photos" / "crops"
SIZE = (10, 15)


def _vector(crop: np.ndarray) -> np.ndarray:
    v = cv2.resize(to_grey(crop), SIZE, interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    v -= v.mean()
    return v / (np.linalg.norm(v) + 1e-6)


class LookupReader(DigitReader):
    name = "lookup"
    version = "test"

    def __init__(self, crops: Path = CROPS) -> None:
        with open(crops / "labels.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        self.labels = [float(r["label"]) for r in rows]
        self.vectors = np.stack([_vector(load_image(crops / r["path"])) for r in rows])
        self.batches: list[int] = []  # size of every read_batch call

    def read_batch(self, crops: Sequence[np.ndarray]) -> list[DigitValue]:
        self.batches.append(len(crops))
        out = []
        for crop in crops:
            sims = self.vectors @ _vector(crop)
            best = int(np.argmax(sims))
            out.append(DigitValue(self.labels[best], float(np.clip((sims[best] - 0.5) / 0.3, 0.0, 1.0))))
        return out


class FixedReader(DigitReader):
    """Returns the given values for every photo (cycling), to exercise the quality and confidence rules."""

    name = "fixed"

    def __init__(self, values: list[DigitValue]) -> None:
        self.values = values

    def read_batch(self, crops: Sequence[np.ndarray]) -> list[DigitValue]:
        return [self.values[i % len(self.values)] for i in range(len(crops))]
