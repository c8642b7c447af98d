"""Benchmark: the per-meter adapter's reader, with the CNN handing back its plain view's output (now) and with the
adapter running the model on the plain view a second time (before), side by side in one run.

    .venv/bin/python bench/adapter_reader.py [--digits ../shared/data/digits] [--meter gasmeter-gmt] [--repeat 3]

The adapter is fitted on the first 400 crops of one held-out meter (hold-out model, five views) and reads the
rest; both readers must give identical readings. Prints ms per crop (the fastest of ``--repeat`` runs).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smartmeter.ocr.adapter import AdaptedReader, Adapter, Examples  # noqa: E402
from smartmeter.ocr.digit_data import load_digits  # noqa: E402
from smartmeter.ocr.digit_preprocess import preprocess_batch  # noqa: E402
from smartmeter.ocr.readers.base import DigitReader  # noqa: E402
from smartmeter.ocr.readers.cnn import HOLDOUT_MODEL, CnnReader  # noqa: E402
from smartmeter.types import DigitValue  # noqa: E402


class Before(DigitReader):
    """The CNN reader without ``read_plain``: the adapter preprocesses and runs the plain view again."""

    def __init__(self, inner: CnnReader) -> None:
        self.inner, self.name, self.version = inner, inner.name, inner.version
        self.height, self.width = inner.height, inner.width

    def read_batch(self, crops: Sequence[np.ndarray]) -> list[DigitValue]:
        return self.inner.read_batch(crops)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self.inner.logits(batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--digits", type=Path, default=ROOT.parent / "shared" / "data" / "digits")
    ap.add_argument("--meter", default="gasmeter-gmt")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    data = load_digits(args.digits, {args.meter}, progress=False)
    cnn = CnnReader(HOLDOUT_MODEL)
    fit, test = data.crops[:400], data.crops[400:]
    ex = Examples()
    ex.add(preprocess_batch(fit), (np.round(data.labels[:400]).astype(int) % 10).tolist(), 200)
    adapter = Adapter(ex, cnn.logits)
    readers = {"before (plain view read twice)": AdaptedReader(Before(cnn), adapter, "a1"),
               "now (CnnReader.read_plain)": AdaptedReader(cnn, adapter, "a1")}
    got = {}
    print(f"{args.meter}: adapter fitted on {len(fit)} crops, reading {len(test)} crops, five views")
    for name, reader in readers.items():
        best = np.inf
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            got[name] = reader.read_batch(test)
            best = min(best, time.perf_counter() - t0)
        print(f"  {name:34} {1000 * best / len(test):.3f} ms per crop")
    same = len(set(map(tuple, got.values()))) == 1
    print(f"  identical readings: {same}")


if __name__ == "__main__":
    main()
