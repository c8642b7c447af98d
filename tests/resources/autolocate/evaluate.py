"""Measure ocr.autolocate on a generated set: ``python tests/resources/autolocate/evaluate.py DIR [--model PATH]``.

DIR holds ``truth.json`` (from ``generate.py``). Prints one line per photo and a summary: window found (right
count, every true digit centre inside a box), exact reading, wrong reading (a reading that is not the truth), no
reading, ms per photo, and the refusal reasons counted.

The digit model defaults to the hold-out model (``ocr.readers.cnn.HOLDOUT_MODEL``): the generated drum faces use
crops of the meters that model never saw, while the default (production) model trained on them and would flatter
the numbers. ``--model default`` uses the production model, ``--model PATH`` any other.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from smartmeter.ocr.autolocate import read_auto
from smartmeter.ocr.locate_geometry import deskew_matrix
from smartmeter.ocr.readers import get_reader
from smartmeter.ocr.readers.cnn import DEFAULT_MODEL, HOLDOUT_MODEL


def acceptable(labels: list[float]) -> set[str]:
    """Digit strings that count as right: a digit in transition may read as either neighbour."""
    alts = [""]
    for lab in labels:
        low = math.floor(lab) % 10
        opts = {str(low)} if lab == int(lab) else {str(low), str((low + 1) % 10)}
        alts = [a + o for a in alts for o in opts]
    return set(alts)


def reason(error: str | None) -> str:
    """A refusal message without its numbers, for counting."""
    return re.sub(r"[-\d.,]+", "#", error or "?").split(":")[0][:70]


def main(folder: Path, model: Path, quiet: bool = False) -> dict[str, float]:
    reader = get_reader("cnn", model=model)
    truth = json.loads((folder / "truth.json").read_text(encoding="utf-8"))
    stats = {"found": 0, "exact": 0, "wrong": 0, "none": 0, "decimals_ok": 0}
    reasons: Counter[str] = Counter()
    times = []
    for t in truth:
        img = cv2.imread(str(folder / t["file"]))
        t0 = time.perf_counter()
        res, prof = read_auto(img, reader)
        times.append(time.perf_counter() - t0)
        found = False
        if prof is not None:
            m, _, _ = deskew_matrix(img.shape[1], img.shape[0], prof.transform.rotate)
            cs = [m @ np.array([*np.mean(np.array(q), axis=0), 1.0]) for q in t["digits"]]
            found = len(prof.digits) == len(cs) and all(
                any(x <= c[0] <= x + w and y <= c[1] <= y + h for x, y, w, h in prof.digits) for c in cs)
            stats["decimals_ok"] += found and prof.decimals == t["decimals"]
        stats["found"] += found
        if res.reading is None:
            stats["none"] += 1
            reasons[reason(res.error)] += 1
            verdict = f"NONE {res.error}"
        elif res.reading.replace(".", "") in acceptable(t["labels"]):
            stats["exact"] += 1
            verdict = "ok"
        else:
            stats["wrong"] += 1
            verdict = f"WRONG {res.reading} vs {sorted(acceptable(t['labels']))[0]}"
        if not quiet:
            print(t["file"], t["kind"], "found" if found else "MISS", verdict, f"{res.confidence:.2f}")
    n = len(truth)
    ms = 1000 * float(np.mean(times))
    print(f"model {model.name}:", {k: f"{v}/{n}" for k, v in stats.items()}, f"ms/photo {ms:.0f}")
    for text, count in reasons.most_common():
        print(f"  {count:4d}  {text}")
    return {**stats, "n": n, "ms": ms}


def _model(arg: str) -> Path:
    return {"holdout": HOLDOUT_MODEL, "default": DEFAULT_MODEL}.get(arg) or Path(arg)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, nargs="+", help="generated set(s), each with truth.json")
    ap.add_argument("--model", type=_model, default=HOLDOUT_MODEL,
                    help="digit model: holdout (default: never saw the sets' meters), default, or a path")
    ap.add_argument("--quiet", action="store_true", help="summary only")
    args = ap.parse_args()
    for f in args.folder:
        print(f"== {f}")
        main(f, args.model, args.quiet)
