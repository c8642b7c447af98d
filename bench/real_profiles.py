"""Real photos read through the profiles a careful user writes, and through what a real installation does to them.

    .venv/bin/python bench/real_profiles.py [--photos ../shared/data/photos] [--compare REV] [--only NAME ...]
                                            [--keep DIR] [--verbose]

Each profile under ``bench/resources/real_profiles/`` was written the way ``docs/profiles.md`` says: ``smartmeter
profile new PHOTO --rotate DEG --out DIR`` (the rotation its notes ask for, counted counter-clockwise), one box per
drum tight to its window inside the labelled window, ``decimals`` as printed, the red pointers of the vzlogger
water meters as pointer boxes (the boxes of ``bench/dials.py``), then ``smartmeter profile check``. The YAML files
hold no pixels: the reference image is made again here with ``smartmeter profile new`` from the photo in
``--photos`` (the GPL photos are read from there, never copied).

Every photo is then read with ``smartmeter read --profile ... --format json`` as it is and as a real installation
delivers it: re-encoded as JPEG q70, shifted by 4 % / 3 %, turned by +2.5 and -2 degrees, darker (x0.55), brighter
(x1.35 + 25), inside a canvas twice as large (the camera's full frame around a photo like the reference), and
mirrored (``np.fliplr``) read with a profile made with ``--mirror``.

Scored against ``labels.csv``: *right* = the reading's digits equal the label (the label covers the drums; for
``vzlogger-img2`` also its asserted pointers 0.3767; the last digit may be one off where ``last_digit_rolling``
is yes); *refused* = no reading (the reason is printed with ``--verbose``); *wrong* = any other reading: worse
than a refusal. ``--compare REV`` runs the same inputs through the code of git revision REV (``git archive`` into
a temporary folder, first on PYTHONPATH) in the same run and prints both side by side.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "bench" / "resources" / "real_profiles"
PACKAGES = ["smartmeter", "ocr", "simulator", "server", "raspi", "backup_dropbox"]  # what `smartmeter` imports
TRUTH_OVERRIDE = {"vzlogger-img2": "00435.3767"}  # vzlogger's tests assert its pointers too
VARIANTS = ["photo", "jpeg70", "shift", "tilt+2.5", "tilt-2", "dark", "bright", "canvas2x", "mirror"]
CLI = "import sys; from smartmeter.cli import main; sys.argv[0] = 'smartmeter'; main()"


def _digits(text: str | None) -> str:
    return (text or "").replace(".", "").replace(",", "")


def _header(path: Path) -> dict[str, str]:
    """The ``# key: value`` lines at the top of a profile file (photo, how it was made)."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        key, _, value = line[1:].partition(":")
        out[key.strip()] = value.strip()
    return out


def _variants(photo: Path, folder: Path) -> dict[str, Path]:
    """The photo as a real installation delivers it, written into ``folder``."""
    import cv2
    import numpy as np

    image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"{photo}: cannot be read")
    h, w = image.shape[:2]
    rng = np.random.default_rng(13)
    out: dict[str, Path] = {"photo": photo}

    def turned(deg: float) -> Any:
        m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
        return cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REPLICATE)

    shifted = cv2.warpAffine(image, np.array([[1, 0, 0.04 * w], [0, 1, 0.03 * h]], np.float32), (w, h),
                             borderMode=cv2.BORDER_REPLICATE)
    canvas = cv2.GaussianBlur(np.clip(rng.normal(110, 12, (2 * h, 2 * w, 3)), 0, 255).astype(np.uint8), (0, 0), 3)
    oy, ox = int(0.4 * h), int(0.6 * w)
    canvas[oy:oy + h, ox:ox + w] = image
    images = {"shift": shifted, "tilt+2.5": turned(2.5), "tilt-2": turned(-2.0),
              "dark": np.clip(image * 0.55, 0, 255).astype(np.uint8),
              "bright": np.clip(image * 1.35 + 25, 0, 255).astype(np.uint8), "canvas2x": canvas,
              "mirror": np.ascontiguousarray(np.fliplr(image))}
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 70])
    assert ok
    out["jpeg70"] = folder / "jpeg70.jpg"
    out["jpeg70"].write_bytes(jpeg.tobytes())
    for name, img in images.items():
        out[name] = folder / f"{name}.png"
        cv2.imwrite(str(out[name]), img)
    return out


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CLI, *args], cwd=cwd, capture_output=True, text=True)


def _make_profile(yaml_path: Path, photo: Path, folder: Path, mirror: bool) -> Path:
    """``profile new`` on the photo (the reference image), then the stored boxes: the profile a user ends with.
    The mirrored photo gets ``--mirror`` and the opposite rotation (turning a mirrored photo one way is turning
    the original the other way), so its reference and boxes are the original's."""
    import yaml

    data = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    rotate = float(data["transform"]["rotate"])
    if mirror:
        rotate = -rotate
        data["transform"] = {"rotate": rotate, "flip": "horizontal"}
    folder.mkdir(parents=True, exist_ok=True)
    made = _cli(["profile", "new", str(photo), "--rotate", f"{rotate:g}", *(["--mirror"] if mirror else []),
                 "--out", str(folder), "--force", "--no-locate"], folder)
    if made.returncode != 0:
        raise SystemExit(f"profile new {photo}: {made.stderr[-2000:]}")
    target = folder / "profile.yaml"
    target.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return target


def _read(profile: Path, photos: list[Path]) -> list[dict[str, Any]]:
    done = _cli(["read", "--profile", str(profile), "--format", "json", *map(str, photos)], profile.parent)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if len(rows) != len(photos):
        raise SystemExit(f"read {profile}: {len(rows)} results for {len(photos)} photos\n{done.stderr[-2000:]}")
    return rows


def run_all(photos_dir: Path, names: list[str], work: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """Every profile's photo and variants read by the ``smartmeter`` on the current PYTHONPATH."""
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for name in names:
        yaml_path = PROFILES / f"{name}.yaml"
        photo = photos_dir / _header(yaml_path)["photo"]
        folder = work / name
        (folder / "variants").mkdir(parents=True, exist_ok=True)
        variants = _variants(photo, folder / "variants")
        plain = _make_profile(yaml_path, photo, folder / "plain", mirror=False)
        mirrored = _make_profile(yaml_path, variants["mirror"], folder / "mirror", mirror=True)
        order = [v for v in VARIANTS if v != "mirror"]
        rows = _read(plain, [variants[v] for v in order]) + _read(mirrored, [variants["mirror"]])
        results[name] = {v: {k: row.get(k) for k in ("reading", "error", "digits", "pointers", "confidence")}
                         for v, row in zip([*order, "mirror"], rows, strict=True)}
    return results


def verdict(name: str, reading: str | None, labels: dict[str, dict[str, str]]) -> str:
    if reading is None:
        return "refused"
    yaml_path = PROFILES / f"{name}.yaml"
    row = labels[_header(yaml_path)["photo"]]
    truth = _digits(TRUTH_OVERRIDE.get(name, row["reading"]))
    got = _digits(reading)[:len(truth)]  # unlabelled pointers (vzlogger img, sensus) are not scored
    if got == truth:
        return "right"
    if row["last_digit_rolling"] == "yes" and got[:-1] == truth[:-1] and got[-1:].isdigit() and \
            (int(got[-1]) - int(truth[-1])) % 10 in (1, 9):
        return "right"
    return "wrong"


def _baseline(rev: str, argv: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, *PACKAGES], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        env = {**os.environ, "PYTHONPATH": tmp}  # the old smartmeter package comes first
        done = subprocess.run([sys.executable, __file__, *argv, "--child"], env=env, capture_output=True,
                              text=True, cwd=tmp)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"the run of {rev} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(line[7:]))


def _mark(v: str) -> str:
    return {"right": "ok", "refused": "-", "wrong": "WRONG"}[v]


def report(results: dict[str, dict[str, dict[str, Any]]], labels: dict[str, dict[str, str]], title: str,
           verbose: bool) -> dict[str, int]:
    print(f"\n{title}")
    print(f"{'profile':<16} " + " ".join(f"{v:>8}" for v in VARIANTS))
    totals = {"right": 0, "refused": 0, "wrong": 0}
    notes = []
    for name, got in results.items():
        marks = []
        for v in VARIANTS:
            r = got[v]
            verd = verdict(name, r["reading"], labels)
            totals[verd] += 1
            marks.append(_mark(verd))
            if verd == "wrong" or (verbose and verd == "refused"):
                digits = " ".join(f"{d:.2f}" if d is not None else "?" for d in (r["digits"] or []))
                pointers = " ".join(f"{d:.2f}" if d is not None else "?" for d in (r["pointers"] or []))
                notes.append(f"  {name} {v}: {verd} {r['reading'] or ''} (conf {r['confidence']}) "
                             f"{r['error'] or ''} | drums {digits} | pointers {pointers}")
        print(f"{name:<16} " + " ".join(f"{m:>8}" for m in marks))
    n = sum(totals.values())
    print(f"{'total':<16} {totals['right']} of {n} right, {totals['refused']} refused, {totals['wrong']} wrong")
    for line in notes:
        print(line)
    return totals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "data" / "photos")
    ap.add_argument("--compare", metavar="REV", help="also run git revision REV on the same inputs")
    ap.add_argument("--only", nargs="*", default=[], help="profile names (default: all)")
    ap.add_argument("--keep", type=Path, help="work folder to keep (references, variants, profiles)")
    ap.add_argument("--verbose", action="store_true", help="print why each refused photo was refused")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    photos = args.photos.resolve()
    names = args.only or sorted(p.stem for p in PROFILES.glob("*.yaml"))
    with open(photos / "labels.csv", newline="", encoding="utf-8") as fh:
        labels = {row["file"]: row for row in csv.DictReader(fh)}
    with tempfile.TemporaryDirectory() as tmp:
        work = (args.keep or Path(tmp)).resolve()
        if args.child:
            print("RESULT " + json.dumps(run_all(photos, names, work / "base")))
            return
        now = run_all(photos, names, work / "now")
        if args.compare:
            argv = ["--photos", str(photos), "--keep", str(work), "--only", *names]
            before = _baseline(args.compare, argv)
            report(before, labels, f"before: {args.compare}", args.verbose)
        report(now, labels, "after: this tree", args.verbose)


if __name__ == "__main__":
    main()
