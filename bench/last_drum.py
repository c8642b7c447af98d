"""A refused last drum told by its own digit mass, on crops of meters the model never saw.

    .venv/bin/python bench/last_drum.py [--digits ../shared/data/digits] [--model M.onnx]

A photo whose last drum the reader refuses (two half digits, the output spread) is published between two different
neighbours only when the drum's digit mass (``DigitValue.digit_mass``) falls clearly on one of the last digits they
allow (``server.unread_drums.by_last_drum``); before, every such photo was refused. This bench takes every crop of
the held-out meters (``smartmeter.ocr.digit_data.HELD_OUT_METERS``) that the hold-out model (or ``--model``) refuses
and, for each set of last digits neighbours may allow around the crop's own digit ``d = floor(label)`` (a drum at 4.7
is a 4 on its way to 5: the register's last digit is 4) — {d-1, d}, {d, d+1}, {d-1, d, d+1} — counts the sets
told right, told wrong and still refused, at the shipped levels (``EVIDENCE_SHARE``, ``EVIDENCE_MASS``) and at a
sweep of others, so that the levels are chosen on these numbers. Every crop of those meters (read or refused) is
also scored as if refused, a larger test of the rule's wrong answers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARES = (0.8, 0.9, 0.95, 0.98)
MASSES = (0.3, 0.5, 0.7)


def score(masses: list[tuple[float, ...]], digits: list[int], share: float, least: float) -> tuple[int, int, int]:
    """(told right, told wrong, refused) over every allowed set of every crop."""
    from smartmeter.server.unread_drums import told_digit

    right = wrong = refused = 0
    for mass, d in zip(masses, digits, strict=True):
        for allowed in ((d - 1, d), (d, d + 1), (d - 1, d, d + 1)):
            best, got, total = told_digit(mass, [k % 10 for k in allowed])
            if total < least or got < share:
                refused += 1
            elif best == d % 10:
                right += 1
            else:
                wrong += 1
    return right, wrong, refused


def main() -> None:
    from smartmeter.ocr.digit_data import HELD_OUT_METERS, load_digits
    from smartmeter.ocr.digit_preprocess import digit_mass, preprocess_batch, softmax, to_grey
    from smartmeter.ocr.readers.cnn import HOLDOUT_MODEL, CnnReader, cut_view
    from smartmeter.server.unread_drums import EVIDENCE_MASS, EVIDENCE_SHARE

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--digits", type=Path, default=ROOT.parent / "shared" / "data" / "digits")
    ap.add_argument("--model", type=Path, default=HOLDOUT_MODEL, help="a hold-out digit model")
    args = ap.parse_args()
    data = load_digits(args.digits, set(HELD_OUT_METERS), progress=False)
    reader = CnnReader(args.model)
    got = reader.read_batch(data.crops)
    refused = [(g.digit_mass, int(np.floor(label + 1e-9)), m) for g, label, m
               in zip(got, data.labels, data.meters, strict=True) if g.digit_mass is not None]
    print(f"held-out meters {', '.join(HELD_OUT_METERS)}: {len(data)} crops, {len(refused)} refused by "
          f"{reader.version} (not blank); 3 allowed sets each; before: all refused, 0 told")
    # every crop as if refused: the same views averaged, its mass
    greys = [to_grey(c) for c in data.crops]
    every: list[tuple[float, ...]] = []
    for s in range(0, len(greys), 1024):
        part = greys[s:s + 1024]
        views = preprocess_batch([cut_view(g, v) for v in reader.views for g in part], reader.height, reader.width)
        prob = softmax(reader.logits(views).astype(np.float64)).reshape(len(reader.views), len(part), -1).mean(0)
        every += [tuple(row) for row in digit_mass(prob)]
    all_digits = [int(np.floor(label + 1e-9)) for label in data.labels]
    print(f"{'share':>5s} {'mass':>5s}  {'refused crops: right':>20s} {'wrong':>6s} {'refused':>8s}   "
          f"{'every crop: right':>17s} {'wrong':>6s} {'refused':>8s}")
    for share in SHARES:
        for least in MASSES:
            a = score([r[0] for r in refused], [r[1] for r in refused], share, least)
            b = score(every, all_digits, share, least)
            mark = "  <- shipped" if (share, least) == (EVIDENCE_SHARE, EVIDENCE_MASS) else ""
            print(f"{share:5.2f} {least:5.2f}  {a[0]:20d} {a[1]:6d} {a[2]:8d}   {b[0]:17d} {b[1]:6d} {b[2]:8d}{mark}")
    print("refused crops per meter (shipped levels: right / wrong / refused):")
    for meter in sorted({r[2] for r in refused}):
        mine = [r for r in refused if r[2] == meter]
        a = score([r[0] for r in mine], [r[1] for r in mine], EVIDENCE_SHARE, EVIDENCE_MASS)
        print(f"  {meter:24s} {len(mine):4d} crops  {a[0]} / {a[1]} / {a[2]}")


if __name__ == "__main__":
    main()
