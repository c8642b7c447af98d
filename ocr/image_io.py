"""Decode photos and digit crops into BGR arrays, or fail with an ImageError that names the file.

Every image the OCR library sees comes through here, so every kind of bad input gets the same clear error:
an empty file, bytes that are not an image, a JPEG or PNG cut short (an interrupted upload), an image too
large to be a meter photo. Colour images come back as ``HxWx3`` BGR uint8 (OpenCV's convention); grey and
RGBA images are converted. EXIF orientation is applied, so coordinates are those of the image as displayed.

The OCR pipeline decodes photos straight to grey (``grey=True``: the digit reader is grey, and a JPEG's grey is
its luma plane, about 40 % faster than colour) and, when the profile's boxes are large, at a half, quarter or
eighth of the size (``reduce``: the JPEG decoder then skips most of the work).

Before any decode the header is read (``image_header``): bytes that are none of the formats we read, and images
of more than ``MAX_PIXELS`` pixels (decompression bombs), are refused without allocating their pixels.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from smartmeter.errors import ImageError
from smartmeter.ocr.image_header import NotAnImage, image_size

log = logging.getLogger(__name__)

MAX_PIXELS = 80_000_000  # far above any camera we support; refuses decompression bombs
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"})

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND"

# OpenCV prints its own warnings for broken files; we raise our own error instead.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def _check_complete(data: bytes, name: str) -> None:
    """Refuse JPEG and PNG files that were cut short: OpenCV would decode them with a grey bottom part."""
    if data.startswith(_JPEG_SOI):
        tail = data[-4096:].rstrip(b"\x00\n\r ")
        if not tail.endswith(_JPEG_EOI):
            raise ImageError(f"{name}: truncated JPEG (no end-of-image marker)",
                             hint="the file was probably cut off during upload")
    elif data.startswith(_PNG_SIG) and _PNG_IEND not in data[-64:]:
        raise ImageError(f"{name}: truncated PNG (no IEND chunk)", hint="the file was probably cut off during upload")


_GREY_FLAGS = {1: cv2.IMREAD_GRAYSCALE, 2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
               8: cv2.IMREAD_REDUCED_GRAYSCALE_8}
_COLOUR_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                 8: cv2.IMREAD_REDUCED_COLOR_8}


def decode_image(data: bytes, name: str = "<image>", *, grey: bool = False, reduce: int = 1) -> np.ndarray:
    """Decode encoded image bytes into ``HxWx3`` BGR uint8 (``HxW`` with ``grey``), ``reduce`` (1, 2, 4, 8) times
    smaller on each side (rounded up); ImageError names ``name`` on any failure."""
    if not data:
        raise ImageError(f"{name}: empty file")
    flags = (_GREY_FLAGS if grey else _COLOUR_FLAGS).get(reduce)
    if flags is None:
        raise ValueError(f"reduce must be 1, 2, 4 or 8, got {reduce!r}")
    _check_complete(data, name)
    _check_size(data, name)
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        image = cv2.imdecode(buf, flags)
    except cv2.error as exc:
        raise ImageError(f"{name}: cannot decode image: {str(exc).strip().splitlines()[-1]}") from exc
    if image is None or image.size == 0:
        raise ImageError(f"{name}: not a decodable image ({len(data)} bytes)")
    h, w = image.shape[:2]
    if h * w * reduce * reduce > MAX_PIXELS:  # the header said otherwise: still refuse what no camera of ours makes
        raise ImageError(f"{name}: image of {w}x{h} pixels is too large (limit MAX_PIXELS = {MAX_PIXELS:,})")
    return image


def _check_size(data: bytes, name: str) -> None:
    """Refuse, from the header alone, bytes that are no format we read and images over MAX_PIXELS (a
    decompression bomb is small on disk: the decoder would allocate gigabytes before we could look)."""
    try:
        w, h = image_size(data)
    except NotAnImage as exc:
        raise ImageError(f"{name}: not a decodable image ({len(data)} bytes: {exc.message})") from None
    if w * h > MAX_PIXELS:
        raise ImageError(f"{name}: image of {w}x{h} pixels is too large (limit MAX_PIXELS = {MAX_PIXELS:,} "
                         "pixels; refused from its header, before decoding)")


def load_image(path: Path | str, *, grey: bool = False, reduce: int = 1) -> np.ndarray:
    """Read and decode an image file (see :func:`decode_image`); missing/unreadable files are ImageError too."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ImageError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    return decode_image(data, str(p), grey=grey, reduce=reduce)


def to_grey(image: np.ndarray) -> np.ndarray:
    """BGR or grey uint8 -> grey uint8 (no copy when already grey)."""
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise ImageError(f"unsupported image shape {image.shape}")


def is_image_name(path: Path | str) -> bool:
    """Whether a file name looks like an image we read (by suffix, case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def list_images(root: Path | str) -> list[Path]:
    """Every file under ``root`` (recursive) with an image suffix, sorted; hidden files skipped."""
    base = Path(root)
    if not base.is_dir():
        raise ImageError(f"{base}: not a folder")
    return sorted(p for p in base.rglob("*")
                  if p.is_file() and is_image_name(p)
                  and not any(part.startswith(".") for part in p.relative_to(base).parts))
