"""The CNN digit reader: accuracy on held-out meters, batching, odd inputs, broken model files.

The test crops come from the held-out meters, which the production model (``digits.onnx``) trained on, so every
accuracy test reads with the holdout model (``digits-holdout.onnx``), which never saw them.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from smartmeter.errors import ConfigError, ImageError
from smartmeter.ocr.digit_data import HELD_OUT_METERS
from smartmeter.ocr.digit_preprocess import circular_error, decode, preprocess_batch, soft_targets
from smartmeter.ocr.readers import get_reader
from smartmeter.ocr.readers.cnn import DEFAULT_MODEL, HOLDOUT_MODEL, CnnReader
from smartmeter.types import DigitValue

DIGITS = Path(__file__).parent / "resources" / "digits"


@pytest.fixture(scope="module")
def reader() -> CnnReader:
    return CnnReader(HOLDOUT_MODEL)


@pytest.fixture(scope="module")
def sample() -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    with (DIGITS / "labels.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    crops: list[np.ndarray] = []
    for r in rows:
        img = cv2.imread(str(DIGITS / r["path"]))
        assert img is not None, r["path"]
        crops.append(img)
    return crops, np.array([float(r["label"]) for r in rows]), [r["meter"] for r in rows]


def test_accuracy_on_held_out_meters(reader: CnnReader, sample: tuple[list[np.ndarray], np.ndarray, list[str]]) -> None:
    crops, labels, meters = sample
    assert len(crops) == 300
    held_out = set(json.loads(HOLDOUT_MODEL.with_suffix(".json").read_text())["held_out_meters"])
    assert set(meters) <= held_out  # the sample is from meters the model never trained on
    got = reader.read_batch(crops)
    values = np.array([np.nan if r.value is None else r.value for r in got])
    err = np.nan_to_num(circular_error(values, labels), nan=99.0)
    assert np.mean(err <= 0.5 + 1e-6) >= 0.96
    assert np.mean(err <= 0.2 + 1e-6) >= 0.95
    conf = np.array([r.confidence for r in got])
    assert conf[err <= 0.5].mean() > conf[err > 0.5].mean() if (err > 0.5).any() else conf.mean() > 0.9


def test_batch_equals_single(reader: CnnReader, sample: tuple[list[np.ndarray], np.ndarray, list[str]]) -> None:
    crops = sample[0][:40]
    batch = reader.read_batch(crops)
    for crop, b in zip(crops, batch, strict=True):
        one = reader.read(crop)
        assert one.value is not None and b.value is not None
        assert circular_error(np.array([one.value]), np.array([b.value]))[0] < 0.01
        assert abs(one.confidence - b.confidence) < 0.01


Sample = tuple[list[np.ndarray], np.ndarray, list[str]]


def test_values_and_confidences_in_range(reader: CnnReader, sample: Sample) -> None:
    for r in reader.read_batch(sample[0]):
        assert isinstance(r, DigitValue)
        assert r.value is not None and 0.0 <= r.value < 10.0
        assert 0.0 <= r.confidence <= 1.0


def test_odd_inputs(reader: CnnReader, sample: tuple[list[np.ndarray], np.ndarray, list[str]]) -> None:
    crops, labels, _ = sample
    i = int(np.argmin(np.abs(labels - 5.0)))  # a well-centred digit
    bgr = crops[i]
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    variants = {
        "grey": grey,
        "grey 3-D": grey[:, :, None],
        "bgra": cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA),
        "huge": cv2.resize(bgr, (bgr.shape[1] * 12, bgr.shape[0] * 12), interpolation=cv2.INTER_CUBIC),
        "float 0..1": bgr.astype(np.float32) / 255.0,
        "uint16": bgr.astype(np.uint16) * 257,
        "non-contiguous": np.ascontiguousarray(bgr[:, ::-1])[:, ::-1],
    }
    ref = reader.read(bgr)
    assert ref.value is not None
    for name, crop in variants.items():
        got = reader.read(crop)
        assert got.value is not None, name
        assert circular_error(np.array([got.value]), np.array([ref.value]))[0] <= 0.3, name
    tiny = reader.read_batch([cv2.resize(bgr, (3, 5)), np.full((1, 1), 200, np.uint8)])
    assert tiny[0].value is not None and 0.0 <= tiny[0].value < 10.0
    assert tiny[1] == DigitValue(None, 0.0)  # a flat crop shows nothing to read
    assert reader.read_batch([]) == []


def test_bad_crops_raise_image_error(reader: CnnReader) -> None:
    for bad in (np.zeros((0, 10), np.uint8), np.zeros((10, 10, 2), np.uint8), np.array(["a"])):
        with pytest.raises(ImageError):
            reader.read(bad)


def _copy_model(tmp_path: Path) -> Path:
    dst = tmp_path / "digits.onnx"
    shutil.copy(DEFAULT_MODEL, dst)
    shutil.copy(DEFAULT_MODEL.with_suffix(".json"), dst.with_suffix(".json"))
    return dst


def test_missing_or_corrupt_model_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        CnnReader(tmp_path / "nope.onnx")
    model = _copy_model(tmp_path)
    blob = bytearray(model.read_bytes())
    blob[len(blob) // 2: len(blob) // 2 + 64] = b"\xff" * 64
    model.write_bytes(bytes(blob))
    with pytest.raises(ConfigError, match="checksum"):
        CnnReader(model)
    # garbage with a matching checksum: onnxruntime itself must reject it
    meta = json.loads(model.with_suffix(".json").read_text())
    model.write_bytes(b"not an onnx model")
    meta.pop("sha256")
    model.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="cannot be loaded"):
        CnnReader(model)


def test_missing_or_bad_metadata_is_config_error(tmp_path: Path) -> None:
    model = _copy_model(tmp_path)
    model.with_suffix(".json").unlink()
    with pytest.raises(ConfigError, match="missing"):
        CnnReader(model)
    model.with_suffix(".json").write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable"):
        CnnReader(model)
    meta = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    meta["input"]["height"] = 40
    model.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="expects input"):
        CnnReader(model)


def test_get_reader_and_version() -> None:
    r = get_reader("cnn", threads=2)
    assert r.name == "cnn"
    assert r.version == json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())["version"]
    assert DEFAULT_MODEL.stat().st_size < 1_000_000


def test_production_and_holdout_models_say_what_they_saw() -> None:
    prod = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    hold = json.loads(HOLDOUT_MODEL.with_suffix(".json").read_text())
    assert prod["trained_on"] == "all meters" and prod["held_out_meters"] == []
    assert set(hold["held_out_meters"]) == set(HELD_OUT_METERS)
    assert set(HELD_OUT_METERS) <= set(prod["accuracy_train_meters"])  # it did see them
    assert not set(HELD_OUT_METERS) & set(hold["accuracy_train_meters"])  # this one did not
    est = prod["unseen_meter_estimate"]  # the production model points to the holdout model's honest numbers
    assert est["model"] == HOLDOUT_MODEL.name and est["version"] == hold["version"]
    assert est["accuracy_held_out"] == hold["accuracy_held_out"]
    assert hold["epochs"] == prod["epochs"] and hold["augment"] == prod["augment"]  # one recipe
    r = CnnReader(HOLDOUT_MODEL)
    assert r.version == hold["version"] != get_reader("cnn").version


def test_decode_is_circular() -> None:
    # a peak straddling 9.9 and 0.0 decodes near 9.95, not near 5
    logits = np.log(soft_targets(np.array([9.95, 0.02, 3.0]), sigma=1.0) + 1e-9)
    value, conf = decode(logits)
    err = circular_error(value, np.array([9.95, 0.02, 3.0]))
    assert err.max() < 0.03 and (conf > 0.9).all()
    assert (value >= 0).all() and (value < 10).all()


def test_preprocess_shape_and_normalisation() -> None:
    crops = [np.random.default_rng(1).integers(0, 255, (50, 30, 3), dtype=np.uint8), np.zeros((7, 4), np.uint8)]
    x = preprocess_batch(crops)
    assert x.shape == (2, 1, 32, 20) and x.dtype == np.float32
    centre = x[0, 0, :, 4:16]  # statistics come from the central three fifths of the columns
    assert abs(float(centre.mean())) < 1e-4 and abs(float(centre.std()) - 1.0) < 0.05
    assert abs(float(x[0].mean())) < 0.2
    assert not x[1].any()
