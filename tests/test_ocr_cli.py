"""`smartmeter ocr digits`, `smartmeter ocr assemble` and `smartmeter read` (real CNN, real test photos)."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from smartmeter.cli import cli
from smartmeter.ocr.profile import Profile, load_profile
from smartmeter.ocr.tesseract import find_tesseract
from smartmeter.types import DigitValue, OcrResult

RESOURCES = Path(__file__).parent / "resources"
PHOTOS = RESOURCES / "photos"
CROPS = PHOTOS / "crops"


def run(args: list[str], stdin: str | None = None) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, args, input=stdin)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture
def digit_dir(tmp_path: Path) -> Path:
    root = tmp_path / "crops"
    (root / "sub" / "deeper").mkdir(parents=True)
    shutil.copy(CROPS / "3.0_266b266f0578.jpg", root / "three.jpg")
    shutil.copy(CROPS / "9.5_0f59ffc1c063.jpg", root / "sub" / "nine-half.jpg")
    shutil.copy(CROPS / "7.0_6c1fbc51c224.jpg", root / "sub" / "deeper" / "seven.JPG")
    shutil.copy(PHOTOS / "corrupt.jpg", root / "sub" / "corrupt.jpg")
    (root / "notes.png").write_text("not an image")
    (root / "labels.csv").write_text("ignored,not an image suffix\n")
    return root


def test_digits_writes_one_row_per_image(digit_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "preds.csv"
    out.write_text("old content\n")
    code, _, err = run(["ocr", "digits", str(digit_dir), "--output", str(out)])
    assert code == 0, err
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["path", "value", "confidence"]
    by_path = {r["path"]: r for r in rows}
    assert sorted(by_path) == ["notes.png", "sub/corrupt.jpg", "sub/deeper/seven.JPG", "sub/nine-half.jpg",
                               "three.jpg"]
    assert abs(float(by_path["three.jpg"]["value"]) - 3.0) <= 0.2
    assert abs(float(by_path["sub/nine-half.jpg"]["value"]) - 9.5) <= 0.3
    assert abs(float(by_path["sub/deeper/seven.JPG"]["value"]) - 7.0) <= 0.2
    for r in rows:
        if r["value"]:
            assert len(r["value"].split(".")[1]) <= 2 and 0.0 <= float(r["value"]) < 10.0
            assert 0.0 <= float(r["confidence"]) <= 1.0
    assert by_path["sub/corrupt.jpg"]["value"] == "" and by_path["notes.png"]["value"] == ""
    assert "sub/corrupt.jpg: truncated JPEG" in err and "notes.png: not a decodable image" in err
    assert not list(tmp_path.glob("*.partial"))


def test_digits_leave_refused_and_weak_crops_empty(tmp_path: Path) -> None:
    """A crop the reader refuses (not a digit) and one below the confidence floor get an empty value and
    confidence 0; the CSV keeps its three columns and one row per image."""
    three = cv2.imread(str(CROPS / "3.0_266b266f0578.jpg"))
    h, w = three.shape[:2]
    cv2.imwrite(str(tmp_path / "three.png"), three)
    yy, xx = np.mgrid[0:h, 0:w]
    spot = np.exp(-((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (0.125 * h * h))
    cv2.imwrite(str(tmp_path / "glare.png"), np.clip(three + 380.0 * spot[..., None], 0, 255).astype(np.uint8))
    code, out, err = run(["ocr", "digits", str(tmp_path)])
    rows = {r["path"]: r for r in csv.DictReader(out.splitlines())}
    assert code == 0, err
    assert abs(float(rows["three.png"]["value"]) - 3.0) <= 0.2 and float(rows["three.png"]["confidence"]) > 0.9
    assert rows["glare.png"] == {"path": "glare.png", "value": "", "confidence": "0"}
    shutil.copy(CROPS / "2.5_02be23e383e8.jpg", tmp_path / "two-half.jpg")  # read at confidence 0.98
    code, out, _ = run(["ocr", "digits", str(tmp_path), "--min-confidence", "0.99"])
    assert code == 0 and out.splitlines()[1:] == ["glare.png,,0", f"three.png,{rows['three.png']['value']},"
                                                  f"{rows['three.png']['confidence']}", "two-half.jpg,,0"]


def test_digits_to_stdout_and_nothing_readable(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"")
    code, out, err = run(["ocr", "digits", str(tmp_path)])
    assert code == 3 and out.splitlines() == ["path,value,confidence", "a.jpg,,0"]
    assert "a.jpg: empty file" in err and "none of the 1 images could be read" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(["ocr", "digits", str(empty)])
    assert code == 65 and "no images under" in err


def test_digits_without_tesseract_is_exit_69(digit_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(digit_dir))
    find_tesseract.cache_clear()
    try:
        code, _, err = run(["ocr", "digits", str(digit_dir), "--engine", "tesseract"])
    finally:
        find_tesseract.cache_clear()
    assert code == 69 and "tesseract not found" in err


def test_assemble_batch_from_stdin_and_file(tmp_path: Path) -> None:
    lines = [
        '{"digits": [2.9, 7.0, 6.8], "pointers": [9.7]}',
        '{"digits": [2.9, 0.3]}',
        "{broken",
        '{"digits": [2.9, 9.8]}',
        '{"digits": [1.0, 4.5, 2.0]}',
        '{"digits": [9.9, 9.95]}',
        '{"digits": [1, null]}',
        '{"digits": [1, 2, 3], "decimals": 2}',
        '{"pointers": [1]}',
        "",
    ]
    code, out, _ = run(["ocr", "assemble", "--batch", "-"], "\n".join(lines) + "\n")
    assert code == 0
    got = [json.loads(x) for x in out.splitlines()]
    assert len(got) == len(lines)
    assert got[0] == {"reading": "376.9"}
    assert got[1] == {"reading": "30"}
    assert got[2]["reading"] is None and "not valid JSON" in got[2]["error"]
    assert got[3] == {"reading": "29"}
    assert got[4] == {"reading": None, "error": "digit 2 at 4.5 does not fit its right neighbour 2.0 (off by 0.50)"}
    assert got[5] == {"reading": "00"}
    assert got[6] == {"reading": None, "error": "digit 2 unreadable"}
    assert got[7] == {"reading": "1.23"}
    assert got[8]["reading"] is None and got[9]["reading"] is None
    cases = tmp_path / "cases.jsonl"
    cases.write_text("\n".join(lines[:2]) + "\n")
    assert run(["ocr", "assemble", "--batch", str(cases)])[1].splitlines() == ['{"reading": "376.9"}',
                                                                               '{"reading": "30"}']


def test_read_json_lines_and_exit_code(tmp_path: Path) -> None:
    photos = [str(PHOTOS / n) for n in ("upright.jpg", "transition.jpg", "corrupt.jpg")]
    code, out, err = run(["read", *photos, "--profile", str(PHOTOS / "meter.yaml"), "--debug-dir",
                          str(tmp_path / "dbg")])
    assert code == 3 and "1 of 3 photos unreadable" in err
    rows = [json.loads(x) for x in out.splitlines()]
    assert [r["reading"] for r in rows] == ["0048127.3", "0002999.9", None]
    assert rows[0]["value"] == 48127.3 and len(rows[0]["digits"]) == 8 and rows[0]["error"] is None
    assert 0.5 <= rows[0]["confidence"] <= 1 and rows[0]["path"] == photos[0]
    assert "truncated JPEG" in rows[2]["error"]
    assert sorted(p.name for p in (tmp_path / "dbg").iterdir()) == ["transition.jpg.debug.png",
                                                                     "upright.jpg.debug.png"]
    code, out, _ = run(["read", str(PHOTOS / "rot30.jpg"), "--profile", str(PHOTOS / "meter-rot30.yaml"),
                        "--format", "csv"])
    assert code == 0
    [row] = list(csv.DictReader(io.StringIO(out)))
    assert row["reading"] == "0726031.5" and row["error"] == "" and len(row["digits"].split()) == 8


def test_read_needs_profile_or_auto() -> None:
    code, _, err = run(["read", str(PHOTOS / "upright.jpg")])
    assert code == 65 and "--profile FILE or --auto" in err
    code, _, err = run(["read", str(PHOTOS / "upright.jpg"), "--profile", str(PHOTOS / "missing.yaml")])
    assert code == 2 and "cannot read profile" in err


def test_read_auto_saves_the_proposed_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import smartmeter.ocr.autolocate

    proposed = load_profile(PHOTOS / "meter.yaml").model_copy(update={"reference": None})
    calls: list[tuple[int, ...]] = []

    def fake_read_auto(image: np.ndarray, reader: object) -> tuple[OcrResult, Profile | None]:
        calls.append(image.shape)
        return OcrResult("0048127.3", 48127.3, 0.9, [DigitValue(1.0, 0.9)]), proposed

    monkeypatch.setattr(smartmeter.ocr.autolocate, "read_auto", fake_read_auto)
    target = tmp_path / "proposed.yaml"
    code, out, err = run(["read", "--auto", str(PHOTOS / "upright.jpg"), str(PHOTOS / "corrupt.jpg"),
                          "--propose-profile", str(target)])
    assert code == 3 and calls == [(480, 640, 3)]
    rows = [json.loads(x) for x in out.splitlines()]
    assert rows[0]["reading"] == "0048127.3" and "truncated JPEG" in rows[1]["error"]
    assert load_profile(target).digits == proposed.digits
    code, _, err = run(["read", str(PHOTOS / "upright.jpg"), "--profile", str(PHOTOS / "meter.yaml"),
                        "--propose-profile", str(target)])
    assert code == 65 and "only works with --auto" in err
