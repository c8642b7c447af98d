"""Pointer dials: our dial reader (``smartmeter.ocr.dial``) vs today's way (the drum-digit CNN on the dial crop),
side by side, on rendered dials nobody tuned on and on the real dial photos of ``../shared/data/photos``.

    .venv/bin/python bench/dials.py [--renders 1000] [--seed 200000] [--photos ../shared/data/photos]

Rendered dials (``smartmeter.simulator.dial_render``, seeds from ``--seed``; the reader was tuned on seeds
0-599, its tests use 10000-10199; 100000-100999 were looked at once, while it was changed): random needle shape
and colour, glare, printed scale, blur, turned face, off-centre box. The real dials: the four red pointers of
each of the three vzlogger water-meter photos (GPL, so read from ``shared/`` only, never copied): img2.png's are
asserted by vzlogger's tests (0.3767: the pointers show 3, 7, 6, 7); the needle positions of all twelve were
read by hand from zoomed views (about +-0.2).

Counted per dial: read right (within 0.5 of the truth, circular, at confidence >= 0.5, the profiles' default
min_confidence), confident wrong (more than 0.5 off at confidence >= 0.5: a wrong reading), refused (no value, or
a confidence below 0.5), and within 0.5 at any confidence.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from smartmeter.ocr.dial import DialSpec, read_dial  # noqa: E402
from smartmeter.ocr.image_io import to_grey  # noqa: E402
from smartmeter.ocr.pipeline import make_reader  # noqa: E402
from smartmeter.simulator.dial_render import render_dial  # noqa: E402

MIN_CONFIDENCE = 0.5
# (photo, pointer boxes x0.1 .. x0.0001 in the photo as stored, needle positions read by hand, asserted digits)
REAL = [
    ("volkszaehler-vzlogger/img2.png", [(662, 411, 77, 77), (632, 500, 77, 77), (545, 535, 77, 77),
                                        (458, 498, 77, 77)], [3.65, 7.8, 6.7, 7.6], [3, 7, 6, 7]),
    ("volkszaehler-vzlogger/img.png", [(655, 411, 77, 77), (625, 501, 77, 77), (538, 535, 77, 77),
                                       (450, 497, 77, 77)], [6.8, 1.0, 7.6, 7.55], None),
    ("volkszaehler-vzlogger/sensus_test1.png", [(445, 192, 127, 127), (394, 338, 130, 130), (243, 403, 130, 130),
                                                (92, 330, 132, 132)], [1.3, 5.7, 6.4, 3.46], None),
]


def off(a: float, b: float) -> float:
    return abs(((a - b + 5) % 10) - 5)


class Tally:
    def __init__(self) -> None:
        self.n = self.within = self.right = self.wrong = self.refused = 0
        self.ms = 0.0

    def add(self, value: float | None, confidence: float, truth: float) -> None:
        self.n += 1
        if value is not None and off(value, truth) <= 0.5:
            self.within += 1
        if value is None or confidence < MIN_CONFIDENCE:
            self.refused += 1
        elif off(value, truth) > 0.5:
            self.wrong += 1
        else:
            self.right += 1

    def row(self, name: str) -> str:
        return (f"{name:<28} {self.right:>5}/{self.n:<5} {self.wrong:>10} {self.refused:>8} {self.within:>10} "
                f"{self.ms / max(self.n, 1):>8.2f}")


def measure(crops: list[np.ndarray], specs: list[DialSpec], truths: list[float]) -> tuple[Tally, Tally]:
    ours, cnn = Tally(), Tally()
    t0 = time.perf_counter()
    for crop, spec, truth in zip(crops, specs, truths, strict=True):
        got = read_dial(crop, spec)
        ours.add(got.value, got.confidence, truth)
    ours.ms = (time.perf_counter() - t0) * 1000
    reader = make_reader("cnn")
    t0 = time.perf_counter()
    values = reader.read_batch([to_grey(c) for c in crops])
    cnn.ms = (time.perf_counter() - t0) * 1000
    for v, truth in zip(values, truths, strict=True):
        cnn.add(v.value, v.confidence, truth)
    return ours, cnn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--renders", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=200000)
    ap.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "data" / "photos")
    args = ap.parse_args()
    header = (f"{'reader':<28} {'right':>11} {'conf.wrong':>10} {'refused':>8} {'within 0.5':>10} "
              f"{'ms/dial':>8}")

    crops, specs, truths = [], [], []
    for seed in range(args.seed, args.seed + args.renders):
        crop, truth = render_dial(np.random.default_rng(seed))
        crops.append(crop)
        specs.append(DialSpec(truth.direction, truth.zero_degrees, truth.needle))
        truths.append(truth.value)
    ours, cnn = measure(crops, specs, truths)
    print(f"rendered dials, seeds {args.seed}-{args.seed + args.renders - 1}")
    print(header)
    print(ours.row("dial reader (ocr/dial.py)"))
    print(cnn.row("drum-digit CNN (before)"))
    for colour in ("red", "dark"):
        mine = [i for i, spec in enumerate(specs) if spec.needle == colour]
        part, _ = measure([crops[i] for i in mine], [specs[i] for i in mine], [truths[i] for i in mine])
        print(part.row(f"  ours, {colour} needles"))

    real_crops, real_truths, asserted = [], [], []
    for name, boxes, needles, digits in REAL:
        path = args.photos / name
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            print(f"\n{path}: not found, real photos skipped")
            return
        real_crops += [image[y:y + h, x:x + w] for x, y, w, h in boxes]
        real_truths += needles
        asserted += digits or [None] * len(boxes)
    ours, cnn = measure(real_crops, [DialSpec()] * len(real_crops), real_truths)
    print(f"\nreal dials ({len(real_crops)} on {len(REAL)} photos, truth: needle read by hand)")
    print(header)
    print(ours.row("dial reader (ocr/dial.py)"))
    print(cnn.row("drum-digit CNN (before)"))
    reader = make_reader("cnn")
    cnn_values = reader.read_batch([to_grey(c) for c in real_crops])
    print("\nper dial: truth  ours (confidence)  CNN (confidence)  [asserted digit]")
    for crop, truth, digit, cv in zip(real_crops, real_truths, asserted, cnn_values, strict=True):
        got = read_dial(crop, DialSpec())
        ours_text = "none" if got.value is None else f"{got.value:.2f} ({got.confidence:.2f})"
        cnn_text = "none" if cv.value is None else f"{cv.value:.2f} ({cv.confidence:.2f})"
        print(f"  {truth:5.2f}  {ours_text:>14}  {cnn_text:>14}  {'' if digit is None else digit}")


if __name__ == "__main__":
    main()
