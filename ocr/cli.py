"""``smartmeter ocr digits|assemble`` and ``smartmeter read``: thin wrappers over the OCR library.

* ``ocr digits DIR --output preds.csv``: every image under DIR is one digit crop -> ``path,value,confidence``
  (``value`` empty for a crop the reader refuses or reads below the configured confidence).
* ``ocr assemble --batch cases.jsonl``: raw drum positions -> reading, one JSON line out per line in.
* ``ocr train``: train the digit models (``smartmeter.ocr.train_cli``; needs the ``train`` extra).
* ``read IMAGE... --profile meter.yaml``: whole photos -> reading, value, per-digit values, confidence, error.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import click
import numpy as np

from smartmeter.errors import ImageError, InputError, SmartMeterError, UnreadableError
from smartmeter.ocr.assemble import assemble
from smartmeter.ocr.image_io import list_images, load_image
from smartmeter.ocr.pipeline import MeterReader
from smartmeter.ocr.profile import Profile, load_profile
from smartmeter.ocr.readers.base import DigitReader
from smartmeter.ocr.readers.config import ENGINES as READER_ENGINES
from smartmeter.ocr.readers.config import open_reader, resolve_reader, with_threshold
from smartmeter.ocr.readers.isolate import read_isolated
from smartmeter.ocr.train_cli import train_cmd
from smartmeter.progress import Progress
from smartmeter.types import DigitValue, OcrResult

log = logging.getLogger(__name__)

CHUNK = 512
ENGINES = click.Choice(READER_ENGINES)


def _reader_for(ctx: click.Context, engine: str | None,
                profile: Profile | None = None) -> tuple[DigitReader, Profile | None]:
    """The reader configuration in effect (``--engine`` > the profile's ``reader`` > the settings' ``ocr.reader``):
    its reader, checked, and the profile with its threshold."""
    settings = ctx.obj.settings.ocr if ctx.obj is not None else None
    config = resolve_reader(settings, profile, engine)
    return open_reader(config), with_threshold(profile, config) if profile is not None else None


def format_value(value: float | None) -> str:
    """A drum position with up to 2 decimals (``3.0``, ``3.5``, ``9.95``); empty when unreadable."""
    if value is None or value != value:
        return ""
    v = round(float(value), 2) % 10.0
    text = f"{v:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def read_digit_dir(root: Path, reader: DigitReader, out: TextIO, progress: bool = True,
                   min_confidence: float = 0.0) -> tuple[int, int]:
    """Read every image under ``root`` as one digit crop; write ``path,value,confidence`` rows.

    Returns (files, readable). Undecodable files get an error on stderr and an empty value; the batch goes on.
    A crop the reader refuses (value None: not a digit, cannot tell) or reads below ``min_confidence`` gets an
    empty value and confidence 0, like an unreadable one: the rows answered are the ones the reader stands by.
    """
    files = list_images(root)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["path", "value", "confidence"])
    readable = 0
    with Progress("digits", total=len(files), enabled=progress) as bar:
        for start in range(0, len(files), CHUNK):
            chunk = files[start:start + CHUNK]
            crops: list[np.ndarray] = []
            ok: list[bool] = []
            for path in chunk:
                try:
                    crops.append(load_image(path))
                    ok.append(True)
                except ImageError as exc:
                    click.echo(f"error: {exc}", err=True)
                    ok.append(False)
            values = iter(reader.read_batch(crops) if crops else [])
            for path, good in zip(chunk, ok, strict=True):
                v = next(values) if good else DigitValue(None, 0.0)
                text = format_value(v.value) if v.confidence >= min_confidence else ""
                readable += bool(text)
                writer.writerow([path.relative_to(root).as_posix(), text, f"{v.confidence:.4f}" if text else "0"])
            bar.advance(len(chunk))
    return len(files), readable


def assemble_line(line: str) -> dict[str, Any]:
    """One JSON case -> ``{"reading": ...}`` or ``{"reading": null, "error": ...}`` (never raises)."""
    try:
        case = json.loads(line)
        if not isinstance(case, dict):
            raise InputError("each line must be a JSON object")
        digits = case.get("digits")
        pointers = case.get("pointers", [])
        if not isinstance(digits, list) or not isinstance(pointers, list):
            raise InputError('"digits" (and "pointers" if given) must be lists of numbers')
        result = assemble(digits, pointers, case.get("decimals"))
    except json.JSONDecodeError as exc:
        return {"reading": None, "error": f"not valid JSON: {exc.msg} at column {exc.colno}"}
    except InputError as exc:
        return {"reading": None, "error": str(exc)}
    if result.reading is None:
        return {"reading": None, "error": result.error}
    return {"reading": result.reading}


def result_row(path: str, result: OcrResult) -> dict[str, Any]:
    def values(items: list[DigitValue]) -> list[float | None]:
        return [None if d.value is None else round(d.value, 2) for d in items]

    return {"path": path, "reading": result.reading, "value": result.value, "digits": values(result.digits),
            "pointers": values(result.pointers), "confidence": round(result.confidence, 4), "error": result.error}


@click.group("ocr")
def ocr_group() -> None:
    """OCR tools: read digit crops, assemble readings, train the models."""


ocr_group.add_command(train_cmd)


@ocr_group.command("digits")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--output", "-o", "output", default="-", show_default=True, type=click.Path(path_type=Path),
              help="CSV to write (path,value,confidence); '-' = stdout.")
@click.option("--engine", type=ENGINES, default=None, help="Digit reader (default: the settings' ocr.reader).")
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=None,
              help="Leave the value empty below this confidence (default: the reader's configured min_confidence).")
@click.pass_context
def digits_cmd(ctx: click.Context, directory: Path, output: Path, engine: str | None,
               min_confidence: float | None) -> None:
    """Read every image under DIRECTORY (recursive) as one digit crop. A crop the reader refuses (not a digit,
    cannot tell) or reads below the confidence floor gets an empty value."""
    settings = ctx.obj.settings.ocr if ctx.obj is not None else None
    config = resolve_reader(settings, None, engine)
    reader = open_reader(config)
    floor = config.min_confidence if min_confidence is None else min_confidence
    if str(output) == "-":
        files, readable = read_digit_dir(directory, reader, sys.stdout, min_confidence=floor)
    else:
        tmp = output.with_name(output.name + ".partial")
        try:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                files, readable = read_digit_dir(directory, reader, f, min_confidence=floor)
            os.replace(tmp, output)
        finally:
            tmp.unlink(missing_ok=True)
    if files == 0:
        raise InputError(f"no images under {directory}")
    if readable == 0:
        raise UnreadableError(f"none of the {files} images could be read")
    log.info("%d of %d digit crops read", readable, files)


@ocr_group.command("assemble")
@click.option("--batch", "batch", required=True, type=click.File("r", encoding="utf-8"),
              help="JSON Lines file of cases ('-' = stdin): {\"digits\": [...], \"pointers\": [...]}.")
def assemble_cmd(batch: io.TextIOBase) -> None:
    """Assemble raw drum positions into readings: one JSON line out per line in, same order."""
    for line in batch:
        text = line.strip()
        out = assemble_line(text) if text else {"reading": None, "error": "empty line"}
        click.echo(json.dumps(out))


def _read_photos(paths: list[Path], profile: Profile, reader: DigitReader,
                 debug_dir: Path | None) -> Iterator[tuple[str, OcrResult]]:
    meter = MeterReader(profile, reader, debug_dir=debug_dir)
    for start in range(0, len(paths), CHUNK):
        names = [str(p) for p in paths[start:start + CHUNK]]
        got = read_isolated(meter, paths[start:start + CHUNK], names)  # a reader failure: that photo unreadable
        yield from zip(names, [r if isinstance(r, OcrResult) else r.as_result(meter.version) for r in got],
                       strict=True)


def _read_auto(paths: list[Path], reader: DigitReader) -> Iterator[tuple[str, OcrResult, Profile | None]]:
    from smartmeter.ocr.autolocate import read_auto

    for p in paths:
        try:
            result, proposed = read_auto(load_image(p), reader)
        except SmartMeterError as exc:
            if isinstance(exc, ImageError | UnreadableError):
                yield str(p), OcrResult(None, None, 0.0, error=str(exc)), None
                continue
            raise
        yield str(p), result, proposed


@click.command("read")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--profile", "profile_path", type=click.Path(path_type=Path), help="Meter profile YAML.")
@click.option("--auto", is_flag=True, help="No profile: locate the counter automatically.")
@click.option("--propose-profile", type=click.Path(path_type=Path),
              help="With --auto: save the profile found on the first photo that could be read.")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True,
              help="json = one object per line (JSON Lines).")
@click.option("--debug-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write an annotated image per photo (boxes, per-digit values) here.")
@click.option("--engine", type=ENGINES, default=None,
              help="Digit reader, over the profile's reader and the settings' ocr.reader.")
@click.pass_context
def read_cmd(ctx: click.Context, images: tuple[Path, ...], profile_path: Path | None, auto: bool,
             propose_profile: Path | None, fmt: str, debug_dir: Path | None, engine: str | None) -> None:
    """Read the register from meter photos. Exit 3 when some photos were unreadable."""
    if auto == (profile_path is not None):
        raise InputError("give either --profile FILE or --auto")
    if propose_profile is not None and not auto:
        raise InputError("--propose-profile only works with --auto")
    paths = list(images)
    rows: Iterator[tuple[str, OcrResult, Profile | None]]
    if auto:
        rows = _read_auto(paths, _reader_for(ctx, engine)[0])
    else:
        assert profile_path is not None
        reader, profile = _reader_for(ctx, engine, load_profile(profile_path))
        assert profile is not None
        rows = ((name, res, None) for name, res in _read_photos(paths, profile, reader, debug_dir))
    writer = csv.writer(sys.stdout, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(["path", "reading", "value", "digits", "confidence", "error"])
    failed = 0
    proposed_saved = False
    for name, result, proposed in rows:
        row = result_row(name, result)
        failed += result.reading is None
        if writer is not None:
            digits = " ".join(format_value(v) or "?" for v in [*row["digits"], *row["pointers"]])
            writer.writerow([name, row["reading"] or "", "" if row["value"] is None else row["value"], digits,
                             row["confidence"], row["error"] or ""])
        else:
            click.echo(json.dumps(row))
        sys.stdout.flush()
        if propose_profile is not None and proposed is not None and not proposed_saved:
            propose_profile.write_text(proposed.to_yaml(), encoding="utf-8")
            proposed_saved = True
            click.echo(f"proposed profile written to {propose_profile}", err=True)
    if propose_profile is not None and not proposed_saved:
        click.echo("no profile proposed: no photo could be located", err=True)
    if failed:
        raise UnreadableError(f"{failed} of {len(paths)} photos unreadable")
