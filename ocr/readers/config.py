"""One reader configuration: which digit reader reads a meter's photos, and with which settings.

Three levels, the higher one wins: the CLI's ``--engine`` > the meter profile's ``reader`` > the settings'
``ocr.reader``. A level that names the engine already chosen changes only the keys it gives; a level that names
another engine starts that engine from its defaults. A profile file's top-level ``min_confidence`` (the older
spelling) sets the threshold last. :func:`resolve_reader` is the one place this rule lives; the worker, ``smartmeter
read`` and ``reprocess`` all call it, then :func:`open_reader` and :func:`with_threshold`.
"""

from __future__ import annotations

from collections.abc import Callable

from smartmeter.errors import ConfigError, ExternalToolError
from smartmeter.ocr.profile import Profile
from smartmeter.ocr.readers.base import CheckedReader, DigitReader, ReaderUnavailable
from smartmeter.settings import CnnReaderSettings, OcrSettings, ReaderSettings, TesseractReaderSettings

ENGINES = ("cnn", "tesseract")


def default_reader(engine: str) -> ReaderSettings:
    """The settings of ``engine`` with every key at its default."""
    if engine == "cnn":
        return CnnReaderSettings()
    if engine == "tesseract":
        return TesseractReaderSettings(engine="tesseract")
    raise ConfigError(f"unknown OCR engine {engine!r}", hint="use cnn or tesseract")


def overlay(base: ReaderSettings, over: ReaderSettings) -> ReaderSettings:
    """``over`` on top of ``base``: the keys ``over`` gives for the same engine, else ``over`` itself."""
    if over.engine != base.engine:
        return over
    return base.model_copy(update={k: getattr(over, k) for k in over.model_fields_set - {"engine"}})


def resolve_reader(ocr: OcrSettings | None = None, profile: Profile | None = None,
                   engine: str | None = None) -> ReaderSettings:
    """The reader configuration in effect: CLI ``engine`` > ``profile.reader`` > settings ``ocr.reader``."""
    config: ReaderSettings = ocr.reader if ocr is not None else CnnReaderSettings()
    if profile is not None and profile.reader is not None:
        config = overlay(config, profile.reader)
    if engine is not None and engine != config.engine:
        config = default_reader(engine)
    if profile is not None and "min_confidence" in profile.model_fields_set:
        config = config.model_copy(update={"min_confidence": profile.min_confidence})
    return config


def with_threshold(profile: Profile, config: ReaderSettings) -> Profile:
    """``profile`` with the threshold of ``config`` in effect (``MeterReader`` reads ``profile.min_confidence``)."""
    return profile.model_copy(update={"min_confidence": config.min_confidence})


def build_reader(config: ReaderSettings) -> DigitReader:
    """The bare digit reader ``config`` describes; :class:`ReaderUnavailable` (exit 69) when it cannot run."""
    try:
        if isinstance(config, TesseractReaderSettings):
            from smartmeter.ocr.readers.tesseract_reader import TesseractReader

            return TesseractReader(cmd=config.command, timeout_s=config.timeout_s)
        from smartmeter.ocr.readers.cnn import CnnReader

        return CnnReader(model_path=config.model, threads=config.threads, views=config.views)
    except ReaderUnavailable:
        raise
    except ExternalToolError as exc:
        raise ReaderUnavailable(exc.message, hint=exc.hint) from exc


def open_reader(config: ReaderSettings,
                build: Callable[[ReaderSettings], DigitReader] = build_reader) -> CheckedReader:
    """The digit reader for ``config``, its output checked (:class:`~smartmeter.ocr.readers.base.CheckedReader`)."""
    return CheckedReader(build(config))
