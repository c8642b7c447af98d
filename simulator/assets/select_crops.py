"""Re-create ``simulator/assets/digits`` from the digit data set (run once; the copies are committed).

    python simulator/assets/select_crops.py ../shared/data/digits

Per source meter and per drum position (label 0.0-9.9) it copies the first N crops in file-name order,
unchanged (same bytes), to ``digits/<meter>/<label>_<id>.jpg`` and writes ``digits/index.csv``.
"""

from __future__ import annotations

import csv
import shutil
import sys
from collections import defaultdict
from pathlib import Path

# Both meters are held out of the shipped digit model (ocr.digit_data.HELD_OUT_METERS), so the demo's OCR
# accuracy on simulated photos is measured on digit images the model never saw.
SOURCES: dict[str, int] = {"powermeter-emeter1": 6, "watermeter-techem": 4}


def main(data: Path, out: Path) -> None:
    by_key: dict[tuple[str, str], list[str]] = defaultdict(list)
    with (data / "labels.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["meter"] in SOURCES and row["label"] not in ("NaN", "nan", ""):
                by_key[(row["meter"], f"{float(row['label']):.1f}")].append(row["path"])
    if out.exists():
        shutil.rmtree(out)
    rows = []
    for (meter, label), paths in sorted(by_key.items()):
        for rel in sorted(paths)[: SOURCES[meter]]:
            dst = out / meter / Path(rel).name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(data / rel, dst)
            rows.append((f"{meter}/{dst.name}", label, meter, rel))
    with (out / "index.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "meter", "source"])
        w.writerows(rows)
    print(f"{len(rows)} crops -> {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).parent / "digits")
