"""``smartmeter ocr train``: the options object and the command made from it (ocr/train_cli.py). No training runs
here: torch is the ``train`` extra; where it is installed, one smoke run of a few seconds checks the wiring."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from smartmeter.cli import cli
from smartmeter.ocr.train_cli import TrainOptions, train_cmd

SHIPPED = {"meters": "both", "epochs": 50, "seed": 20240601, "threads": 2, "glare": 0.2, "frame": 0.35,
           "hshift": 0.15, "vscale": 0.0, "recipe": 1, "roll": 0.3, "fonts": 0.5, "roll_static": 0.0,
           "lcd_fonts": False, "segment_drums": False, "teacher": (), "distill": 0.5, "distill_temp": 2.0,
           "balance": 0.0, "ema": 0.0, "lines": 0.0, "widths": (16, 32, 64), "tag": "", "batch": 128, "lr": 3e-3,
           "sigma": 1.0, "font_pool": 20000, "limit_per_meter": None, "reject": 0.0}


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[TrainOptions]:
    """The options the command hands to ``ocr.train.run``, with a stand-in for the torch module (parsing only)."""
    runs: list[TrainOptions] = []
    fake = types.ModuleType("smartmeter.ocr.train")
    fake.run = runs.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "smartmeter.ocr.train", fake)
    monkeypatch.setattr("smartmeter.ocr.train", fake, raising=False)
    return runs


def test_the_defaults_are_the_shipped_recipe() -> None:
    o = TrainOptions()
    assert {k: getattr(o, k) for k in SHIPPED} == SHIPPED
    assert o.data == Path("../shared/data/digits") and o.out_dir == Path("ocr/models")


def test_every_option_of_the_object_is_an_option_of_the_command() -> None:
    out = CliRunner().invoke(cli, ["ocr", "train", "--help"])
    assert out.exit_code == 0, out.output
    for f in dataclasses.fields(TrainOptions):
        assert "--" + f.name.replace("_", "-") in out.output
    assert "--roll FLOAT RANGE" in out.output and "[default: both]" in out.output and 'default: ""' not in out.output


def test_the_command_builds_the_options(captured: list[TrainOptions], tmp_path: Path) -> None:
    teacher = tmp_path / "big.onnx"
    teacher.write_bytes(b"onnx")
    out = CliRunner().invoke(train_cmd, ["--meters", "holdout", "--epochs", "3", "--widths", "8,16,32", "--lcd-fonts",
                                         "--teacher", str(teacher), "--teacher", str(teacher), "--out-dir",
                                         str(tmp_path / "m"), "--limit-per-meter", "5", "--tag", "x"])
    assert out.exit_code == 0, out.output
    [o] = captured
    assert o == dataclasses.replace(TrainOptions(), meters="holdout", epochs=3, widths=(8, 16, 32), lcd_fonts=True,
                                    teacher=(teacher, teacher), out_dir=tmp_path / "m", limit_per_meter=5, tag="x")
    assert CliRunner().invoke(train_cmd, []).exit_code == 0 and captured[1] == TrainOptions()


@pytest.mark.parametrize("args, error", [(["--glare", "1.5"], "1.5 is not in the range 0.0<=x<=1.0"),
                                        (["--widths", "16,32"], "is not three channel counts"),
                                        (["--widths", "0,32,64"], "channel counts must be >= 1"),
                                        (["--recipe", "3"], "3 is not in the range 1<=x<=2"),
                                        (["--meters", "some"], "'some' is not one of"),
                                        (["--epochs", "0"], "0 is not in the range x>=1")])
def test_bad_options_are_refused_before_anything_runs(captured: list[TrainOptions], args: list[str],
                                                      error: str) -> None:
    out = CliRunner().invoke(train_cmd, args)
    assert out.exit_code == 2 and error in out.output and captured == []


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch is installed here")
def test_without_torch_the_command_says_what_to_install() -> None:
    out = CliRunner().invoke(cli, ["ocr", "train", "--epochs", "1"])
    assert out.exit_code == 2 and "training needs torch" in out.output and "smartmeter[train]" in out.output


@pytest.mark.parametrize("reject", ["0", "0.2"])
def test_smoke_run_with_torch(tmp_path: Path, reject: str) -> None:
    """A few seconds: 20 crops per meter, one epoch, the holdout model; checks data, training, export, metadata,
    and that the reader loads the model (with ``--reject``: a 101st output, the reject class)."""
    pytest.importorskip("torch")
    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "digits"
    if not data.is_dir():
        pytest.skip(f"no digit data at {data}")
    from smartmeter.ocr import train

    with pytest.raises(SystemExit) as done:  # python -m smartmeter.ocr.train: exit status 0
        train.main(["--data", str(data), "--meters", "holdout", "--epochs", "1", "--limit-per-meter", "20",
                    "--fonts", "0", "--roll", "0", "--threads", "1", "--out-dir", str(tmp_path), "--reject", reject])
    assert done.value.code == 0
    assert (tmp_path / "digits-holdout.onnx").stat().st_size > 1000
    assert '"epochs": 1' in (tmp_path / "digits-holdout.json").read_text()
    from smartmeter.ocr.readers.cnn import CnnReader

    reader = CnnReader(tmp_path / "digits-holdout.onnx")
    assert reader.reject_class == (reject != "0") and reader.outputs == 100 + (reject != "0")
    assert len(reader.read_batch([np.full((40, 24, 3), 128, np.uint8)] * 2)) == 2
