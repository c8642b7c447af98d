"""The two candidate reading-confidence rules side by side on the same photos (``smartmeter.ocr.reading``).

    .venv/bin/python bench/reading_confidence.py [--sets DIR ...] [--sim 600] [--min-confidence 0.6]

The least sure digit is combined with the assembly's consistency either by the *minimum* (what auto-locate,
``ocr.autolocate``, did before) or by the *product* (what a profiled meter, ``ocr.pipeline``, did before, and
both do now). Each photo is read once per rule (the rule is swapped in the module that calls it); the script
prints, per read path and set: readings exact, wrong, none, how many of each would be published (confidence >=
``--min-confidence``, the default ``validation.min_confidence``), and the photos whose result differs.

Photos: ``tests/resources/photos`` (profiled, ``photos.csv``), ``tests/resources/autolocate/photos``
(auto-locate, ``truth.json``), generated auto-locate sets given with ``--sets`` (``tests/resources/autolocate/
generate.py``) and ``--sim N`` simulated photos of a profiled meter (``simulator.meter_render``, as
``bench/ocr_sim.py``). The hold-out digit model reads (its meters are the ones on the photos).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "resources" / "autolocate"))

import cv2  # noqa: E402
from evaluate import acceptable  # noqa: E402  (what counts as a right auto-located reading)

from smartmeter.ocr import autolocate, pipeline  # noqa: E402
from smartmeter.ocr.pipeline import MeterReader, make_reader  # noqa: E402
from smartmeter.ocr.profile import load_profile  # noqa: E402
from smartmeter.ocr.readers.cnn import HOLDOUT_MODEL  # noqa: E402
from smartmeter.ocr.reading import least_sure, reading_confidence  # noqa: E402
from smartmeter.types import DigitValue, OcrResult  # noqa: E402

PHOTOS = ROOT / "tests" / "resources" / "photos"
AUTO = ROOT / "tests" / "resources" / "autolocate" / "photos"
Rule = Callable[[Iterable[DigitValue], float], float]


def minimum(values: Iterable[DigitValue], consistency: float = 1.0) -> float:
    """Auto-locate before: the minimum of the least sure digit and the consistency."""
    return round(min(consistency, least_sure(values)), 4)


RULES: dict[str, Rule] = {"minimum": minimum, "product": reading_confidence}
Results = dict[str, tuple[OcrResult, set[str]]]


def profiled(rule: Rule) -> Results:
    pipeline.reading_confidence = rule  # type: ignore[assignment]
    reader = make_reader("cnn", HOLDOUT_MODEL)
    out = {}
    with (PHOTOS / "photos.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            meter = MeterReader(load_profile(PHOTOS / row["profile"]), reader)
            res = meter.read(str(PHOTOS / row["photo"]))
            out[row["photo"]] = (res, {row["expected"].replace(".", "")} if row["expected"] else set())
    return out


def auto(folder: Path, rule: Rule) -> Results:
    autolocate.reading_confidence = rule  # type: ignore[assignment]
    reader = make_reader("cnn", HOLDOUT_MODEL)
    out = {}
    for t in json.loads((folder / "truth.json").read_text(encoding="utf-8")):
        res, _ = autolocate.read_auto(cv2.imread(str(folder / t["file"])), reader)
        out[t["file"]] = (res, acceptable(t["labels"]))
    return out


def simulated(n: int, seed: int) -> Callable[[Rule], Results]:
    """``n`` photos of a simulated profiled meter, read with a given rule."""
    import tempfile
    from datetime import UTC, datetime, timedelta

    import numpy as np

    from smartmeter.simulator.meter_render import MeterRenderer

    renderer = MeterRenderer(seed)
    rng = np.random.default_rng(seed + 1000)
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    photos = [renderer.render(float(rng.uniform(0, 10 ** (renderer.drums - renderer.decimals))),
                              t0 + timedelta(minutes=float(rng.uniform(0, 1440)))) for _ in range(n)]

    def read(rule: Rule) -> Results:
        pipeline.reading_confidence = rule  # type: ignore[assignment]
        with tempfile.TemporaryDirectory() as tmp:
            meter = MeterReader(load_profile(renderer.write_profile(Path(tmp))), make_reader("cnn", HOLDOUT_MODEL))
            results = [r for i in range(0, n, 64) for r in meter.read_many([p for p, _ in photos[i:i + 64]])]
        return {f"sim_{i:04d}": (r, {t.reading.replace(".", "")})
                for i, (r, (_, t)) in enumerate(zip(results, photos, strict=True))}

    return read


def summary(results: Results, threshold: float) -> dict[str, int]:
    s = {"exact": 0, "wrong": 0, "none": 0, "published exact": 0, "published wrong": 0}
    for res, truth in results.values():
        kind = "none" if res.reading is None else "exact" if res.reading.replace(".", "") in truth else "wrong"
        s[kind] += 1
        if kind != "none" and res.confidence >= threshold:
            s[f"published {kind}"] += 1
    return s


def compare(name: str, read: Callable[[Rule], Results], threshold: float) -> None:
    runs = {rule: read(fn) for rule, fn in RULES.items()}
    before, after = runs["minimum"], runs["product"]
    sums = {rule: summary(r, threshold) for rule, r in runs.items()}
    print(f"== {name}: {len(before)} photos")
    print(f"  {'':18s}" + "".join(f"{rule:>9s}" for rule in runs))
    for k in sums["minimum"]:
        print(f"  {k:18s}" + "".join(f"{sums[rule][k]:9d}" for rule in runs))
    changed = [(p, before[p][0], after[p][0]) for p in before
               if (before[p][0].reading, before[p][0].confidence) != (after[p][0].reading, after[p][0].confidence)]
    print(f"  photos whose reading or confidence differs: {len(changed)}")
    for p, x, y in changed[:12]:
        truth = "exact" if x.reading and x.reading.replace(".", "") in before[p][1] else "not exact"
        print(f"    {p} ({truth}): minimum {x.reading} {x.confidence:.4f}, product {y.reading} {y.confidence:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", type=Path, nargs="*", default=[], help="more auto-locate sets (with truth.json)")
    ap.add_argument("--min-confidence", type=float, default=0.6, help="publishing threshold (validation)")
    ap.add_argument("--sim", type=int, default=0, help="also this many simulated photos of a profiled meter")
    ap.add_argument("--seed", type=int, default=3, help="simulator seed")
    args = ap.parse_args()
    print("before: profiled meters used the product, auto-locate the minimum; now both use the product")
    compare("profiled meters (ocr.pipeline), tests/resources/photos", profiled, args.min_confidence)
    if args.sim:
        compare(f"profiled meters (ocr.pipeline), {args.sim} simulated photos, seed {args.seed}",
                simulated(args.sim, args.seed), args.min_confidence)
    for folder in [AUTO, *args.sets]:
        compare(f"auto-locate (ocr.autolocate), {folder}", lambda rule, f=folder: auto(f, rule),
                args.min_confidence)


if __name__ == "__main__":
    main()
