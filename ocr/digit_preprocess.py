"""The digit model's input and output contract, shared by training (``ocr.train``) and the reader (``ocr.readers.cnn``).

Input: any crop (``HxW`` grey or ``HxWx3`` BGR / ``HxWx4`` BGRA, uint8 or other numeric type) becomes a
greyscale ``height x width`` float32 plane (plain resize, no aspect padding: the drum window is always taller than
wide and stretching it sideways does not move the drum), normalised per crop to zero mean and unit standard
deviation (measured on the central columns) and clipped to ``±CLIP``. Polarity (light digits on dark drums or the
reverse) is left alone: the model is trained with inverted copies and reads both.

Output: ``CLASSES`` = 100 logits, one per tenth of a drum step (class ``k`` = position ``k / 10``). The position is
decoded as the circular expectation over the classes within ``DECODE_RADIUS`` of the arg-max, so it is not
quantised to tenths; the confidence is the probability mass within ``CONFIDENCE_RADIUS`` classes of the peak
(an estimate of "within half a digit of the truth").

Nothing here imports torch: the reader needs only numpy and OpenCV.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import cv2
import numpy as np

from smartmeter.errors import ImageError

log = logging.getLogger(__name__)

HEIGHT = 32
WIDTH = 20
CLASSES = 100  # tenths of a drum step, 0.0 .. 9.9
CLIP = 4.0
BLANK_STD = 2.0  # floor of the normalising std (0..255 scale), so flat crops stay near zero
DECODE_RADIUS = 3
CONFIDENCE_RADIUS = 5


def to_grey(crop: np.ndarray) -> np.ndarray:
    """Return a 2-D uint8 grey image from a grey, BGR or BGRA crop of any numeric dtype."""
    a = np.asarray(crop)
    if a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3 and a.shape[0] and a.shape[1]:  # the common case
        return cv2.cvtColor(a if a.flags.c_contiguous else np.ascontiguousarray(a), cv2.COLOR_BGR2GRAY)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ImageError(f"a digit crop must be HxW, HxWx3 or HxWx4, got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageError(f"empty digit crop, shape {a.shape}")
    if a.dtype != np.uint8:
        if a.dtype == np.bool_:
            a = a.astype(np.uint8) * 255
        elif not np.issubdtype(a.dtype, np.number):
            raise ImageError(f"a digit crop must hold numbers, got dtype {a.dtype}")
        else:
            f = np.nan_to_num(a.astype(np.float32))
            top = 1.0 if np.issubdtype(a.dtype, np.floating) and f.max(initial=0.0) <= 1.0 else 255.0
            if np.issubdtype(a.dtype, np.integer) and f.max(initial=0.0) > 255:
                top = float(np.iinfo(a.dtype).max)
            a = np.clip(f * (255.0 / top), 0, 255).astype(np.uint8)
    if a.ndim == 3:
        code = cv2.COLOR_BGR2GRAY if a.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        a = cv2.cvtColor(np.ascontiguousarray(a), code)
    return a


def resize_grey(grey: np.ndarray, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """Plain resize to the model's input size (area averaging when shrinking, linear when enlarging)."""
    h, w = grey.shape
    interp = cv2.INTER_AREA if h >= height and w >= width else cv2.INTER_LINEAR
    return cv2.resize(grey, (width, height), interpolation=interp)


def preprocess_batch(crops: Sequence[np.ndarray], height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """Crops → float32 ``N x 1 x height x width`` model input (grey, resized, per-crop normalised)."""
    out = np.empty((len(crops), height, width), dtype=np.float32)
    for i, crop in enumerate(crops):
        out[i] = resize_grey(to_grey(crop), height, width)
    return normalise(out)[:, None, :, :]


def normalise(planes: np.ndarray) -> np.ndarray:
    """Per-plane zero mean, unit standard deviation, clipped to ±CLIP (in place on a float32 ``N x H x W`` array).

    Mean and deviation come from the central three fifths of the columns, so a dark frame or drum edge at the
    side of the crop does not set the contrast of the digit.
    """
    w = planes.shape[2]
    side = w // 5
    centre = planes[:, :, side:w - side].reshape(len(planes), -1)
    mean = centre.mean(axis=1)[:, None]
    std = centre.std(axis=1)[:, None]
    flat = planes.reshape(len(planes), -1)
    flat -= mean
    flat /= np.maximum(std, BLANK_STD)
    np.clip(flat, -CLIP, CLIP, out=flat)
    return planes


def is_blank(batch: np.ndarray) -> np.ndarray:
    """True for inputs (from :func:`preprocess_batch`) of flat crops (every pixel within 1 grey level of the mean)."""
    return np.asarray(np.abs(batch).reshape(len(batch), -1).max(axis=1) < 0.5)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def decode(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``N x CLASSES`` logits → (positions 0.0-9.99, confidences 0-1), both float arrays of length N."""
    p = softmax(logits.astype(np.float64))
    n, k = p.shape
    peak = p.argmax(axis=1)
    rows = np.arange(n)[:, None]
    offs = np.arange(-DECODE_RADIUS, DECODE_RADIUS + 1)
    w = p[rows, (peak[:, None] + offs) % k]
    shift = (w * offs).sum(axis=1) / np.maximum(w.sum(axis=1), 1e-12)
    value = np.mod((peak + shift) / (k / 10.0), 10.0)
    value = np.where(value >= 9.995, 0.0, value)  # keep 0.0 <= value < 10 after rounding
    return value, np.clip(mass_near(p, peak), 0.0, 1.0)


def mass_near(prob: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """``N x CLASSES`` probabilities -> each row's mass within ``CONFIDENCE_RADIUS`` classes (half a step) of its
    ``centre`` class, wrapping around the drum."""
    offs = np.arange(-CONFIDENCE_RADIUS, CONFIDENCE_RADIUS + 1)
    idx = (np.asarray(centre, dtype=np.int64)[:, None] + offs) % prob.shape[1]
    return np.asarray(prob[np.arange(len(prob))[:, None], idx].sum(axis=1))


def digit_mass(prob: np.ndarray) -> np.ndarray:
    """``N x CLASSES`` probabilities -> ``N x 10``: each row's mass on positions d.0-d.9 for each digit d (the
    probability that the drum shows d, or is on its way from d to the next digit)."""
    p = np.asarray(prob, dtype=np.float64)
    return np.asarray(p.reshape(len(p), 10, CLASSES // 10).sum(axis=2))


def entropy(logits: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each row's softmax over the ``CLASSES`` positions. A settled digit the model knows gives
    about the entropy of its training target (a Gaussian of one class: ~1.42); a crop that is not one digit
    (a box between two drums, a frame edge, glare, print, a blank drum) spreads the mass wider or over two modes."""
    p = softmax(logits.astype(np.float64))
    return np.asarray(-(p * np.log(np.maximum(p, 1e-12))).sum(axis=1))


def circular_error(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    """|pred - label| on the 10-step drum circle (so 9.9 vs 0.1 is 0.2)."""
    d = np.mod(np.asarray(pred, dtype=np.float64) - np.asarray(label, dtype=np.float64), 10.0)
    return np.minimum(d, 10.0 - d)


def soft_targets(labels: np.ndarray, sigma: float = 1.0, classes: int = CLASSES) -> np.ndarray:
    """Circular Gaussian soft labels over the classes (sigma in classes, wrapping 9.9 → 0.0), rows sum to 1."""
    centre = np.asarray(labels, dtype=np.float64) * (classes / 10.0)
    k = np.arange(classes)[None, :]
    d = np.abs(k - centre[:, None]) % classes
    d = np.minimum(d, classes - d)
    t = np.exp(-0.5 * (d / sigma) ** 2)
    return np.asarray(t / t.sum(axis=1, keepdims=True), dtype=np.float32)
