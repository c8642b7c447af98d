"""Measure ocr.autolocate on a generated set: ``python tests/resources/autolocate/evaluate.py DIR`` (DIR/truth.json).

Prints one line per photo and a summary: window found (right count, every true digit centre inside a box),
exact reading, wrong reading (a reading that is not the truth), no reading, ms per photo.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from ocr.autolocate import read_auto
from ocr.locate_geometry import deskew_matrix
from ocr.readers import get_reader


def acceptable(labels: list[float]) -> set[str]:
    """Digit strings that count as right: a digit in transition may read as either neighbour."""
    alts = [""]
    for lab in labels:
        low = math.floor(lab) % 10
        opts = {str(low)} if lab == int(lab) else {str(low), str((low + 1) % 10)}
        alts = [a + o for a in alts for o in opts]
    return set(alts)


def main(folder: Path) -> None:
    reader = get_reader("cnn")
    truth = json.loads((folder / "truth.json").read_text(encoding="utf-8"))
    stats = {"found": 0, "exact": 0, "wrong": 0, "none": 0, "decimals_ok": 0}
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
            verdict = f"NONE {res.error}"
        elif res.reading.replace(".", "") in acceptable(t["labels"]):
            stats["exact"] += 1
            verdict = "ok"
        else:
            stats["wrong"] += 1
            verdict = f"WRONG {res.reading} vs {sorted(acceptable(t['labels']))[0]}"
        print(t["file"], t["kind"], "found" if found else "MISS", verdict, f"{res.confidence:.2f}")
    n = len(truth)
    print({k: f"{v}/{n}" for k, v in stats.items()}, f"ms/photo {1000 * np.mean(times):.0f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
