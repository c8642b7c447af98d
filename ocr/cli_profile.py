"""``smartmeter profile new|check``: write a profile that reads right, the way ``docs/profiles.md`` describes.

* ``profile new PHOTO [--rotate DEG] [--mirror] --out DIR``: the photo turned (degrees COUNTER-clockwise, the
  profile's ``transform.rotate``; other tools count clockwise-positive) and mirrored as asked is written as
  ``DIR/reference.png``, with a skeleton ``DIR/profile.yaml`` (digit boxes proposed by the counter locator when
  it finds a row in the turned photo, else one placeholder box; every key commented).
* ``profile check PROFILE PHOTOS...``: reads each photo with the profile, writes a colour debug image per photo
  (boxes, each position's value and confidence with two decimals) and says per box what is wrong.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click
import cv2
import numpy as np
import yaml

from smartmeter.errors import ConfigError, InputError, SmartMeterError, UnreadableError
from smartmeter.ocr.dial import DialReading
from smartmeter.ocr.image_io import load_image
from smartmeter.ocr.pipeline import MeterReader
from smartmeter.ocr.profile import Box, Profile, Transform, load_profile
from smartmeter.ocr.transforms import apply_transform, transform_matrix
from smartmeter.types import DigitValue, OcrResult

log = logging.getLogger(__name__)

DRUM_ASPECT = (0.45, 1.0)  # width / height of a box around one drum window
SQUARE = (0.8, 1.25)  # width / height of a dial box
OFF_CENTRE = 0.12  # a needle's axis this far from its box centre (share of the half box): centre the box
OFF_WHOLE = 0.06  # drums reading this far off whole digits on average, all alike: the boxes are off the windows
MAX_LOCATE_SKEW = 5.0  # degrees: the locator's boxes are taken when it de-skews the turned photo no more


@click.group("profile")
def profile_group() -> None:
    """Write and check meter profiles (docs/profiles.md)."""


def skeleton(reference: str, transform: Transform, size: tuple[int, int], digits: list[Box], located: bool) -> str:
    """The commented profile YAML ``profile new`` writes (it loads as is)."""
    w, h = size
    where = ("proposed by the counter locator: check them on the debug image" if located else
             "one placeholder box: replace it with one box per drum")
    boxes = "\n".join(f"  - [{x}, {y}, {bw}, {bh}]" for x, y, bw, bh in digits)
    return f"""# Meter profile written by `smartmeter profile new`. Check it with
#   smartmeter profile check {{this file}} PHOTO... --out check/      (then look at check/*.debug.png)
# The whole guide: docs/profiles.md. Unknown keys are rejected.
meter: meter1
kind: drum               # drum | lcd
unit: kWh

# Applied to every photo first. rotate: degrees COUNTER-clockwise (other tools count clockwise-positive: their
# 90 is our -90). flip (after rotating): none | horizontal (a meter seen through a mirror) | vertical | both.
transform:
  rotate: {transform.rotate:g}
  flip: {transform.flip}

# This photo, already turned as above ({w}x{h} px). Every box below is in its pixels; every photo is aligned to
# it (a full camera frame larger than this reference is found inside it).
reference: {reference}

# One box [x, y, width, height] per drum, most significant first: tight to the drum's window (the digit and
# its window frame, about 10 % margin on each side), never two drums in one box. Boxes {where}.
digits:
{boxes}
decimals: 0              # how many of the last positions (digits, then pointers) are after the decimal point

# Dials: one SQUARE box per pointer, centred on the needle's axis, just around the printed scale; least
# significant last. Example: pointers: [[400, 300, 80, 80], [500, 300, 80, 80]]
pointers: []
# dials:
#   needle: red          # red (needs colour photos) | dark
#   zero_degrees: 0      # where the 0 of each scale points, degrees CLOCKWISE from up in the reference
#   directions: [clockwise, counterclockwise]   # one per pointer (water meters alternate); default clockwise
"""


def _locate_digits(image: np.ndarray) -> list[Box] | None:
    """Digit boxes the counter locator finds in the turned photo, in its pixels (the locator's own small de-skew
    undone: box centres mapped back, sizes kept); None when it finds none or would turn the photo much."""
    try:
        from smartmeter.ocr.autolocate import locate
        from smartmeter.ocr.readers.cnn import CnnReader

        # a proposal a person checks: a drum the reader's reject refuses (mid-roll, glare) must not hide the counter
        # row behind a serial number (tests/resources/photos/upright.jpg did); readings keep the reject
        found = locate(image, CnnReader(reject=False), propose=True)
    except (SmartMeterError, ImportError, OSError) as exc:
        log.info("no counter located: %s", exc)
        return None
    if found.rival is not None:
        log.warning("another row of digits looks almost as much like the counter (score %.2f against %.2f): the "
                    "boxes are on the likelier one; check them with 'smartmeter profile check'", found.rival,
                    found.score)
    t = found.profile.transform
    if abs(t.rotate) > MAX_LOCATE_SKEW or t.flip != "none":
        return None  # its boxes would be in another frame than the reference
    h, w = image.shape[:2]
    back = np.linalg.inv(transform_matrix(w, h, t))
    boxes: list[Box] = []
    for x, y, bw, bh in found.profile.digits:
        cx, cy, _ = back @ np.array([x + bw / 2, y + bh / 2, 1.0])
        boxes.append((max(0, round(cx - bw / 2)), max(0, round(cy - bh / 2)), bw, bh))
    return boxes


@profile_group.command("new")
@click.argument("photo", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--rotate", type=float, default=0.0, show_default=True, metavar="DEG",
              help="Turn the photo by DEG degrees COUNTER-clockwise (negative: clockwise). Other tools count "
                   "clockwise-positive: their 90 is our -90.")
@click.option("--mirror", is_flag=True, help="Mirror the photo left-right after turning (a meter seen in a mirror).")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for reference.png and profile.yaml.")
@click.option("--force", is_flag=True, help="Overwrite an existing profile.yaml.")
@click.option("--locate/--no-locate", default=True, show_default=True,
              help="Propose digit boxes with the counter locator.")
def new_cmd(photo: Path, rotate: float, mirror: bool, out: Path, force: bool, locate: bool) -> None:
    """Write the turned reference image and a skeleton profile for PHOTO."""
    transform = Transform(rotate=rotate, flip="horizontal" if mirror else "none")
    turned = apply_transform(load_image(photo), transform)
    target = out / "profile.yaml"
    if target.exists() and not force:
        raise InputError(f"{target} exists", hint="use --force to overwrite it")
    out.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out / "reference.png"), turned):
        raise ConfigError(f"cannot write {out / 'reference.png'}")
    h, w = turned.shape[:2]
    digits = _locate_digits(turned) if locate else None
    placeholder: list[Box] = [(w // 2 - w // 40, h // 2 - w // 28, max(1, w // 20), max(1, w // 14))]
    text = skeleton("reference.png", transform, (w, h), digits or placeholder, digits is not None)
    Profile.model_validate(yaml.safe_load(text))  # what we write always loads
    target.write_text(text, encoding="utf-8")
    click.echo(f"wrote {out / 'reference.png'} ({w}x{h}, turned {rotate:g} degrees counter-clockwise"
               f"{', mirrored' if mirror else ''}) and {target} "
               f"({len(digits) if digits else 'one placeholder'} digit box{'es' if digits else ''}): edit the boxes, "
               f"then run: smartmeter profile check {target} PHOTO...")


def box_problems(profile: Profile, result: OcrResult,
                 dials: list[DialReading] | None = None) -> list[tuple[str, Box, DigitValue | None, list[str]]]:
    """Per box: its name, the box, its value and what looks wrong with it (``dials``: the dial reader's full
    readings of the pointers, which say how far off its box centre each needle turns)."""
    rows: list[tuple[str, Box, DigitValue | None, list[str]]] = []
    values = [*result.digits, *result.pointers]
    boxes = [(f"digit {i + 1}", b) for i, b in enumerate(profile.digits)]
    boxes += [(f"pointer {i + 1}", b) for i, b in enumerate(profile.pointers)]
    for k, (name, box) in enumerate(boxes):
        x, y, w, h = box
        value = values[k] if k < len(values) else None
        problems = []
        aspect = w / h
        if name.startswith("digit") and not DRUM_ASPECT[0] <= aspect <= DRUM_ASPECT[1]:
            problems.append(f"{w}x{h} is {'wider' if aspect > 1 else 'narrower'} than one drum window "
                            f"(width/height {aspect:.2f}, expected {DRUM_ASPECT[0]}-{DRUM_ASPECT[1]}): one box "
                            "per drum, tight to its window")
        if name.startswith("pointer") and not SQUARE[0] <= aspect <= SQUARE[1]:
            problems.append(f"{w}x{h} is not square: a dial box is square, centred on the needle's axis")
        dial = dials[k - len(profile.digits)] if dials and k >= len(profile.digits) else None
        if dial is not None and dial.off_centre is not None and dial.off_centre > OFF_CENTRE:
            problems.append(f"the needle turns about {dial.off_centre * min(w, h) / 2:.0f} px off the box centre: "
                            "centre the box on the needle's hub")
        for other_name, (ox, oy, ow, oh) in boxes[:k]:
            if x < ox + ow and ox < x + w and y < oy + oh and oy < y + h:
                problems.append(f"overlaps {other_name}")
        if result.error and f"box {list(box)} falls outside" in result.error:
            problems.append(result.error.split(f"box {list(box)} ", 1)[1].split(" (reference")[0])
        if result.error and result.error.startswith(f"{name} reads "):  # the second look moved the boxes
            seen = result.error.split(" but ", 1)[1].split(": the reading", 1)[0]
            problems.append(f"the reading depends on where the box sits ({seen}): centre it on the drum window")
        if value is not None and value.value is None:
            problems.append("unreadable")
        elif value is not None and value.confidence < profile.min_confidence:
            problems.append(f"confidence {value.confidence:.2f} below {profile.min_confidence:g}: is the box on "
                            "the window (see the debug image)?")
        rows.append((name, box, value, problems))
    if profile.digits and [b[0] for b in profile.digits] != sorted(b[0] for b in profile.digits):
        rows[0][3].append("digit boxes are not left to right: most significant first")
    return rows


def row_problems(result: OcrResult) -> list[str]:
    """What the drums together say: resting drums read whole digits, so drums that all read a little off whole
    digits the same way mean boxes off the drum windows (seen: boxes 5 px too high read 0604821.2 for 0604821.3
    at confidence 0.62; a reference turned the wrong way read 1111111.0 at 0.74)."""
    offs = [v.value - round(v.value) for v in result.digits[:-1] if v.value is not None]  # the last drum turns
    if len(offs) < 3:
        return []
    mean = sum(offs) / len(offs)
    same = sum(1 for o in offs if o * mean > 0)
    if abs(mean) < OFF_WHOLE or same < len(offs) - 1:
        return []
    return [f"the drums read {abs(mean):.2f} {'below' if mean < 0 else 'above'} whole digits on average: a resting "
            "drum reads a whole digit, so the boxes are probably off the drum windows (too high or too low, or "
            "the transform is wrong: look at the debug image)"]


@profile_group.command("check")
@click.argument("profile_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("photos", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("profile-check"),
              show_default=True, help="Folder for the colour debug images.")
@click.pass_context
def check_cmd(ctx: click.Context, profile_path: Path, photos: tuple[Path, ...], out: Path) -> None:
    """Read PHOTOS with PROFILE, draw the boxes, and say per box what is wrong. Exit 3 when something is."""
    from smartmeter.ocr.cli import _reader_for

    reader, profile = _reader_for(ctx, None, load_profile(profile_path))
    assert profile is not None
    meter = MeterReader(profile, reader, debug_dir=out)
    bad = 0
    for path, result in zip(photos, meter.read_many(list(photos), [str(p) for p in photos]), strict=True):
        click.echo(f"{path}: {result.reading if result.reading is not None else 'UNREADABLE'}"
                   f"  (confidence {result.confidence:.2f})" + (f"  {result.error}" if result.error else ""))
        dials = None
        if profile.pointers and result.pointers:
            try:
                dials = meter.read_dials(path, str(path))
            except SmartMeterError as exc:
                log.info("%s: %s", path, exc)
        rows = box_problems(profile, result, dials)
        for name, box, value, problems in rows:
            seen = "not read" if value is None else ("?" if value.value is None else
                                                     f"{value.value:.2f} ({value.confidence:.2f})")
            click.echo(f"  {name:<10} {list(box)!s:<22} {seen:<14} {'; '.join(problems) or 'ok'}")
        together = row_problems(result)
        for problem in together:
            click.echo(f"  all drums: {problem}")
        bad += result.reading is None or bool(together) or any(problems for *_, problems in rows)
    click.echo(f"debug images: {out}/")
    if bad:
        raise UnreadableError(f"{bad} of {len(photos)} photos unreadable or with box problems (see above)")
