"""Milliseconds per whole photo, CNN and tesseract side by side, on the test photos.

    .venv/bin/python bench/pipeline.py [--repeat 20] [--engines cnn,tesseract]

For each readable test photo (tests/resources/photos/photos.csv) it times ``MeterReader.read`` on the decoded
photo (transform + alignment + crops + digit reads + assembly) and, separately, the stages, and checks the reading.
Decoding the JPEG is reported on its own. Two cases: "cold", the full alignment search (the first photo of a
camera, or one that moved: the tracked position is forgotten before every read), and "tracked", the next photo of
a camera that did not move (the usual case: alignment looks where the last photo was found, two windows).
The target: a photo with 8 digits in <= 5 ms with the CNN. Last, the precision of the cold alignment on seeded
random camera moves (``--moves``).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from smartmeter.errors import AlignmentError  # noqa: E402
from smartmeter.ocr.align import Aligner  # noqa: E402
from smartmeter.ocr.image_io import load_image  # noqa: E402
from smartmeter.ocr.pipeline import MeterReader, make_reader  # noqa: E402
from smartmeter.ocr.profile import load_profile  # noqa: E402
from smartmeter.ocr.readers.cnn import HOLDOUT_MODEL  # noqa: E402
from smartmeter.ocr.transforms import apply_transform  # noqa: E402
from smartmeter.ocr.warp import crop_boxes  # noqa: E402

PHOTOS = ROOT / "tests" / "resources" / "photos"


CPU: list[float] = []  # CPU ms of every timed read: on a busy machine this is closer to the idle wall time


def timed(fn, repeat: int, cpu: bool = False) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    """Median wall milliseconds of ``repeat`` calls (after one warm-up call) and the last result."""
    result = fn()
    times = []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        times.append((time.perf_counter() - t0) * 1000)
        if cpu:
            CPU.append((time.process_time() - c0) * 1000)
    return statistics.median(times), result


def cold(meter: MeterReader) -> Aligner:
    """The meter's aligner with the tracked position forgotten: the next align runs the full search."""
    assert meter.aligner is not None
    meter.aligner.forget()
    return meter.aligner


def cold_read(meter: MeterReader, image: object) -> object:
    cold(meter)
    return meter.read(image)  # type: ignore[arg-type]


def random_moves(n: int, repeat_seed: int = 1) -> None:
    """Cold alignment of ``n`` seeded camera moves (shift 25 px, turn 3 degrees, zoom 3 %, light, noise, JPEG):
    the worst box-corner error against the true move, per method, and the time."""
    profile = load_profile(PHOTOS / "meter.yaml")
    reference = load_image(PHOTOS / "reference.jpg")
    meter = MeterReader(profile, make_reader("cnn", HOLDOUT_MODEL))
    assert meter.aligner is not None
    corners = np.array([[x + dx, y + dy] for x, y, w, h in profile.digits for dx, dy in [(0, 0), (w, h)]],
                       np.float64).reshape(-1, 1, 2)
    rng = np.random.default_rng(repeat_seed)
    errors: dict[str, list[float]] = {}
    times = []
    for _ in range(n):
        dx, dy = rng.uniform(-25, 25, 2)
        m = cv2.getRotationMatrix2D((320, 240), rng.uniform(-3, 3), rng.uniform(0.97, 1.03))
        m[:, 2] += (dx, dy)
        photo = cv2.warpAffine(reference, m, (640, 480), borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        photo = np.clip(photo * rng.uniform(0.7, 1.2) + rng.normal(0, 4, photo.shape), 0, 255).astype(np.uint8)
        grey = cv2.imdecode(cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 80])[1], cv2.IMREAD_GRAYSCALE)
        t0 = time.perf_counter()
        try:
            result = cold(meter).align(grey)
        except AlignmentError:
            errors.setdefault("refused", []).append(0.0)
            continue
        times.append((time.perf_counter() - t0) * 1000)
        truth = cv2.transform(corners, m).reshape(-1, 2)
        found = cv2.perspectiveTransform(corners, np.linalg.inv(result.homography)).reshape(-1, 2)
        errors.setdefault(result.method, []).append(float(np.linalg.norm(truth - found, axis=1).max()))
    print(f"cold alignment of {n} seeded camera moves: median {statistics.median(times):.2f} ms; "
          "worst box corner error per photo, px:")
    for method, errs in sorted(errors.items()):
        if method == "refused":
            print(f"  refused: {len(errs)}")
            continue
        print(f"  {method:<8} {len(errs):4d} photos  median {np.median(errs):.2f}  p90 {np.percentile(errs, 90):.2f}"
              f"  max {max(errs):.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20, help="timed runs per photo and engine (median reported)")
    ap.add_argument("--engines", default="cnn,tesseract")
    ap.add_argument("--threads", type=int, default=1, help="OpenCV threads (1 = what a Raspberry Pi core does)")
    ap.add_argument("--moves", type=int, default=150, help="seeded camera moves for the alignment precision check")
    args = ap.parse_args()
    cv2.setNumThreads(args.threads)
    engines = args.engines.split(",")
    readers = {e: make_reader(e, HOLDOUT_MODEL if e == "cnn" else None) for e in engines}
    with open(PHOTOS / "photos.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["expected"]]

    header = f"{'photo':<16}{'decode':>8}{'align':>8}{'crops':>8}"
    header += "".join(f"{e + ' read':>16}{'ok':>4}" + (f"{'tracked':>16}{'ok':>4}" if e == "cnn" else "")
                      for e in engines)
    print(header)
    totals: dict[str, list[float]] = {e: [] for e in engines}
    if "cnn" in engines:
        totals["cnn tracked"] = []
    for row in rows:
        profile = load_profile(PHOTOS / row["profile"])
        decode_ms, image = timed(lambda p=PHOTOS / row["photo"]: load_image(p), args.repeat)
        line = f"{row['photo']:<16}{decode_ms:8.2f}"
        meter = MeterReader(profile, readers[engines[0]])
        assert meter.aligner is not None
        turned = apply_transform(image, profile.transform)  # type: ignore[arg-type]
        align_ms, alignment = timed(lambda m=meter, t=turned: cold(m).align(t), args.repeat)  # type: ignore[union-attr]
        crop_ms, _ = timed(lambda t=turned, a=alignment, b=meter.boxes: crop_boxes(t, b, a.homography), args.repeat)
        line += f"{align_ms:8.2f}{crop_ms:8.2f}"
        for engine in engines:
            reader = MeterReader(profile, readers[engine])
            repeat = args.repeat if engine == "cnn" else 1
            ms, result = timed(lambda r=reader, i=image: cold_read(r, i), repeat, cpu=engine == "cnn")
            totals[engine].append(ms)
            ok = "yes" if result.reading == row["expected"] else "no"  # type: ignore[attr-defined]
            line += f"{ms:13.2f} ms{ok:>4}"
            if engine == "cnn":
                ms, result = timed(lambda r=reader, i=image: r.read(i), repeat)
                totals["cnn tracked"].append(ms)
                ok = "yes" if result.reading == row["expected"] else "no"  # type: ignore[attr-defined]
                line += f"{ms:13.2f} ms{ok:>4}"
        print(line)
    print("median ms per photo (transform + align + crops + read + assemble, decoded photo): "
          + ", ".join(f"{e} {statistics.median(v):.2f}" for e, v in totals.items()))
    if CPU:
        print(f"cnn CPU time per photo: median {statistics.median(CPU):.2f} ms, best {min(CPU):.2f} ms "
              "(compare with the wall time when the machine is busy)")
    if args.moves:
        random_moves(args.moves)


if __name__ == "__main__":
    main()
