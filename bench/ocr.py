"""Digit readers side by side: accuracy per held-out meter and crops/s per thread, CNN vs Tesseract.

    .venv/bin/python bench/ocr.py [--data ../shared/data/digits] [--tesseract-sample 1000]

Accuracy on the held-out meters (``smartmeter.ocr.digit_data.HELD_OUT_METERS``) is measured with the holdout CNN
(``digits-holdout.onnx``), which never trained on them: the estimate for a user's new meter. The production CNN
(``digits.onnx``) trained on every meter, so on these crops it only gets a speed figure (its accuracy here is
printed for reference, marked "seen in training"). Accuracy is the share of crops whose circular error
|predicted - label| (mod 10) is at most 0.5 and at most 0.2; an unreadable answer (None) counts as wrong. The
CNN reads with its reject decision off (the network's own answer for every crop); ``bench/digit_reject.py``
measures the reject (share answered, share right of answered).
Tesseract is slow, so it reads a seeded subsample spread over the same meters. Speed is crops per second on one
thread over a fixed batch, preprocessing included, for both CNN models and Tesseract.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from smartmeter.errors import SmartMeterError  # noqa: E402
from smartmeter.ocr.digit_data import HELD_OUT_METERS, DigitSet, circular_hits, load_digits  # noqa: E402
from smartmeter.ocr.digit_preprocess import circular_error  # noqa: E402
from smartmeter.ocr.readers import DigitReader, get_reader  # noqa: E402
from smartmeter.ocr.readers.cnn import DEFAULT_MODEL, HOLDOUT_MODEL, CnnReader  # noqa: E402
from smartmeter.progress import Progress  # noqa: E402

log = logging.getLogger(__name__)


def accuracy(reader: DigitReader, data: DigitSet, chunk: int) -> dict[str, tuple[int, float, float]]:
    values: list[float] = []
    with Progress(f"{reader.name} reading", len(data)) as p:
        for i in range(0, len(data), chunk):
            for r in reader.read_batch(data.crops[i:i + chunk]):
                values.append(float("nan") if r.value is None else r.value)
            p.advance(min(chunk, len(data) - i))
    err = circular_error(np.array(values), data.labels)
    err = np.where(np.isnan(err), 99.0, err)
    out: dict[str, tuple[int, float, float]] = {}
    for m in [*HELD_OUT_METERS, "ALL"]:
        sel = np.ones(len(err), bool) if m == "ALL" else data.meters == m
        out[m] = (int(sel.sum()), *circular_hits(err[sel]))
    return out


def speed(reader: DigitReader, crops: list[np.ndarray], batch: int, min_seconds: float) -> float:
    """Crops per second (best of repeated passes over ``crops`` in batches of ``batch``)."""
    reader.read_batch(crops[:batch])
    best, t_end = 0.0, time.monotonic() + min_seconds
    while True:
        t0 = time.perf_counter()
        for i in range(0, len(crops), batch):
            reader.read_batch(crops[i:i + batch])
        best = max(best, len(crops) / (time.perf_counter() - t0))
        if time.monotonic() >= t_end:
            return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/digits"))
    ap.add_argument("--holdout-model", type=Path, default=HOLDOUT_MODEL,
                    help="CNN that never saw the held-out meters (accuracy and speed)")
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                    help="production CNN, trained on all meters (speed; its accuracy here is not a fair test)")
    ap.add_argument("--tesseract-sample", type=int, default=500,
                    help="crops Tesseract reads (0 = skip it); it manages only a few crops/s")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=3.0, help="minimum time per speed measurement")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    data = load_digits(args.data, meters=set(HELD_OUT_METERS))
    results: dict[str, dict[str, tuple[int, float, float]]] = {}
    speeds: dict[str, float] = {}
    notes: list[str] = []

    holdout = CnnReader(args.holdout_model, threads=1, reject=False)
    hkey = f"{holdout.version} (holdout)"
    results[hkey] = accuracy(holdout, data, args.batch)
    speeds[hkey] = speed(holdout, data.crops[:4096], args.batch, args.seconds)
    production = CnnReader(args.model, threads=1, reject=False)
    if production.version != holdout.version:
        key = f"{production.version} (seen in training)"
        results[key] = accuracy(production, data, args.batch)
        speeds[key] = speed(production, data.crops[:4096], args.batch, args.seconds)

    if args.tesseract_sample > 0:
        try:
            tess = get_reader("tesseract")
        except (ImportError, SmartMeterError) as exc:
            notes.append(f"tesseract skipped: {exc}")
        else:
            rng = np.random.default_rng(7)
            n = min(args.tesseract_sample, len(data))
            sample = data.select(np.isin(np.arange(len(data)), rng.choice(len(data), n, replace=False)))
            key = f"{tess.version} ({n} crops)"
            results[key] = accuracy(tess, sample, 64)
            speeds[key] = speed(tess, sample.crops[:100], 64, 0.0)

    names = list(results)
    print(f"\nheld-out meters, share with |error| <= 0.5 / <= 0.2 (n)   data: {args.data}")
    print(f"{'meter':<22}" + "".join(f"{k[:44]:>46}" for k in names))
    for m in [*HELD_OUT_METERS, "ALL"]:
        cells = [f"{results[k][m][1]:.4f} / {results[k][m][2]:.4f} ({results[k][m][0]:>4})" for k in names]
        print(f"{m:<22}" + "".join(f"{c:>46}" for c in cells))
    print(f"{'crops/s, 1 thread':<22}" + "".join(f"{speeds[k]:>46,.0f}" for k in names))
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
