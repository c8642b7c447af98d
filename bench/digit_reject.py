"""The CNN reader's reject decision on held-out meters: share answered, share right of answered, non-digits refused.

    .venv/bin/python bench/digit_reject.py [--digits ../shared/data/digits] [--photos ../shared/data/photos]
        [--model M.onnx ...]

Reads with the hold-out model (``smartmeter.ocr.readers.cnn.HOLDOUT_MODEL``, or each ``--model``: hold-out models
to compare), which never saw the held-out meters (``smartmeter.ocr.digit_data.HELD_OUT_METERS``). Digit crops:
every labelled crop of those meters; *right* = within half a step of the label on the drum circle. Non-digit crops
("not a digit / cannot tell"), cut from the same meters' crops (``ocr.digit_negatives``, the kinds a reject class is
trained on, here from meters it never saw) and from the real photos outside their counter windows (print, which
training never sees): the crop's two halves from two different drums side by side (a box between two drums), a
frame edge over half the crop, a blank drum, glare over the digit, print from the meter face; plus the data set's
NaN-labelled crops. Rows side by side per model: one view of each crop and the views averaged
(``readers/cnn.VIEWS``), each with every crop answered, a confidence floor alone, and the reader's reject with the
same floors (for a model with a reject class, also its entropy rule alone).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FLOORS = (0.0, 0.5, 0.9)


def non_digits(crops: list[np.ndarray], photos: list[tuple[np.ndarray, tuple[int, int, int, int]]], n: int,
               seed: int = 0) -> dict[str, list[np.ndarray]]:
    """``n`` crops of each kind that is not one settled digit (see the module docstring): the kinds of
    ``ocr.digit_negatives`` cut from ``crops``, and print cut from the real ``photos`` outside their windows."""
    from smartmeter.ocr import digit_negatives as neg

    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("between", "edge", "blank", "glare", "print")}
    for _ in range(n):
        a, b = (crops[int(i)] for i in rng.integers(0, len(crops), 2))
        out["between"].append(neg.between(a, b))
        out["edge"].append(neg.edge(a, rng))
        out["blank"].append(neg.blank(a, rng))
        out["glare"].append(neg.glare(a, rng))
        img, (wx, wy, ww, wh) = photos[int(rng.integers(0, len(photos)))]
        ph, pw = img.shape[:2]
        for _try in range(50):
            ch = int(rng.uniform(0.03, 0.12) * ph)
            cw = int(ch * rng.uniform(0.5, 0.8))
            x, y = int(rng.integers(0, max(1, pw - cw))), int(rng.integers(0, max(1, ph - ch)))
            if x + cw < wx or x > wx + ww or y + ch < wy or y > wy + wh:
                cut = img[y:y + ch, x:x + cw]
                if float(cut.std()) > 20:  # print or an edge, not a flat patch (the reader calls those blank)
                    out["print"].append(cut)
                    break
    return out


def load_photos(root: Path) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    out = []
    with (root / "labels.csv").open(encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if r["scope"] == "whole":
                box = tuple(int(v) for v in r["window"].split(","))
                out.append((cv2.imread(str(root / r["file"])), (box[0], box[1], box[2], box[3])))
    return out


def nan_crops(root: Path, meters: set[str] | None = None) -> list[np.ndarray]:
    with (root / "labels.csv").open(encoding="utf-8") as f:
        return [cv2.imread(str(root / r["path"])) for r in csv.DictReader(f)
                if r["label"].lower() == "nan" and (meters is None or r["meter"] in meters)]


def main() -> None:
    from smartmeter.ocr.digit_data import HELD_OUT_METERS, load_digits
    from smartmeter.ocr.digit_preprocess import circular_error
    from smartmeter.ocr.readers.cnn import HOLDOUT_MODEL, VIEWS, CnnReader

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--digits", type=Path, default=ROOT.parent / "shared" / "data" / "digits")
    ap.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "data" / "photos")
    ap.add_argument("--n", type=int, default=400, help="non-digit crops of each kind")
    ap.add_argument("--model", type=Path, action="append", default=None,
                    help="a hold-out digit model to measure (repeat to compare; default the shipped hold-out model)")
    args = ap.parse_args()
    data = load_digits(args.digits, set(HELD_OUT_METERS), progress=False)
    negatives = non_digits(data.crops, load_photos(args.photos), args.n, seed=1)
    negatives["nan-labelled"] = nan_crops(args.digits)
    readers = []
    for path in args.model or [HOLDOUT_MODEL]:
        tag = CnnReader(path).model_version.removeprefix("digits-holdout-")
        readers += [(f"{tag} 1 view, no reject", CnnReader(path, reject=False, views=1)),
                    (f"{tag} 1 view, reject", CnnReader(path, views=1)),
                    (f"{tag} {len(VIEWS)} views, no reject", CnnReader(path, reject=False)),
                    (f"{tag} {len(VIEWS)} views, reject", CnnReader(path))]
        if readers[-1][1].reject_class:  # the entropy rule alone, the reject class ignored
            entropy_only = CnnReader(path)
            entropy_only.reject_class = False
            readers.append((f"{tag} {len(VIEWS)} views, entropy only", entropy_only))
    print(f"held-out meters {', '.join(HELD_OUT_METERS)}: {len(data)} digit crops; non-digit crops: "
          + ", ".join(f"{k} {len(v)}" for k, v in negatives.items()))
    print(f"{'reader':40s} {'floor':>5s} {'answered':>9s} {'right of answered':>18s} {'wrong answered':>15s}  "
          + " ".join(f"{k[:8]:>8s}" for k in negatives) + "   (non-digits refused)")
    for name, reader in readers:
        values = reader.read_batch(data.crops)
        neg = {k: reader.read_batch(v) for k, v in negatives.items()}
        for floor in FLOORS:
            ok = np.array([v.value is not None and v.confidence >= floor for v in values])
            pred = np.array([v.value if v.value is not None else np.nan for v in values])
            right = circular_error(np.nan_to_num(pred), data.labels) <= 0.5 + 1e-9
            answered = float(ok.mean())
            share = float(right[ok].mean()) if ok.any() else 0.0
            refused = [float(np.mean([v.value is None or v.confidence < floor for v in vs])) for vs in neg.values()]
            print(f"{name:40s} {floor:5.2f} {answered:9.3f} {share:18.4f} {int((ok & ~right).sum()):15d}  "
                  + " ".join(f"{r:8.3f}" for r in refused))


if __name__ == "__main__":
    main()
