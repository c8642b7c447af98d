"""Digit readers behind one small interface, chosen by config or profile: ``cnn`` (default) | ``tesseract``."""

from __future__ import annotations

from pathlib import Path

from smartmeter.errors import ConfigError
from smartmeter.ocr.readers.base import DigitReader


def get_reader(engine: str = "cnn", *, model: Path | None = None, threads: int = 1) -> DigitReader:
    """Create the digit reader called ``engine``."""
    if engine == "cnn":
        from smartmeter.ocr.readers.cnn import CnnReader

        return CnnReader(model_path=model, threads=threads)
    if engine == "tesseract":
        from smartmeter.ocr.readers.tesseract_reader import TesseractReader

        return TesseractReader()
    raise ConfigError(f"unknown OCR engine {engine!r}", hint="use cnn or tesseract")


__all__ = ["DigitReader", "get_reader"]
