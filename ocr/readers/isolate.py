"""Reading photos so that a reader failure on one photo stays that photo's: the worker and ``smartmeter read``.

:func:`read_isolated` reads all the photos in one ``read_many`` call (the fast path); when that raises, it reads
them one by one, and a photo whose read raises anything (a tesseract timeout or crash, ``ReaderFault`` from
``CheckedReader``, an unexpected exception) becomes a :class:`ReadFailure` with the reason. After each failure the
reader is probed: ``ReaderUnavailable`` (the binary is gone: exit 69) is no photo's fault and raises.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from smartmeter.errors import SmartMeterError
from smartmeter.ocr.readers.base import ReaderUnavailable
from smartmeter.types import OcrResult

if TYPE_CHECKING:
    from smartmeter.ocr.pipeline import MeterReader, PhotoInput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadFailure:
    """A photo the digit reader failed on: unreadable, and worth a person's look (the photo itself may be fine)."""

    reason: str

    def as_result(self, reader_version: str = "") -> OcrResult:
        return OcrResult(None, None, 0.0, error=self.reason, reader_version=reader_version)


def read_isolated(meter: MeterReader, images: Sequence[PhotoInput],
                  names: Sequence[str]) -> list[OcrResult | ReadFailure]:
    """``meter.read_many(images, names)``, except that a photo the reader fails on is a ReadFailure."""
    try:
        return list(meter.read_many(images, names))
    except ReaderUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a reader raises, only its photo may suffer
        if len(images) == 1:
            return [_failure(meter, names[0], exc)]
        log.warning("reading %d photos together failed (%s); reading them one by one", len(images), exc)
    out: list[OcrResult | ReadFailure] = []
    for image, name in zip(images, names, strict=True):
        try:
            out.append(meter.read_many([image], [name])[0])
        except ReaderUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - as above
            out.append(_failure(meter, name, exc))
    return out


def _failure(meter: MeterReader, name: str, exc: Exception) -> ReadFailure:
    meter.reader.probe()  # a broken installation is no photo's fault: ReaderUnavailable raises
    what = str(exc) if isinstance(exc, SmartMeterError) else f"{type(exc).__name__}: {exc}"
    reason = f"reader {meter.version} failed: {what}"
    log.warning("%s: %s", name, reason)
    return ReadFailure(reason)
