"""The default digit reader: a small CNN (``ocr/models/digits.onnx``) run with onnxruntime.

Two models ship with the same network and recipe: :data:`DEFAULT_MODEL` (``digits.onnx``, trained on every meter
of the data set: the production reader, since users' meters are new to it anyway) and :data:`HOLDOUT_MODEL`
(``digits-holdout.onnx``, trained without ``smartmeter.ocr.digit_data.HELD_OUT_METERS``). Use the holdout model wherever
accuracy is measured on crops from those meters (benchmarks, tests, the simulator's rendered meters): the default
model has seen them, so its numbers there would flatter it.

Preprocessing and decoding are ``ocr.digit_preprocess``, the very code the model was trained with. A crop with no
contrast at all reads as ``None`` (unreadable). So does a crop the reader refuses ("not a digit / cannot tell"):
the entropy of the model's 100-way output above :data:`REJECT_ENTROPY` (see ``docs/model.md``: blank drums, frame
edges, glare, print, a box between two drums spread the output wide or over two modes), and, for a model trained
with the reject class (a 101st output, "not a digit"), that class's probability above :data:`REJECT_CLASS`; a
refused crop keeps its confidence, and its probability of each digit (``DigitValue.digit_mass``: validation may
still choose by it between the few values a photo's neighbours allow).
Every other crop gets a drum position and a confidence (the model's probability mass within half a step of its
peak), and callers decide what confidence they trust.

Each crop is read in :data:`VIEWS` views (as cut, and with a thin strip cut off each side in turn: where a box sits
on the drum window varies by a few pixels from photo to photo) and the model's probabilities are averaged over them.
A digit of a meter the model never saw reads more surely and less often wrong that way: the views' errors are not
the same. ``views=1`` reads the crop as cut (the reader before; its version lacks the ``+views`` suffix), with
its own reject level (:data:`REJECT_ENTROPY_PLAIN`). Measured on the held-out meters (bench/digit_reject.py).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from smartmeter.errors import ConfigError
from smartmeter.ocr.digit_preprocess import (
    CLASSES,
    decode,
    digit_mass,
    entropy,
    is_blank,
    preprocess_batch,
    softmax,
    to_grey,
)
from smartmeter.ocr.readers.base import DigitReader, ReaderUnavailable
from smartmeter.types import DigitValue

log = logging.getLogger(__name__)

MODELS = Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODEL = MODELS / "digits.onnx"  # trained on all meters
HOLDOUT_MODEL = MODELS / "digits-holdout.onnx"  # never saw the held-out meters: honest accuracy on them
CHUNK = 4096  # crops per onnxruntime call: bounds memory for huge batches
# The views: (left, right, top, bottom) shares of the crop cut off. Averaging them narrows a known digit's output
# and leaves a crop that is not one digit spread (a box between two drums stays two half digits in every view).
VIEWS: tuple[tuple[float, float, float, float], ...] = (
    (0.0, 0.0, 0.0, 0.0), (0.05, 0.0, 0.0, 0.0), (0.0, 0.05, 0.0, 0.0), (0.0, 0.0, 0.04, 0.0), (0.0, 0.0, 0.0, 0.04))
# nats; above: refused. Calibrated on the held-out meters' digit crops against the cut non-digit crops
# (bench/digit_reject.py): the views' average is narrower, so its level is higher than one view's.
REJECT_ENTROPY = 2.2
REJECT_ENTROPY_PLAIN = 2.0  # the level for one view (views=1)
# A model trained with the reject class (a 101st output, "not a digit": ``ocr.digit_negatives``) also refuses a
# crop whose probability of that class is above this (``docs/model.md``, "Round 5": trained, not shipped).
REJECT_CLASS = 0.5


class ModelError(ReaderUnavailable, ConfigError):
    """The digit model is missing, corrupt or not loadable: the reader cannot start (exit 69)."""


def load_metadata(model_path: Path) -> dict[str, Any]:
    """Read and check ``<model>.json`` (version, input size, checksum of the model file)."""
    meta_path = model_path.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text())
        height, width = int(meta["input"]["height"]), int(meta["input"]["width"])
        classes = int(meta["output"]["classes"])
        reject_class = bool(meta["output"].get("reject_class", False))
        version = str(meta["version"])
    except FileNotFoundError as exc:
        raise ModelError(f"digit model metadata {meta_path} is missing") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"digit model metadata {meta_path} is unreadable: {exc}") from exc
    if classes != CLASSES or not (8 <= height <= 256 and 8 <= width <= 256):
        raise ModelError(f"digit model metadata {meta_path}: unsupported shape {height}x{width}, {classes} classes")
    return {**meta, "version": version, "height": height, "width": width, "reject_class": reject_class}


def cut_view(crop: np.ndarray, view: tuple[float, float, float, float]) -> np.ndarray:
    """``crop`` with the view's shares cut off its left, right, top and bottom (module docstring)."""
    left, right, top, bottom = view
    h, w = crop.shape[:2]
    return crop[round(top * h):h - round(bottom * h), round(left * w):w - round(right * w)]


class CnnReader(DigitReader):
    """Reads digit crops with the ONNX digit model; ``threads`` = onnxruntime intra-op threads; ``reject``: refuse
    (value ``None``) a crop whose output entropy is above the reject level; ``views``: 1 reads each crop as cut,
    ``len(VIEWS)`` (the default) averages the model over the views (module docstring)."""

    name = "cnn"

    def __init__(self, model_path: Path | None = None, threads: int = 1, reject: bool = True,
                 views: int = len(VIEWS)) -> None:
        if views not in (1, len(VIEWS)):  # the reject level is calibrated for these two
            raise ConfigError(f"views must be 1 or {len(VIEWS)}, not {views}")
        self.reject = reject
        self.views = VIEWS[:views]
        self.reject_entropy = REJECT_ENTROPY if views > 1 else REJECT_ENTROPY_PLAIN
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - the ocr extra is installed wherever OCR runs
            raise ModelError("onnxruntime is not installed", hint="pip install smartmeter[ocr]") from exc
        self.model_path = Path(model_path) if model_path is not None else DEFAULT_MODEL
        if not self.model_path.is_file():
            raise ModelError(f"digit model {self.model_path} is missing")
        meta = load_metadata(self.model_path)
        blob = self.model_path.read_bytes()
        expected = meta.get("sha256")
        if expected and hashlib.sha256(blob).hexdigest() != expected:
            raise ModelError(f"digit model {self.model_path} does not match the checksum in its metadata",
                              hint="the file is corrupt or belongs to another model version")
        self.model_version = meta["version"]
        self.height, self.width = meta["height"], meta["width"]
        self.reject_class = bool(meta["reject_class"])  # the model's last output is "not a digit"
        self.outputs = CLASSES + int(self.reject_class)
        self.version = self._describe()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad models
            raise ModelError(f"digit model {self.model_path} cannot be loaded: {exc}") from exc
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or list(inputs[0].shape[1:]) != [1, self.height, self.width]:
            raise ModelError(f"digit model {self.model_path} expects input {inputs[0].shape if inputs else None}, "
                              f"metadata says 1x{self.height}x{self.width}")
        width = outputs[0].shape[1] if outputs and len(outputs[0].shape) == 2 else None
        if isinstance(width, int) and width != self.outputs:
            raise ModelError(f"digit model {self.model_path} outputs {width} classes, metadata says {self.outputs}")
        self._input, self._output = inputs[0].name, outputs[0].name
        log.debug("loaded digit model %s (%s), %d thread(s)", self.model_path, self.version, threads)

    def searching(self) -> CnnReader:
        """This reader with one view (sharing the loaded model): auto-locate tries many candidate boxes, and there
        the views made the search 1.5 times slower without reading more (docs/autolocate.md)."""
        if len(self.views) == 1:
            return self
        fast = copy.copy(self)
        fast.views, fast.reject_entropy = VIEWS[:1], REJECT_ENTROPY_PLAIN
        fast.version = fast._describe()
        return fast

    def _describe(self) -> str:
        """What gives the readings (stored with each): the model, its views and its reject level."""
        return (self.model_version + (f"+views{len(self.views)}" if len(self.views) > 1 else "")
                + (f"+reject{self.reject_entropy:g}" if self.reject else "")
                + (f"+not{REJECT_CLASS:g}" if self.reject and self.reject_class else ""))

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """The model's position logits for preprocessed input (``N x 1 x H x W`` float32) → ``N x 100`` (a reject
        class, where the model has one, left out: their softmax is the position distribution given a digit)."""
        return self.raw(batch)[:, :CLASSES]

    def raw(self, batch: np.ndarray) -> np.ndarray:
        """The model's whole output → ``N x 100``, or ``N x 101`` with the reject class last."""
        outs = [self._session.run([self._output], {self._input: batch[i:i + CHUNK]})[0]
                for i in range(0, len(batch), CHUNK)]
        return np.concatenate(outs) if outs else np.zeros((0, self.outputs), np.float32)

    def read_batch(self, crops: Sequence[np.ndarray]) -> list[DigitValue]:
        return self.read_plain(crops)[0]

    def read_plain(self, crops: Sequence[np.ndarray]) -> tuple[list[DigitValue], np.ndarray, np.ndarray]:
        """The readings, and the plain view's model input and raw output (``N x 1 x H x W``, ``N x 100``): the
        per-meter adapter embeds those, so it need not run the model on the plain view a second time."""
        if len(crops) == 0:
            return [], np.zeros((0, 1, self.height, self.width), np.float32), np.zeros((0, CLASSES), np.float32)
        if len(self.views) == 1:
            batch = preprocess_batch(crops, self.height, self.width)
            raw = self.raw(batch)
            prob = softmax(raw.astype(np.float64))
        else:  # every view of every crop in one model call: grey once, cut, resized
            greys = [to_grey(c) for c in crops]
            views = preprocess_batch([cut_view(g, v) for v in self.views for g in greys], self.height, self.width)
            batch = views[:len(crops)]
            raw = self.raw(views)
            prob = softmax(raw.astype(np.float64)).reshape(len(self.views), len(crops), -1).mean(axis=0)
        plain = raw[:len(crops), :CLASSES]
        positions = prob[:, :CLASSES]
        positions = positions / positions.sum(axis=1, keepdims=True)  # given a digit: without the reject class
        logits = np.log(np.maximum(positions, 1e-12))
        value, conf = decode(logits)
        blank = is_blank(batch)
        refused = np.zeros(len(blank), bool)
        if self.reject:
            refused = entropy(logits) > self.reject_entropy
            if self.reject_class:
                refused |= prob[:, CLASSES] > REJECT_CLASS
        mass = digit_mass(positions)  # what a refused crop still tells
        return [DigitValue(None, 0.0) if b
                else DigitValue(None, round(float(c), 4), tuple(round(float(x), 4) for x in m)) if r
                else DigitValue(round(float(v), 3) % 10.0, round(float(c), 4))
                for v, c, b, r, m in zip(value, conf, blank, refused, mass, strict=True)], batch, plain
