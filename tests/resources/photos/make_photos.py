"""Generate the meter-like test photos in this folder (run from the repo root; output is committed).

    .venv/bin/python tests/resources/photos/make_photos.py [--source ../shared/data/digits]

A synthetic meter face (printed plate, screws, barcode, a dark counter window with 8 drums, the last one the
tenths) gets real digit crops (``crops/``, copied from the project's digit data set) pasted into its drums; a
virtual camera then shifts/rotates/scales it, changes the light, adds noise and saves a JPEG. Variants: upright,
shifted, drums in transition, camera turned 90°, camera turned 30°, seen through a mirror, moved too far, a
wall with no meter, and a truncated JPEG. ``photos.csv`` lists each photo, its profile and the expected reading.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import cv2
import numpy as np

from smartmeter.ocr.profile import Transform
from smartmeter.ocr.transforms import apply_transform, rotate, transform_points

HERE = Path(__file__).resolve().parent
SIZE = (640, 480)  # width, height of the face and of every camera frame
BOXES = [(108 + 52 * i, 202, 38, 58) for i in range(8)]
METER = "powermeter-emeter1"  # held out of the CNN's training, so benchmarks on these photos are honest
CROPS = {  # drum position -> crop file (first file of that label in the source folder)
    "0": "0.0_bd02115f9346.jpg", "1": "1.1_2bed16059150.jpg", "2": "2.0_050c228825cf.jpg",
    "3": "3.0_266b266f0578.jpg", "4": "4.0_0d53f36bac87.jpg", "5": "5.0_0a1448983321.jpg",
    "6": "6.0_37b58d7d2f0c.jpg", "7": "7.0_6c1fbc51c224.jpg", "8": "8.0_03adfe56674f.jpg",
    "9": "9.0_1ed212d59c6a.jpg", "2.5": "2.5_02be23e383e8.jpg", "9.5": "9.5_0f59ffc1c063.jpg",
}
# name, drum positions, camera pose (dx, dy, degrees ccw, scale), installation, expected reading ("" = error)
PHOTOS = [
    ("upright", "0 0 4 8 1 2 7 3", (6, -4, 1.0, 1.0), "meter", "0048127.3"),
    ("shifted", "0 1 3 5 7 9 0 2", (38, 22, -2.0, 1.03), "meter", "0135790.2"),
    ("transition", "0 0 0 2.5 9.5 9.5 9.5 9.5", (-10, 8, 0.5, 0.98), "meter", "0002999.9"),
    ("rot90", "0 6 0 4 8 2 1 3", (-5, 5, -1.0, 1.0), "meter-rot90", "0604821.3"),
    ("rot30", "0 7 2 6 0 3 1 5", (4, 6, 1.5, 1.0), "meter-rot30", "0726031.5"),
    ("mirrored", "0 3 1 4 1 5 9 2", (8, -6, 0.0, 1.01), "meter-mirror", "0314159.2"),
    ("moved_far", "0 0 4 8 1 2 7 3", (-100, 30, 0.0, 1.0), "meter", ""),
]
INSTALLATIONS = {  # how each camera is mounted: the profile's transform undoes it
    "meter": Transform(),
    "meter-rot90": Transform(rotate=90),
    "meter-rot30": Transform(rotate=30),
    "meter-mirror": Transform(flip="horizontal"),
}


def face(rng: np.random.Generator, crops: dict[str, np.ndarray], drums: list[str]) -> np.ndarray:
    """The meter face with ``drums`` in its counter window."""
    w, h = SIZE
    noise = cv2.GaussianBlur(rng.normal(0, 10, (h, w)).astype(np.float32), (0, 0), 3)
    img = np.clip(np.dstack([noise + 196, noise + 200, noise + 204]), 0, 255).astype(np.uint8)
    cv2.rectangle(img, (20, 20), (w - 20, h - 20), (90, 90, 90), 3)
    for cx, cy in [(45, 45), (w - 45, 45), (45, h - 45), (w - 45, h - 45)]:
        cv2.circle(img, (cx, cy), 11, (120, 120, 125), -1)
        cv2.line(img, (cx - 8, cy), (cx + 8, cy), (50, 50, 50), 2)
    text = [("SMARTMETER E-230", (80, 95), 1.0, 2), ("1000 imp/kWh", (80, 135), 0.7, 2),
            ("230V 10(60)A 50Hz", (330, 135), 0.7, 2), ("kWh", (530, 252), 0.9, 2), ("No. 84213377", (80, 330), 0.8, 2),
            ("CL.1  IEC 62053-21", (80, 370), 0.6, 1)]
    for s, org, scale, thick in text:
        cv2.putText(img, s, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (40, 40, 45), thick, cv2.LINE_AA)
    bars = np.random.default_rng(7).integers(1, 4, 60)  # the same barcode on every photo
    x = 380
    for i, bw in enumerate(bars):
        if i % 2 == 0:
            cv2.rectangle(img, (x, 300), (x + int(bw) - 1, 380), (30, 30, 30), -1)
        x += int(bw)
    cv2.fillPoly(img, [np.array([[520, 60], [580, 60], [550, 110]])], (60, 60, 150))
    cv2.circle(img, (560, 420), 18, (40, 40, 40), 2)
    cv2.rectangle(img, (96, 190), (100 + 52 * 8 + 4, 272), (25, 25, 25), -1)
    for (bx, by, bw, bh), drum in zip(BOXES, drums, strict=True):
        img[by:by + bh, bx:bx + bw] = cv2.resize(crops[drum], (bw, bh), interpolation=cv2.INTER_AREA)
    lx, ly, lw, lh = BOXES[-1]
    cv2.rectangle(img, (lx - 4, ly - 4), (lx + lw + 3, ly + lh + 3), (30, 30, 200), 2)
    return img


def camera(rng: np.random.Generator, img: np.ndarray, pose: tuple[float, float, float, float]) -> np.ndarray:
    """A photo of ``img`` by a camera that moved by ``pose``, with other light and sensor noise."""
    dx, dy, angle, scale = pose
    w, h = SIZE
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[:, 2] += (dx, dy)
    wall = np.clip(rng.normal(70, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    inside = cv2.warpAffine(np.full((h, w), 255, np.uint8), m, (w, h)) > 0
    out[~inside] = wall[~inside]
    gain, bias = rng.uniform(0.85, 1.1), rng.uniform(-15, 15)
    shade = np.linspace(1.0, rng.uniform(0.8, 1.0), w, dtype=np.float32)[None, :, None]
    noisy = out.astype(np.float32) * gain * shade + bias + rng.normal(0, 4, out.shape)
    return cv2.GaussianBlur(np.clip(noisy, 0, 255).astype(np.uint8), (3, 3), 0.8)


def mount(photo: np.ndarray, transform: Transform) -> np.ndarray:
    """What a camera mounted this way records: the inverse of the profile's transform."""
    out = cv2.flip(photo, {"horizontal": 1, "vertical": 0, "both": -1}[transform.flip]) \
        if transform.flip != "none" else photo
    return rotate(out, -transform.rotate)


def profile_yaml(name: str, transform: Transform, reference: str, boxes: list[tuple[int, int, int, int]]) -> str:
    lines = [f"# Test installation '{name}' (generated by make_photos.py)", f"meter: {name}", "kind: drum",
             "unit: kWh", "reader: cnn", "transform:", f"  rotate: {transform.rotate:g}", f"  flip: {transform.flip}",
             f"reference: {reference}", "alignment:", "  method: auto", "  max_shift_px: 80", "  min_inliers: 12",
             "digits:"]
    lines += [f"  - [{x}, {y}, {w}, {h}]" for x, y, w, h in boxes]
    lines += ["decimals: 1", "min_confidence: 0.5", ""]
    return "\n".join(lines)


def reference_boxes(transform: Transform) -> list[tuple[int, int, int, int]]:
    """The face's boxes in the reference frame of an installation (mounted, then transformed back)."""
    if transform.rotate % 90 == 0:
        return list(BOXES)
    w, h = SIZE
    raw = rotate(np.zeros((h, w), np.uint8), -transform.rotate)
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), -transform.rotate, 1.0)
    m[0, 2] += (raw.shape[1] - w) / 2
    m[1, 2] += (raw.shape[0] - h) / 2
    out = []
    for x, y, bw, bh in BOXES:
        centre = np.array([[x + bw / 2, y + bh / 2]]) @ m[:, :2].T + m[:, 2]
        cx, cy = transform_points(centre, raw.shape[1], raw.shape[0], transform)[0]
        out.append((round(cx - bw / 2), round(cy - bh / 2), bw, bh))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, help="digit data set to copy crops/ from when it is missing")
    args = ap.parse_args()
    crop_dir = HERE / "crops"
    if args.source is not None:
        crop_dir.mkdir(exist_ok=True)
        for name in CROPS.values():
            shutil.copy2(args.source / METER / name, crop_dir / name)
        with open(crop_dir / "labels.csv", "w", newline="") as f:
            csv.writer(f).writerows([("path", "label"), *[(n, n.split("_")[0]) for n in sorted(CROPS.values())]])
    crops = {k: cv2.imread(str(crop_dir / v)) for k, v in CROPS.items()}
    rng = np.random.default_rng(2024)
    quality = [cv2.IMWRITE_JPEG_QUALITY, 90]

    ref_face = face(rng, crops, ["5"] * 8)
    ref_photo = camera(rng, ref_face, (0, 0, 0.0, 1.0))
    cv2.imwrite(str(HERE / "reference.jpg"), ref_photo, quality)
    for name, transform in INSTALLATIONS.items():
        reference = "reference.jpg"
        if transform.rotate % 90 != 0:
            reference = f"reference-{name}.jpg"
            cv2.imwrite(str(HERE / reference), apply_transform(mount(ref_photo, transform), transform), quality)
        (HERE / f"{name}.yaml").write_text(profile_yaml(name, transform, reference, reference_boxes(transform)))

    rows = []
    for name, drums, pose, install, expected in PHOTOS:
        photo = mount(camera(rng, face(rng, crops, drums.split()), pose), INSTALLATIONS[install])
        cv2.imwrite(str(HERE / f"{name}.jpg"), photo, quality)
        rows.append((f"{name}.jpg", f"{install}.yaml", expected, drums))
    wall = camera(rng, np.clip(rng.normal(120, 30, (SIZE[1], SIZE[0], 3)), 0, 255).astype(np.uint8), (0, 0, 0, 1))
    cv2.imwrite(str(HERE / "wall.jpg"), wall, quality)
    rows.append(("wall.jpg", "meter.yaml", "", "no meter in the picture"))
    data = (HERE / "upright.jpg").read_bytes()
    (HERE / "corrupt.jpg").write_bytes(data[: len(data) * 6 // 10])
    rows.append(("corrupt.jpg", "meter.yaml", "", "upright.jpg cut at 60%"))
    with open(HERE / "photos.csv", "w", newline="") as f:
        csv.writer(f).writerows([("photo", "profile", "expected", "drums"), *rows])


if __name__ == "__main__":
    main()
