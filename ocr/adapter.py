"""The per-meter adapter: a nearest-neighbour model of one installation's settled digits, on top of the CNN.

A home camera photographs the same meter for years; every digit of a validated photo is a labelled example of that
meter's typeface, camera and light. :class:`Examples` holds such crops (preprocessed exactly as the CNN sees them,
``ocr.digit_preprocess``) with their validated digit, at most ``per_digit`` per digit (the oldest go first).
:class:`Adapter` embeds each crop as its unit-length pixels plus the CNN's class probabilities (square roots,
so the embedding's two halves are both unit length), and answers a crop with the digit all of its ``K`` nearest
examples agree on, when the crop is at least as close to them as the examples are to each other (calibrated at
fit time: leave-one-out) and the CNN gives that digit some probability (``SUPPORT``); otherwise it abstains.
:class:`AdaptedReader` wraps the CNN reader: where the adapter answers and agrees with the CNN, the digit is read
as resting there with the adapter's confidence; where it contradicts a confident CNN, the digit becomes weak
(validation holds it); where the CNN is unsure or refuses the crop (not blank), the adapter's digit stands.
Elsewhere the CNN's answer stands.

Pure: numpy only (no database, no network, no torch). The server keeps the examples (``server/adapter.py``).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from smartmeter.ocr.digit_preprocess import is_blank, mass_near, preprocess_batch, softmax
from smartmeter.ocr.readers.base import DigitReader
from smartmeter.types import DigitValue

K = 5  # neighbours that must all agree
MIN_PER_DIGIT = 3  # a digit with fewer examples is never answered
CONFIDENCE = 0.97  # the confidence of an adapter answer
SETTLED = 0.3  # a read position this close to a whole digit is a resting drum
AGREES = 0.1  # an unsure CNN position this close to the adapter's digit agrees with it
TRUSTED_CNN = 0.9  # a CNN answer this confident is never replaced; one the adapter contradicts becomes weak
WEAK = 0.79  # below validation's default hold_confidence (0.8): the reading waits for its neighbours
# The adapter answers a digit only where the CNN gives it at least this probability mass (within half a step): its
# examples may lack the crop's true digit altogether (an LCD meter whose 1 has not been validated yet looks most like
# its 7s), and the CNN rules that answer out. On the held-out meters' resting crops the CNN was unsure of, the true
# digit always had at least 0.066; 98 % of the wrong digits had less than 0.05 (docs/adapter.md).
SUPPORT = 0.05
_Logits = Callable[[np.ndarray], np.ndarray]  # preprocessed batch -> CNN logits


def embed(batch: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """``N x 1 x H x W`` preprocessed crops and their CNN logits -> ``N x (H*W + classes)`` unit-half embedding."""
    pix = batch.reshape(len(batch), -1).astype(np.float32)
    pix = pix - pix.mean(axis=1, keepdims=True)
    pix /= np.maximum(np.linalg.norm(pix, axis=1, keepdims=True), 1e-6)
    prob = np.sqrt(np.clip(softmax(logits.astype(np.float64)), 0.0, 1.0)).astype(np.float32)
    return np.concatenate([pix, prob], axis=1) / np.sqrt(2.0)


def support(logits: np.ndarray, digits: Sequence[int | None]) -> np.ndarray:
    """The CNN's probability mass within half a step of each crop's digit (0 where the digit is None)."""
    p = softmax(logits.astype(np.float64))
    known = np.array([d is not None for d in digits], bool)
    centre = np.array([0 if d is None else d for d in digits], np.int64) * (p.shape[1] // 10)
    return np.where(known, mass_near(p, centre), 0.0)


def settled_digit(position: float | None) -> int | None:
    """The digit a drum read at ``position`` rests on, or None when it is between two."""
    if position is None:
        return None
    d = round(position) % 10
    return d if abs(position - round(position)) <= SETTLED else None


KEY_CHARS = 160  # the longest photo key kept with an example (longer ones are cut; they only need to tell apart)


@dataclass
class Examples:
    """Labelled crops of one meter (``N x H x W`` float16, preprocessed) with digits 0-9, oldest first, and the key
    of the photo each came from ("" when not known: examples stored before keys were)."""

    crops: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.float16))
    digits: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, f"<U{KEY_CHARS}"))

    def __post_init__(self) -> None:
        if len(self.keys) != len(self.digits):
            self.keys = np.full(len(self.digits), "", f"<U{KEY_CHARS}")

    def __len__(self) -> int:
        return len(self.digits)

    def add(self, crops: np.ndarray, digits: Sequence[int], per_digit: int, key: str = "") -> int:
        """Add preprocessed crops (``N x 1 x H x W`` or ``N x H x W``) of the photo ``key``; keep the newest
        ``per_digit`` of each digit. Returns how many were added."""
        if len(digits) == 0:
            return 0
        new = crops.reshape(len(digits), crops.shape[-2], crops.shape[-1]).astype(np.float16)
        lab = np.asarray(digits, np.int8)
        if lab.min() < 0 or lab.max() > 9:
            raise ValueError("digits must be 0-9")
        if len(self) and self.crops.shape[1:] != new.shape[1:]:
            raise ValueError(f"crop size {new.shape[1:]} differs from the stored {self.crops.shape[1:]}")
        crops_all = new if not len(self) else np.concatenate([self.crops, new])
        digits_all = lab if not len(self) else np.concatenate([self.digits, lab])
        keys_all = np.concatenate([self.keys, np.full(len(lab), key[:KEY_CHARS], f"<U{KEY_CHARS}")])
        keep = np.zeros(len(digits_all), bool)
        for d in range(10):
            idx = np.flatnonzero(digits_all == d)
            keep[idx[-per_digit:]] = True
        self.crops, self.digits, self.keys = crops_all[keep], digits_all[keep], keys_all[keep]
        return len(lab)

    def keep(self, mask: np.ndarray) -> int:
        """Keep only the examples where ``mask`` is true; returns how many went."""
        gone = int(len(self) - np.count_nonzero(mask))
        self.crops, self.digits, self.keys = self.crops[mask], self.digits[mask], self.keys[mask]
        return gone

    def forget(self, keys: Sequence[str]) -> int:
        """Drop the examples of these photos (their reading was withdrawn or corrected); returns how many went."""
        if not len(self) or not keys:
            return 0
        return self.keep(~np.isin(self.keys, [k[:KEY_CHARS] for k in keys]))

    def counts(self) -> list[int]:
        return [int(np.sum(self.digits == d)) for d in range(10)]

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez_compressed(buf, crops=self.crops, digits=self.digits, keys=self.keys)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Examples:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            crops, digits = z["crops"], z["digits"]
            keys = z["keys"] if "keys" in z.files else np.full(len(digits), "", f"<U{KEY_CHARS}")
        if crops.ndim != 3 or digits.ndim != 1 or len(crops) != len(digits) or len(keys) != len(digits):
            raise ValueError("not an adapter example file")
        return cls(crops.astype(np.float16), digits.astype(np.int8), keys.astype(f"<U{KEY_CHARS}"))


class Adapter:
    """Nearest-neighbour answers from one meter's examples, embedded with the CNN (``logits``: batch -> logits)."""

    def __init__(self, examples: Examples, logits_of: _Logits) -> None:
        self.counts = examples.counts()
        self.size = len(examples)
        self.digits = examples.digits.astype(np.int64)
        if self.size:
            batch = examples.crops.astype(np.float32)[:, None]
            self.emb = embed(batch, logits_of(batch))
            sim = self.emb @ self.emb.T
            np.fill_diagonal(sim, -np.inf)
            # calibration: how close an example is to its K-th nearest example of the same digit
            same = np.where(self.digits[None, :] == self.digits[:, None], sim, -np.inf)
            kth = np.sort(same, axis=1)[:, -K] if self.size > K else np.full(self.size, np.inf)
            finite = kth[np.isfinite(kth)]
            self.threshold = float(np.quantile(finite, 0.05)) if len(finite) else np.inf
            pairs = same[np.isfinite(same)]  # how alike two crops of one digit are, at the least
            self.same_floor = float(np.quantile(pairs, 0.05)) if len(pairs) else np.inf
        else:
            self.emb = np.zeros((0, 1), np.float32)
            self.threshold = self.same_floor = np.inf

    def contradicted(self, emb: np.ndarray, digits: Sequence[int]) -> np.ndarray:
        """Mask of the examples that look like one of the embedded crops (as alike as two crops of one digit of
        this meter are) but carry another digit than it: wrong labels, dropped when a person labels those crops."""
        bad = np.zeros(self.size, bool)
        if not self.size or not len(emb):
            return bad
        sim = emb @ self.emb.T
        limit = self.same_floor if np.isfinite(self.same_floor) else 0.9
        for row, d in zip(sim, digits, strict=True):
            bad |= (row >= limit) & (self.digits != d)
        return bad

    def answer(self, emb: np.ndarray) -> list[int | None]:
        """The digit each embedded crop rests on, or None (abstain)."""
        if self.size < K or not np.isfinite(self.threshold):
            return [None] * len(emb)
        sim = emb @ self.emb.T
        top = np.argpartition(-sim, K - 1, axis=1)[:, :K]
        out: list[int | None] = []
        for row, idx in zip(sim, top, strict=True):
            labels = self.digits[idx]
            d = int(labels[0])
            ok = (labels == d).all() and row[idx].min() >= self.threshold and self.counts[d] >= MIN_PER_DIGIT
            out.append(d if ok else None)
        return out


class AdaptedReader(DigitReader):
    """The CNN reader with a meter's adapter; ``version`` names both (stored with every reading)."""

    def __init__(self, inner: DigitReader, adapter: Adapter, adapter_version: str) -> None:
        self.inner, self.adapter, self.adapter_version = inner, adapter, adapter_version
        self.name = inner.name
        self.height, self.width = int(inner.height), int(inner.width)  # type: ignore[attr-defined]
        self.answered = 0  # crops the adapter answered (read or corrected)

    @property
    def version(self) -> str:  # type: ignore[override]
        return f"{self.inner.version}+{self.adapter_version}"

    def read_batch(self, crops: Sequence[np.ndarray]) -> list[DigitValue]:
        if len(crops) == 0:
            return []
        read_plain = getattr(self.inner, "read_plain", None)  # the CNN reader hands back its plain view's output
        if read_plain is not None:
            cnn, batch, logits = read_plain(crops)  # the CNN's own answer, its refusals included
        else:
            cnn = self.inner.read_batch(crops)
            batch = preprocess_batch(crops, self.height, self.width)
            logits = self.inner.logits(batch)  # type: ignore[attr-defined]
        answers = self.adapter.answer(embed(batch, logits))
        mass = support(logits, answers)
        answers = [a if a is not None and m >= SUPPORT else None for a, m in zip(answers, mass, strict=True)]
        blank = is_blank(batch)
        return [DigitValue(None, 0.0) if b else self._combine(d, a)
                for d, a, b in zip(cnn, answers, blank, strict=True)]

    def _combine(self, d: DigitValue, a: int | None) -> DigitValue:
        """Agreeing: the resting digit, confident. A confident CNN is kept (weakened when contradicted); an
        unsure or refusing one gives way to the adapter."""
        v, c = d.value, d.confidence
        if a is None:
            return d
        if v is None:
            self.answered += 1
            return DigitValue(float(a), CONFIDENCE)
        if settled_digit(v) == a:
            if c < TRUSTED_CNN and abs(v - round(v)) > AGREES:  # round(v) is a's position (settled_digit)
                return d  # an unsure CNN between two digits: the adapter's resting digit confirms nothing
            self.answered += 1
            return DigitValue(float(a), max(CONFIDENCE, c))
        if c >= TRUSTED_CNN:
            return DigitValue(v, min(c, WEAK))
        self.answered += 1
        return DigitValue(float(a), CONFIDENCE)
