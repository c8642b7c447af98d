"""How well the OCR pipeline reads simulated meter photos, and why it fails when it does.

    .venv/bin/python bench/ocr_sim.py [--photos 600] [--seed 3] [--style powermeter-emeter1] [--show 10]

Renders photos with ``simulator.meter_render.MeterRenderer`` (real digit crops of meters the CNN never trained on,
camera shift, light, noise, blur, glare) at random register values and times of day, reads them with
``MeterReader`` + the CNN (in batches, as the worker does) and compares with the simulator's truth:

* outcome shares: exact, one last-digit step off, wrong (further off), unreadable;
* causes: alignment failed / off by more than 1.5 px (against the known camera shift), a digit below the
  profile's confidence, a digit misread (CNN position more than 0.5 from the drum's true position), drums that
  do not fit each other, and for wrong readings with every digit within 0.5 of the truth: the assembler;
* timing: milliseconds per photo for decode+align+crop, and the digit reads.
"""

from __future__ import annotations

import argparse
import collections
import logging
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smartmeter.ocr.pipeline import MeterReader, make_reader  # noqa: E402
from smartmeter.ocr.profile import load_profile  # noqa: E402
from smartmeter.ocr.readers.cnn import HOLDOUT_MODEL  # noqa: E402
from smartmeter.simulator.meter_render import MeterRenderer, Truth  # noqa: E402
from smartmeter.types import OcrResult  # noqa: E402

MISREAD = 0.5  # a CNN position further than this from the drum's true position is a misread digit
ALIGN_TOLERANCE_PX = 1.5


def circular(a: float, b: float) -> float:
    d = (a - b) % 10.0
    return min(d, 10.0 - d)


def classify(result: OcrResult, truth: Truth, decimals: int) -> str:
    if result.reading is None:
        return "unreadable"
    if result.reading == truth.reading:
        return "exact"
    step = 10 ** -decimals
    off = abs((result.value or 0.0) - truth.value)
    return "off by one" if abs(off - step) < step / 2 else "wrong"


def causes(result: OcrResult, truth: Truth, min_conf: float) -> list[str]:
    found = []
    err = result.error or ""
    if "align" in err or "moved" in err:
        found.append("alignment failed")
    if "confidence below" in err:
        found.append("digit low confidence")
    if "does not fit" in err or "barely fit" in err:
        found.append("drums do not fit")
    if result.digits:
        bad = [i for i, (d, p) in enumerate(zip(result.digits, truth.positions, strict=True))
               if d.value is not None and circular(d.value, p) > MISREAD]
        if bad:
            found.append("digit misread (last)" if bad == [len(truth.positions) - 1] else "digit misread")
    return found or (["assembler"] if result.reading is not None else ["other: " + err[:60]])


def alignment_error(meter: MeterReader, jpeg: bytes, truth: Truth) -> float | None:
    """Largest error (px) of the box centres found by the aligner vs. the true camera shift; None = failed."""
    from smartmeter.ocr.image_io import decode_image
    from smartmeter.ocr.transforms import apply_transform

    if meter.aligner is None:
        return 0.0
    try:
        result = meter.aligner.align(apply_transform(decode_image(jpeg), meter.profile.transform))
    except Exception:  # noqa: BLE001 - diagnostic: any failure counts as failed
        return None
    inv = np.linalg.inv(result.homography)
    errs = []
    for x, y, w, h in meter.boxes:
        c = np.array([x + w / 2, y + h / 2, 1.0])
        p = inv @ c
        p = p[:2] / p[2]
        errs.append(float(np.hypot(p[0] - (c[0] - truth.shift[0]), p[1] - (c[1] - truth.shift[1]))))
    return max(errs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=600)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--style", default=None)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--show", type=int, default=10, help="print this many non-exact cases")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    renderer = MeterRenderer(args.seed, style=args.style)
    rng = np.random.default_rng(args.seed + 1000)
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    photos: list[tuple[bytes, Truth]] = []
    for _ in range(args.photos):
        register = float(rng.uniform(0, 10 ** (renderer.drums - renderer.decimals)))
        photos.append(renderer.render(register, t0 + timedelta(minutes=float(rng.uniform(0, 1440)))))
    with tempfile.TemporaryDirectory() as tmp:
        profile = load_profile(renderer.write_profile(Path(tmp)))
        meter = MeterReader(profile, make_reader("cnn", HOLDOUT_MODEL))
        meter.read_many([photos[0][0]])  # warm-up
        t = time.perf_counter()
        results: list[OcrResult] = []
        for i in range(0, len(photos), args.batch):
            results.extend(meter.read_many([p for p, _ in photos[i:i + args.batch]]))
        elapsed = time.perf_counter() - t
        align_errs = [alignment_error(meter, jpeg, truth) for jpeg, truth in photos]

    outcomes: collections.Counter[str] = collections.Counter()
    by_cause: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    shown = 0
    for (_, truth), result, aerr in zip(photos, results, align_errs, strict=True):
        outcome = classify(result, truth, profile.decimals)
        outcomes[outcome] += 1
        if outcome == "exact":
            continue
        reasons = causes(result, truth, profile.min_confidence)
        if aerr is not None and aerr > ALIGN_TOLERANCE_PX and "alignment failed" not in reasons:
            reasons.append("alignment off")
        for r in reasons:
            by_cause[outcome][r] += 1
        if shown < args.show:
            shown += 1
            digits = " ".join("?" if d.value is None else f"{d.value:.2f}/{d.confidence:.2f}" for d in result.digits)
            print(f"{outcome:<11} truth {truth.reading} read {result.reading} shift {truth.shift} "
                  f"align err {aerr if aerr is None else round(aerr, 1)} blur {int(truth.blurred)} "
                  f"glare {int(truth.glare)}\n    truth {' '.join(f'{p:.1f}' for p in truth.positions)}"
                  f"\n    read  {digits}\n    {result.error or ''}")
    n = len(photos)
    print(f"\n{n} photos ({renderer.style}, seed {args.seed}): "
          + ", ".join(f"{k} {100 * outcomes[k] / n:.1f} %" for k in ("exact", "off by one", "wrong", "unreadable")))
    for outcome in ("off by one", "wrong", "unreadable"):
        if by_cause[outcome]:
            print(f"  {outcome}: " + ", ".join(f"{k} {v}" for k, v in by_cause[outcome].most_common()))
    digit_errs = [(circular(d.value, p), d.confidence) for (_, truth), r in zip(photos, results, strict=True)
                  for d, p in zip(r.digits, truth.positions, strict=False) if d.value is not None]
    misread = [c for e, c in digit_errs if e > MISREAD]
    trusted = sum(c >= profile.min_confidence for c in misread)
    print(f"digits read: {len(digit_errs)}, misread (> {MISREAD} from the truth) {len(misread)} "
          f"({100 * len(misread) / max(1, len(digit_errs)):.2f} %), of which with confidence >= "
          f"{profile.min_confidence:g}: {trusted}")
    ok = [e for e in align_errs if e is not None]
    print(f"alignment: failed {len(align_errs) - len(ok)}, error median {statistics.median(ok):.2f} px, "
          f"max {max(ok):.2f} px, > {ALIGN_TOLERANCE_PX} px: {sum(e > ALIGN_TOLERANCE_PX for e in ok)}")
    print(f"read_many: {1000 * elapsed / n:.2f} ms per photo (decode + align + crops + CNN + assemble, batches of "
          f"{args.batch}, {renderer.drums} digits)")


if __name__ == "__main__":
    main()
