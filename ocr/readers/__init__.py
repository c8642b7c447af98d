"""Digit readers behind one small interface: ``cnn`` (default) | ``tesseract``, configured by ``ocr.reader`` in
the settings, the meter profile's ``reader`` and ``--engine`` (see ``config``)."""

from __future__ import annotations

from pathlib import Path

from smartmeter.ocr.readers.base import CheckedReader, DigitReader, ReaderFault, ReaderUnavailable
from smartmeter.ocr.readers.config import build_reader, default_reader, open_reader, resolve_reader, with_threshold
from smartmeter.settings import CnnReaderSettings


def get_reader(engine: str = "cnn", *, model: Path | None = None, threads: int = 1) -> DigitReader:
    """The bare digit reader called ``engine`` (``model`` and ``threads`` for the CNN)."""
    config = default_reader(engine)
    if isinstance(config, CnnReaderSettings):
        config = CnnReaderSettings(model=model, threads=threads)
    return build_reader(config)


__all__ = ["CheckedReader", "DigitReader", "ReaderFault", "ReaderUnavailable", "build_reader", "default_reader",
           "get_reader", "open_reader", "resolve_reader", "with_threshold"]
