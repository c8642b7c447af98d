"""The CNN reader's reject decision on held-out meters: share answered, share right of answered, non-digits refused.

    .venv/bin/python bench/digit_reject.py [--digits ../shared/data/digits] [--photos ../shared/data/photos]

Reads with the hold-out model (``smartmeter.ocr.readers.cnn.HOLDOUT_MODEL``), which never saw the held-out meters
(``smartmeter.ocr.digit_data.HELD_OUT_METERS``). Digit crops: every labelled crop of those meters; *right* =
within half a step of the label on the drum circle. Non-digit crops ("not a digit / cannot tell"), cut from the
same meters' crops and from the real photos outside their counter windows (``non_digits``): the crop's two halves
from two different drums side by side (a box between two drums), a frame edge over half the crop, a blank drum,
glare over the digit, print from the meter face; plus the data set's NaN-labelled crops. Rows side by side: one view of
each crop (the reader before its views) and the views averaged (``readers/cnn.VIEWS``), each with every crop
answered, a confidence floor alone, and the reader's reject with the same floors.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FLOORS = (0.0, 0.5, 0.9)


def _resized(a: np.ndarray, like: np.ndarray) -> np.ndarray:
    return cv2.resize(a, (like.shape[1], like.shape[0]), interpolation=cv2.INTER_AREA)


def non_digits(crops: list[np.ndarray], photos: list[tuple[np.ndarray, tuple[int, int, int, int]]], n: int,
               seed: int = 0) -> dict[str, list[np.ndarray]]:
    """``n`` crops of each kind that is not one settled digit (see the module docstring)."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("between", "edge", "blank", "glare", "print")}
    for _ in range(n):
        a, b = (crops[int(i)] for i in rng.integers(0, len(crops), 2))
        b = _resized(b, a)
        h, w = a.shape[:2]
        gap = np.full((h, max(1, w // 5), 3), int(np.percentile(a, 10)), np.uint8)  # the dark gap between drums
        both = np.concatenate([a[:, w // 2:], gap, b[:, : w - w // 2]], axis=1)
        out["between"].append(_resized(both, a))
        band = int(w * rng.uniform(0.45, 0.6))
        edge = a.copy()
        side = slice(0, band) if rng.random() < 0.5 else slice(w - band, w)
        edge[:, side] = rng.integers(0, 60) if rng.random() < 0.6 else rng.integers(180, 255)
        out["edge"].append(edge)
        ring = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
        level = np.median(ring, axis=0)
        shade = np.linspace(rng.uniform(-25, 0), rng.uniform(0, 25), h)[:, None, None]
        blank = np.clip(level + shade + rng.normal(0, 4, a.shape), 0, 255).astype(np.uint8)
        out["blank"].append(blank)
        glare = a.astype(np.float32)
        yy, xx = np.mgrid[0:h, 0:w]
        r = rng.uniform(0.35, 0.6) * h
        spot = np.exp(-((xx - w / 2) ** 2 + (yy - h * rng.uniform(0.3, 0.7)) ** 2) / (2 * (r / 2) ** 2))
        out["glare"].append(np.clip(glare + 255 * 1.5 * spot[..., None], 0, 255).astype(np.uint8))
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
    args = ap.parse_args()
    data = load_digits(args.digits, set(HELD_OUT_METERS), progress=False)
    negatives = non_digits(data.crops, load_photos(args.photos), args.n, seed=1)
    negatives["nan-labelled"] = nan_crops(args.digits)
    readers = (("one view, no reject", CnnReader(HOLDOUT_MODEL, reject=False, views=1)),
               ("one view, reject", CnnReader(HOLDOUT_MODEL, views=1)),
               (f"{len(VIEWS)} views, no reject", CnnReader(HOLDOUT_MODEL, reject=False)),
               (f"{len(VIEWS)} views, reject (now)", CnnReader(HOLDOUT_MODEL)))
    print(f"held-out meters {', '.join(HELD_OUT_METERS)}: {len(data)} digit crops; non-digit crops: "
          + ", ".join(f"{k} {len(v)}" for k, v in negatives.items()))
    print(f"{'reader':24s} {'floor':>5s} {'answered':>9s} {'right of answered':>18s} {'wrong answered':>15s}  "
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
            print(f"{name:24s} {floor:5.2f} {answered:9.3f} {share:18.4f} {int((ok & ~right).sum()):15d}  "
                  + " ".join(f"{r:8.3f}" for r in refused))


if __name__ == "__main__":
    main()
