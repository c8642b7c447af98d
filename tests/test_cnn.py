"""The CNN digit reader: accuracy on held-out meters, batching, odd inputs, broken model files.

The test crops come from the held-out meters, which the production model (``digits.onnx``) trained on, so every
accuracy test reads with the holdout model (``digits-holdout.onnx``), which never saw them.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

from smartmeter.errors import ConfigError, ImageError
from smartmeter.ocr.digit_data import HELD_OUT_METERS
from smartmeter.ocr.digit_preprocess import circular_error, decode, preprocess_batch, soft_targets
from smartmeter.ocr.readers import get_reader
from smartmeter.ocr.readers.base import CheckedReader, DigitReader, ReaderFault
from smartmeter.ocr.readers.cnn import (
    DEFAULT_MODEL,
    HOLDOUT_MODEL,
    REJECT_ENTROPY,
    REJECT_ENTROPY_PLAIN,
    VIEWS,
    CnnReader,
)
from smartmeter.types import DigitValue

DIGITS = Path(__file__).parent / "resources" / "digits"


@pytest.fixture(scope="module")
def reader() -> CnnReader:
    """The network's own reading of every crop (no reject decision): what accuracy and batching are about."""
    return CnnReader(HOLDOUT_MODEL, reject=False)


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
    model_version = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())["version"]
    # the views and the reject decide readings too
    assert r.version == f"{model_version}+views{len(VIEWS)}+reject{REJECT_ENTROPY:g}"
    assert CnnReader(reject=False, views=1).version == model_version
    assert CnnReader(views=1).version == f"{model_version}+reject{REJECT_ENTROPY_PLAIN:g}"
    assert r.searching().version == CnnReader(views=1).version  # auto-locate's search: one view
    with pytest.raises(ConfigError, match="views"):
        CnnReader(views=3)
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
    assert r.version.split("+")[0] == hold["version"] and r.version != get_reader("cnn").version


def test_views_answer_more_digits_of_unseen_meters_and_no_fewer_right(sample: Sample) -> None:
    """Averaged over the views a crop of a meter the model never saw is answered more often than read once, and
    what is answered is at least as often right; the search reader (one view) reads as the one-view reader."""
    crops, labels, _ = sample
    one, five = CnnReader(HOLDOUT_MODEL, views=1), CnnReader(HOLDOUT_MODEL)
    scores = []
    for r in (one, five):
        got = r.read_batch(crops)
        answered = np.array([g.value is not None for g in got])
        values = np.array([np.nan if g.value is None else g.value for g in got])
        right = np.nan_to_num(circular_error(values, labels), nan=99.0) <= 0.5 + 1e-6
        scores.append((answered.mean(), right[answered].mean()))
    assert scores[1][0] > scores[0][0] and scores[1][1] >= scores[0][1] - 1e-9, scores
    assert five.searching().read_batch(crops[:20]) == one.read_batch(crops[:20])


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


def _not_digits(crops: list[np.ndarray], seed: int = 3) -> dict[str, list[np.ndarray]]:
    """Crops that are not one settled digit, cut from real ones: a box between two drums (each half from another
    drum, the dark gap between them in the middle), a frame edge over half the crop, glare over the digit, a
    blank drum (its background with a little shading and noise)."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {"between": [], "edge": [], "glare": [], "blank": []}
    for _ in range(120):
        a, b = (crops[int(i)] for i in rng.integers(0, len(crops), 2))
        h, w = a.shape[:2]
        b = cv2.resize(b, (w, h))
        gap = np.full((h, max(1, w // 5), 3), int(np.percentile(a, 10)), np.uint8)
        out["between"].append(cv2.resize(np.concatenate([a[:, w // 2:], gap, b[:, : w - w // 2]], axis=1), (w, h)))
        edge = a.copy()
        edge[:, : int(w * rng.uniform(0.45, 0.6))] = int(rng.integers(0, 50))
        out["edge"].append(edge)
        yy, xx = np.mgrid[0:h, 0:w]
        spot = np.exp(-((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (2 * (0.25 * h) ** 2))
        out["glare"].append(np.clip(a.astype(np.float32) + 380 * spot[..., None], 0, 255).astype(np.uint8))
        level = np.median(np.concatenate([a[0], a[-1]]), axis=0)
        shade = np.linspace(-20, 20, h)[:, None, None]
        out["blank"].append(np.clip(level + shade + rng.normal(0, 4, a.shape), 0, 255).astype(np.uint8))
    return out


def test_reject_refuses_what_is_not_a_digit(reader: CnnReader, sample: Sample) -> None:
    """With the reject decision a crop that is not one settled digit reads as None (it used to get a value, most
    of them at confidence >= 0.5); real digits of meters the model never saw are still answered, and the answered
    ones are right. The confidence is kept."""
    crops, labels, _ = sample
    rejecting = CnnReader(HOLDOUT_MODEL)
    got = rejecting.read_batch(crops)
    answered = np.array([g.value is not None for g in got])
    values = np.array([np.nan if g.value is None else g.value for g in got])
    right = np.nan_to_num(circular_error(values, labels), nan=99.0) <= 0.5 + 1e-6
    assert answered.mean() >= 0.9 and right[answered].mean() >= 0.995
    plain = reader.read_batch(crops)
    for g, p in zip(got, plain, strict=True):  # the reject only refuses: what it answers is the plain reading
        assert g.confidence == p.confidence and (g.value is None or g.value == p.value)
    refused, before = [], []
    for kind, bad in _not_digits(crops).items():
        refused.append(np.mean([g.value is None for g in rejecting.read_batch(bad)]))
        before.append(np.mean([p.value is None or p.confidence < 0.5 for p in reader.read_batch(bad)]))
        # a frame edge over half the crop leaves half a digit the network often still reads: the weakest kind (the
        # views answer more real digits at the price of a few of these: bench/digit_reject.py)
        assert refused[-1] >= (0.55 if kind == "edge" else 0.75), (kind, refused[-1])
    assert np.mean(refused) >= np.mean(before) + 0.2  # at the default floor (0.5) most passed
    assert REJECT_ENTROPY > 1.5  # a settled digit's output is about as spread as its training target (~1.42)


@pytest.mark.xfail(strict=True, reason="a rolling drum the hold-out model misreads in every view "
                                       "(tests/resources/digits_misread/README.md): not fixed yet")
def test_known_misreads_of_a_rolling_drum() -> None:
    root = Path(__file__).parent / "resources" / "digits_misread" / "powermeter-emeter1"
    crops = sorted(root.glob("*.jpg"))
    assert len(crops) == 2
    reader = CnnReader(HOLDOUT_MODEL)
    for path in crops:
        got = reader.read(cv2.imread(str(path)))
        label = float(path.name.split("_")[0])
        assert got.value is None or circular_error(np.array([got.value]), np.array([label]))[0] <= 0.5, (path, got)


@pytest.mark.parametrize("views", [1, 5])
def test_read_plain_hands_back_the_plain_views_input_and_output(sample: Sample, views: int) -> None:
    """What the per-meter adapter embeds (ocr/adapter.py): the plain view's model input and raw output, from the
    same model call as the readings, equal to preprocessing and running the model on the crops once more."""
    crops = sample[0][:40]
    r = CnnReader(HOLDOUT_MODEL, views=views)
    got, batch, plain = r.read_plain(crops)
    assert got == r.read_batch(crops)
    again = preprocess_batch(crops, r.height, r.width)
    assert np.array_equal(batch, again) and np.allclose(plain, r.logits(again), atol=1e-5)
    assert [len(x) for x in r.read_plain([])] == [0, 0, 0]


REJECT_MODELS = Path(__file__).parent / "resources" / "reject_class"


@pytest.mark.parametrize("views", [1, 5])
def test_a_model_with_a_reject_class_refuses_what_it_calls_not_a_digit(views: int) -> None:
    """A model trained with the reject class (``smartmeter ocr train --reject``) has a 101st output, "not a
    digit": above ``REJECT_CLASS`` the crop is refused (its position confidence kept), the reader's version says
    so, and the adapter still gets the 100 position logits. The two test models give every crop the same output:
    position 3.0, the reject class certain or impossible (tests/resources/reject_class)."""
    from smartmeter.ocr.readers.cnn import REJECT_CLASS

    crops = [np.random.default_rng(i).integers(0, 256, (40, 24, 3)).astype(np.uint8) for i in range(3)]
    never = CnnReader(REJECT_MODELS / "never.onnx", views=views)
    always = CnnReader(REJECT_MODELS / "always.onnx", views=views)
    assert never.reject_class and never.outputs == 101
    assert [v.value for v in never.read_batch(crops)] == [3.0] * 3
    refused = always.read_batch(crops)
    assert [v.value for v in refused] == [None] * 3 and all(v.confidence > 0.99 for v in refused)
    assert [v.value for v in CnnReader(REJECT_MODELS / "always.onnx", reject=False, views=views).read_batch(crops)] \
        == [3.0] * 3  # the reject turned off: the position alone
    assert always.version.endswith(f"+not{REJECT_CLASS:g}") and "+not" not in CnnReader(HOLDOUT_MODEL).version
    _, batch, plain = always.read_plain(crops)
    assert plain.shape == (3, 100) and always.logits(batch).shape == (3, 100)


def test_a_model_whose_outputs_do_not_match_its_metadata_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    shutil.copy(REJECT_MODELS / "never.onnx", model)
    meta = json.loads((REJECT_MODELS / "never.json").read_text())
    meta["output"]["reject_class"] = False  # 101 outputs, metadata says 100
    model.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="outputs 101 classes"):
        CnnReader(model)


def test_a_refused_crop_says_how_likely_each_digit_is(sample: Sample) -> None:
    """A crop the reader refuses (two half digits, spread over positions) still carries its probability of each
    digit (``DigitValue.digit_mass``, for validation to choose between the values a photo's neighbours allow);
    answered crops carry none. The mass lies on the drum's own digit: of the label's digit and the digits either
    side, the label's holds the most; and the rule validation applies to it (``unread_drums.told_digit`` at the
    shipped levels) never names another digit than the label's."""
    from smartmeter.server.unread_drums import EVIDENCE_MASS, EVIDENCE_SHARE, told_digit

    crops, labels, _ = sample
    got = CnnReader(HOLDOUT_MODEL).read_batch(crops)
    refused = [(g, int(label)) for g, label in zip(got, labels, strict=True) if g.value is None and g.confidence > 0]
    assert len(refused) >= 3
    assert all(g.digit_mass is None for g in got if g.value is not None)
    for g, d in refused:
        assert g.digit_mass is not None and len(g.digit_mass) == 10 and abs(sum(g.digit_mass) - 1.0) < 2e-3
        near = {k: g.digit_mass[k % 10] for k in (d - 1, d, d + 1)}
        assert max(near, key=lambda k: near[k]) == d, (d, g.digit_mass)
        best, share, mass = told_digit(g.digit_mass, [k % 10 for k in near])
        assert best == d % 10 or share < EVIDENCE_SHARE or mass < EVIDENCE_MASS, (d, g.digit_mass)


class _Returns(DigitReader):
    def __init__(self, value: DigitValue) -> None:
        self.value = value

    def read_batch(self, crops: Sequence[np.ndarray]) -> list[DigitValue]:
        return [self.value for _ in crops]


@pytest.mark.parametrize("bad", [
    DigitValue(3.0, 0.9, (0.1,) * 10),  # a mass for a crop that was read
    DigitValue(None, 0.5, (0.5,) * 10),  # sums to 5
    DigitValue(None, 0.5, (float("nan"),) * 10),
    DigitValue(None, 0.5, (1.0,)),  # not ten digits
    DigitValue(None, 0.5, ("0.1",) * 10),  # type: ignore[arg-type]  # not numbers
])
def test_a_reader_returning_a_bad_digit_mass_is_a_reader_fault(bad: DigitValue) -> None:
    with pytest.raises(ReaderFault, match="digit mass"):
        CheckedReader(_Returns(bad)).read_batch([np.zeros((30, 20), np.uint8)])
    good = DigitValue(None, 0.5, (0.0, 0.9, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0))
    assert CheckedReader(_Returns(good)).read_batch([np.zeros((30, 20), np.uint8)]) == [good]
