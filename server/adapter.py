"""Per-meter adapters on the server: which digit crops are kept, where, and the reader that uses them.

After each page the worker calls :meth:`MeterAdapters.learn` with the validator's decisions: every digit of a
published photo whose read position rests on the validated digit becomes an example of that meter
(``ocr.adapter.Examples``); a person's confirmed reading (``smartmeter meter confirm``) labels every digit of its
photo; so does a photo between two published ones of the same value (every drum but the last), and a photo the
reader refused whose unread drums validation told (``told_labels``). Each example keeps
the key of its photo: when validation later withdraws or corrects that photo's reading, its crops are forgotten
(they taught the wrong digits). The examples live with the meter in the database (table ``meter_adapters``,
migration 005: version, count, size and the crops as one compressed ``.npz``; at most ``adapter.max_examples`` per
meter, the newest of each digit). Every change makes a
new version; readings record the reader version that produced them (``<model>+adapt<N>``), so ``smartmeter
reprocess`` and the audit trail can tell them apart. ``reset`` removes the examples: the meter is read by the
shipped model alone again. See docs/adapter.md.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from smartmeter.ocr.adapter import AdaptedReader, Adapter, Examples, embed, settled_digit
from smartmeter.ocr.digit_preprocess import preprocess_batch
from smartmeter.ocr.readers.base import DigitReader
from smartmeter.server.database import Database, now_ms
from smartmeter.server.frames import Action, Decision, Rules, drum_text
from smartmeter.settings import Settings
from smartmeter.types import DigitValue, OcrResult

log = logging.getLogger(__name__)

REFRESH_EVERY = 8  # once every digit is full, one published photo in this many still adds its crops
SHIFTS = ((1, 0), (-1, 0), (0, 1), (0, -1))  # copies of a confirmed crop, shifted by a pixel (camera jitter)


def digit_labels(reading: str | None, value: float, digits: Sequence[DigitValue], trusted: bool = False
                 ) -> list[int | None]:
    """The validated digit of each drum of a photo read as ``reading`` and validated as ``value``; None where the
    drum is not known to rest on it (read elsewhere, or between two numbers). ``trusted``: a person read it."""
    if not reading:
        return [None] * len(digits)
    shown = [c for c in reading if c.isdigit()]
    decimals = len(reading.rsplit(".", 1)[1]) if "." in reading else 0
    text = drum_text(value, len(shown), decimals)
    if len(text) != len(shown):
        return [None] * len(digits)
    out: list[int | None] = []
    for c, d in zip(text, digits, strict=False):
        label = int(c)
        out.append(label if trusted or settled_digit(d.value) == label else None)
    return out + [None] * (len(digits) - len(out))


def pinned_values(read: Sequence[tuple[Any, OcrResult]], published: Mapping[str, float | None]
                  ) -> dict[str, tuple[str, float]]:
    """Photos of the page not published whose nearest published photos before and after (same meter) show the
    same value: (that reading's text, value)."""
    out: dict[str, tuple[str, float]] = {}
    by_meter: dict[str, list[tuple[Any, OcrResult]]] = {}
    for it, res in read:
        by_meter.setdefault(it.meter, []).append((it, res))
    for rows in by_meter.values():
        rows.sort(key=lambda p: (p[0].ts, p[0].ref.key))
        last: tuple[str, float] | None = None
        waiting: list[str] = []
        for it, res in rows:
            value = published.get(it.ref.key)
            if value is None:
                waiting.append(it.ref.key)
                continue
            if last is not None and abs(last[1] - value) < 1e-9 and res.reading:
                out.update({k: (res.reading, value) for k in waiting})
            last, waiting = (res.reading or "", value), []
    return out


def told_labels(value: float, digits: Sequence[DigitValue], decimals: int, hold: float) -> list[int | None]:
    """The labels of a photo the reader refused but validation published from its neighbours (``unread_drums``:
    its unread drums told by the readings around it): the drums read, where they rest on the value's digit; the
    unread ones (no value, or below ``hold``), where the drum to their right was read below 9 (so they were not
    carried along half-way); never the last drum. An LCD's hundreds turned to a '1' the model cannot read is
    learnt so."""
    text = drum_text(value, len(digits), decimals)
    if len(text) != len(digits):
        return [None] * len(digits)
    out: list[int | None] = []
    for i, (c, d) in enumerate(zip(text, digits, strict=True)):
        label = int(c)
        if i == len(digits) - 1:
            # never the last drum: validation may have taken the upper of two readings (frames.just_below), and a
            # drum at 7.9 labelled 8 taught the adapter rolling crops as resting digits (emeter1 seeds 27 and 35:
            # a tenths drum at 3.8 then read as a resting 6, stored two steps high)
            out.append(None)
            continue
        if d.value is not None and d.confidence >= hold:
            out.append(label if settled_digit(d.value) == label else None)
            continue
        right = digits[i + 1] if i + 1 < len(digits) else None
        still = right is not None and right.value is not None and right.confidence >= hold and right.value < 9.0
        out.append(label if still else None)
    return out


def pinned_labels(pin: tuple[str, float], digits: Sequence[DigitValue]) -> list[int | None]:
    """Every drum but the last rests on the pinned value's digit; the last only where it was read resting there."""
    reading, value = pin
    labels = digit_labels(reading, value, [DigitValue(float(i), 1.0) for i in range(len(digits))], trusted=True)
    if labels and labels[-1] is not None and settled_digit(digits[-1].value) != labels[-1]:
        labels[-1] = None
    return labels


KNOWN_PER_DIGIT = 5  # examples of each digit before the reader is taken to know the meter's typeface


class MeterAdapters:
    """Each meter's examples and fitted adapter; ``reader`` wraps the CNN with the meter's current adapter."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings, self.db = settings, db
        self.per_digit = max(1, settings.adapter.max_examples // 10)
        self._examples: dict[str, Examples] = {}
        self._fitted: dict[str, tuple[Adapter, str] | None] = {}
        self._versions: dict[str, int] = {}
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    # -- storage -----------------------------------------------------------------------------------------
    def examples(self, meter_id: str) -> Examples:
        if meter_id not in self._examples:
            rows = self.db.query("SELECT version, data FROM meter_adapters WHERE meter_id = ?", (meter_id,))
            self._versions[meter_id] = int(rows[0][0]) if rows else 0
            data = rows[0][1] if rows else None
            try:
                self._examples[meter_id] = Examples.from_bytes(bytes(data)) if data else Examples()
            except (OSError, ValueError, KeyError) as exc:
                log.warning("meter %s: adapter examples unreadable (%s): reading with the shipped model", meter_id, exc)
                self._examples[meter_id] = Examples()
        return self._examples[meter_id]

    def version(self, meter_id: str) -> int:
        self.examples(meter_id)
        return self._versions[meter_id]

    def save(self, meter_id: str) -> None:
        """Store the meter's examples as a new version."""
        ex = self.examples(meter_id)
        data = ex.to_bytes() if len(ex) else None
        version = self.version(meter_id) + 1
        with self.db.transaction():
            self.db.execute("INSERT INTO meter_adapters (meter_id, version, examples, bytes, data, updated_ms) "
                            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (meter_id) DO UPDATE SET version = "
                            "excluded.version, examples = excluded.examples, bytes = excluded.bytes, data = "
                            "excluded.data, updated_ms = excluded.updated_ms",
                            (meter_id, version, len(ex), len(data or b""), data, now_ms()))
        self._versions[meter_id] = version
        self._fitted.pop(meter_id, None)

    def status(self, meter_id: str) -> dict[str, Any]:
        ex = self.examples(meter_id)
        rows = self.db.query("SELECT bytes, updated_ms FROM meter_adapters WHERE meter_id = ?", (meter_id,))
        return {"meter": meter_id, "version": self.version(meter_id), "reader_suffix": f"+adapt{self.version(meter_id)}"
                if len(ex) else "", "examples": len(ex), "per_digit": ex.counts(),
                "max_examples": self.settings.adapter.max_examples, "bytes": int(rows[0][0]) if rows else 0,
                "updated_ms": int(rows[0][1]) if rows else None, "enabled": self.settings.adapter.enabled}

    def reset(self, meter_id: str) -> int:
        """Remove the meter's examples; returns how many there were. The meter is read by the shipped model alone
        (a new version, so readings made before and after stay apart)."""
        n = len(self.examples(meter_id))
        self._examples[meter_id] = Examples()
        self.save(meter_id)
        return n

    # -- learning ----------------------------------------------------------------------------------------
    def add(self, meter_id: str, crops: Sequence[np.ndarray], labels: Sequence[int | None], height: int,
            width: int, key: str = "") -> int:
        """Add the labelled crops of the photo ``key`` ("" for a person's labels: no withdrawal forgets them)."""
        pairs = [(c, lab) for c, lab in zip(crops, labels, strict=False) if lab is not None]
        if not pairs:
            return 0
        batch = preprocess_batch([c for c, _ in pairs], height, width)
        return self.examples(meter_id).add(batch, [lab for _, lab in pairs if lab is not None], self.per_digit, key)

    def relabel(self, meter_id: str, crops: Sequence[np.ndarray], labels: Sequence[int | None], engine: DigitReader
                ) -> tuple[int, int]:
        """A person's labels for these crops: stored examples that look like them but carry another digit are
        dropped, then the crops are added. Returns (added, dropped); ``save`` stores it."""
        ex = self.examples(meter_id)
        pairs = [(c, lab) for c, lab in zip(crops, labels, strict=False) if lab is not None]
        dropped = 0
        if len(ex) and pairs and hasattr(engine, "logits"):
            h, w = int(engine.height), int(engine.width)  # type: ignore[attr-defined]
            batch = preprocess_batch([c for c, _ in pairs], h, w)
            adapter = Adapter(ex, engine.logits)  # type: ignore[attr-defined]
            bad = adapter.contradicted(embed(batch, engine.logits(batch)),  # type: ignore[attr-defined]
                                       [lab for _, lab in pairs if lab is not None])
            dropped = ex.keep(~bad)
        h, w = int(getattr(engine, "height", 32)), int(getattr(engine, "width", 20))
        added = self.add(meter_id, crops, labels, h, w)
        for dx, dy in SHIFTS:  # a person's label counts for more: shifted copies let the adapter answer at once
            self.add(meter_id, [np.roll(c, (dy, dx), axis=(0, 1)) for c in crops], labels, h, w)
        return added, dropped

    def learn(self, readers: Any, read: Sequence[tuple[Any, OcrResult]], decided: dict[str, list[Decision]]) -> None:
        """Keep the crops of this page's published photos whose digits rest on the validated value (of a photo the
        reader refused, its unread drums too: ``told_labels``), and of the photos not published that lie between
        two published ones of the same value (pinned: every drum but the last is known to rest on its digit);
        forget the crops of photos whose reading was withdrawn or corrected."""
        last = {d.key: d for ds in decided.values() for d in ds}  # what each photo's reading is now
        published = {k: d.value for k, d in last.items() if d.action is Action.PUBLISH and d.value is not None}
        pinned = pinned_values(read, published)
        changed: set[str] = set()
        for meter, ds in decided.items():  # a reading withdrawn or corrected taught the wrong digits: forget them
            gone = sorted({d.key for d in ds if last[d.key].action in (Action.WITHDRAW, Action.CORRECT)})
            if gone and self.examples(meter).forget(gone):
                log.info("meter %s: adapter forgets the crops of %d withdrawn or corrected readings", meter, len(gone))
                changed.add(meter)
        for it, res in read:
            value = published.get(it.ref.key)
            if value is not None and res.value is not None and res.digits:
                labels = digit_labels(res.reading, value, res.digits)
            elif value is not None and res.digits:  # refused by the reader, told by validation
                labels = told_labels(value, res.digits, self._decimals(it.meter),
                                     self.settings.validation.hold_confidence)
            elif it.ref.key in pinned and res.digits:
                labels = pinned_labels(pinned[it.ref.key], res.digits)
            else:
                continue
            ex = self.examples(it.meter)
            counts = ex.counts()
            wanted = [lab for lab in labels if lab is not None and counts[lab] < self.per_digit]
            self._seen[it.meter] = self._seen.get(it.meter, 0) + 1
            if not wanted and self._seen[it.meter] % REFRESH_EVERY:
                continue
            reader = readers.for_meter(it.meter)
            crops = reader.digit_crops(it.data, it.ref.key)
            engine = reader.reader
            if crops is None or len(crops) != len(labels) or not hasattr(engine, "height"):
                continue
            if self.add(it.meter, crops, labels, int(engine.height), int(engine.width), it.ref.key):
                changed.add(it.meter)
        for meter in changed:
            self.save(meter)

    def _decimals(self, meter_id: str) -> int:
        return Rules.from_settings(self.settings, meter_id).decimals

    # -- reading -----------------------------------------------------------------------------------------
    def current(self, meter_id: str, engine: DigitReader) -> tuple[Adapter, str] | None:
        with self._lock:
            if meter_id not in self._fitted:
                ex = self.examples(meter_id)
                version = f"adapt{self._versions.get(meter_id, 0)}"
                logits = engine.logits  # type: ignore[attr-defined]
                self._fitted[meter_id] = (Adapter(ex, logits), version) if len(ex) else None
            return self._fitted[meter_id]

    def knows(self, meter_id: str, engine: DigitReader) -> bool:
        """Has the adapter seen every digit of this meter resting, ``KNOWN_PER_DIGIT`` times at least? Until then
        a resting digit it has not seen may still read low (``DigitReader.knows_meter``)."""
        if self.current(meter_id, engine) is None:
            return False
        with self._lock:
            return min(self._examples[meter_id].counts()) >= KNOWN_PER_DIGIT

    def reader(self, meter_id: str, engine: DigitReader) -> DigitReader:
        """``engine`` with the meter's adapter, when the engine is the CNN (it needs the logits) and enabled."""
        if not self.settings.adapter.enabled or not hasattr(engine, "logits"):
            return engine
        with self._lock:
            self.version(meter_id)  # read once here (the reading threads never touch the database)
        return LiveAdapted(self, meter_id, engine)


class LiveAdapted(DigitReader):
    """Reads with the meter's adapter as it is now (it changes after each page); the model alone without one."""

    def __init__(self, book: MeterAdapters, meter_id: str, engine: DigitReader) -> None:
        self.book, self.meter_id, self.engine = book, meter_id, engine
        self.name = engine.name
        self.height, self.width = engine.height, engine.width  # type: ignore[attr-defined]

    @property
    def version(self) -> str:  # type: ignore[override]
        got = self.book.current(self.meter_id, self.engine)
        return self.engine.version if got is None else f"{self.engine.version}+{got[1]}"

    @property
    def knows_meter(self) -> bool:  # type: ignore[override]
        return self.book.knows(self.meter_id, self.engine)

    def read_batch(self, crops: Sequence[np.ndarray]) -> list[DigitValue]:
        got = self.book.current(self.meter_id, self.engine)
        if got is None:
            return self.engine.read_batch(crops)
        return AdaptedReader(self.engine, *got).read_batch(crops)

    def probe(self) -> None:
        self.engine.probe()
