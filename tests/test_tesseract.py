"""The tesseract wrapper and reader: the real binary, and fake binaries for every failure."""

from __future__ import annotations

import stat
from pathlib import Path

import cv2
import numpy as np
import pytest

from smartmeter.errors import ExternalToolError
from smartmeter.ocr.readers.base import ReaderUnavailable
from smartmeter.ocr.readers.tesseract_reader import TesseractReader, prepare
from smartmeter.ocr.tesseract import find_tesseract, parse_tsv, parse_version, run_tesseract


def fake_tool(tmp_path: Path, script: str, name: str = "tesseract") -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def rendered_digit(d: int, dark_on_light: bool = True) -> np.ndarray:
    bg, fg = (235, 20) if dark_on_light else (25, 230)
    img = np.full((60, 40, 3), bg, np.uint8)
    cv2.putText(img, str(d), (6, 48), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (fg, fg, fg), 4, cv2.LINE_AA)
    return img


@pytest.mark.parametrize(("text", "version"), [
    ("tesseract 5.3.0\n leptonica-1.82.0\n", (5, 3, 0)),
    ("tesseract v4.1.1-rc2\n", (4, 1, 1)),
    ("tesseract 3.05.02\n", (3, 5, 2)),
    ("tesseract 4.0\n", (4, 0, 0)),
])
def test_parse_version(text: str, version: tuple[int, int, int]) -> None:
    assert parse_version(text) == version


def test_parse_version_garbage() -> None:
    with pytest.raises(ExternalToolError, match="cannot tell the tesseract version"):
        parse_version("hello")


def test_the_real_binary_is_new_enough() -> None:
    tool = find_tesseract()
    assert tool.version >= (4, 0, 0)
    assert Path(tool.path).is_file()


def test_missing_binary(tmp_path: Path) -> None:
    with pytest.raises(ExternalToolError, match="tesseract not found") as err:
        find_tesseract(str(tmp_path / "no-such-tesseract"))
    assert err.value.exit_code == 69 and "apt-get install tesseract-ocr" in str(err.value)


def test_too_old(tmp_path: Path) -> None:
    tool = fake_tool(tmp_path, 'echo "tesseract 3.05.02" >&2')  # tesseract 3 printed its version on stderr
    with pytest.raises(ExternalToolError, match="tesseract 3.5.2 .* is too old; need 4 or newer"):
        find_tesseract(tool)


def test_version_check_fails(tmp_path: Path) -> None:
    tool = fake_tool(tmp_path, 'echo "error while loading shared libraries" >&2; exit 127')
    with pytest.raises(ExternalToolError, match="--version failed with exit code 127: error while loading"):
        find_tesseract(tool)


def test_run_failures_are_external_tool_errors(tmp_path: Path) -> None:
    version = 'case "$1" in --version) echo "tesseract 5.0.0";; '
    crashing = find_tesseract(fake_tool(
        tmp_path, version + '*) echo "Error opening data file eng.traineddata" >&2; exit 1;; esac', "crashing"))
    with pytest.raises(ExternalToolError, match="exit code 1: Error opening data file eng.traineddata"):
        run_tesseract(rendered_digit(3), ["--psm", "10"], crashing)
    slow = find_tesseract(fake_tool(tmp_path, version + "*) sleep 5;; esac", "slow"))
    with pytest.raises(ExternalToolError, match="did not finish within"):
        run_tesseract(rendered_digit(3), ["--psm", "10"], slow, timeout_s=0.3)
    garbled = find_tesseract(fake_tool(
        tmp_path, version + '*) printf "h\\n5\\t1\\t1\\t1\\t1\\t1\\tx\\t0\\t1\\t1\\t90\\t7\\n";; esac', "garbled"))
    with pytest.raises(ExternalToolError, match="unexpected tesseract TSV line"):
        run_tesseract(rendered_digit(3), [], garbled)


def test_parse_tsv() -> None:
    tsv = ("level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n"
           "1\t1\t0\t0\t0\t0\t0\t0\t64\t88\t-1\t\n"
           "5\t1\t1\t1\t1\t1\t12\t12\t30\t60\t93.5\t7\n")
    [word] = parse_tsv(tsv)
    assert word.text == "7" and word.confidence == 93.5 and word.box == (12, 12, 30, 60)


def test_prepare_makes_dark_digits_on_white() -> None:
    for crop in (rendered_digit(4), rendered_digit(4, dark_on_light=False)):
        out = prepare(crop)
        assert out.ndim == 2 and out.shape[0] == 64 + 2 * 12
        assert set(np.unique(out)) <= {0, 255}
        assert np.count_nonzero(out == 255) > out.size / 2  # white background
        assert out[0].min() == 255  # margin


def test_reader_reads_clean_digits() -> None:
    reader = TesseractReader()
    assert reader.name == "tesseract" and reader.version.startswith("tesseract-")
    blank, empty = np.full((60, 40), 128, np.uint8), np.zeros((0, 0, 3), np.uint8)
    got = reader.read_batch([rendered_digit(7), rendered_digit(2, dark_on_light=False), blank, empty])
    assert [g.value for g in got] == [7.0, 2.0, None, None]
    assert got[0].confidence > 0.5 and got[2].confidence == 0.0


def test_probe_tells_a_binary_gone_from_a_bad_crop(tmp_path: Path) -> None:
    tool = fake_tool(tmp_path, 'case "$1" in --version) echo "tesseract 5.0.0";; *) exit 1;; esac', "probed")
    reader = TesseractReader(tool, timeout_s=0.5)
    with pytest.raises(ExternalToolError, match="exit code 1"):
        reader.read_batch([rendered_digit(3)])
    reader.probe()  # the crop failed, the binary still runs
    Path(tool).unlink()
    with pytest.raises(ReaderUnavailable, match="tesseract not found") as err:
        reader.probe()
    assert err.value.exit_code == 69


def test_read_cli_makes_a_photo_tesseract_fails_on_unreadable_and_goes_on(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner
    from test_worker_faults import PHOTOS, unpinned_profile

    from smartmeter.cli import cli

    version = 'case "$1" in --version) echo "tesseract 5.0.0"; exit 0;; esac\n'
    tool = fake_tool(tmp_path, version + 'echo "Error opening data file eng.traineddata" >&2; exit 1', "crashing")
    cfg = tmp_path / "smartmeter.yaml"
    cfg.write_text(f"ocr: {{reader: {{engine: tesseract, command: {tool}}}}}\n")
    photos = [str(PHOTOS / "upright.jpg"), str(PHOTOS / "shifted.jpg")]
    res = CliRunner().invoke(cli, ["-c", str(cfg), "read", *photos, "--profile", str(unpinned_profile(tmp_path))])
    assert res.exit_code == 3, res.output  # unreadable photos, not a dead run (was exit 69 with nothing printed)
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["path"] for r in rows] == photos
    assert all(r["reading"] is None and "exit code 1: Error opening data file" in r["error"] for r in rows)
    Path(tool).unlink()  # the binary itself gone: exit 69, as at start-up
    res = CliRunner().invoke(cli, ["-c", str(cfg), "read", *photos, "--profile", str(unpinned_profile(tmp_path))])
    assert res.exit_code == 69 and "not found" in res.output
