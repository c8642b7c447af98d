"""Decode photos and digit crops into BGR arrays, or fail with an ImageError that names the file.

Every image the OCR library sees comes through here, so every kind of bad input gets the same clear error:
an empty file, bytes that are not an image, a JPEG or PNG cut short (an interrupted upload), an image too
large to be a meter photo. Colour images come back as ``HxWx3`` BGR uint8 (OpenCV's convention); grey and
RGBA images are converted. EXIF orientation is applied, so coordinates are those of the image as displayed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from smartmeter.errors import ImageError

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


def decode_image(data: bytes, name: str = "<image>") -> np.ndarray:
    """Decode encoded image bytes into ``HxWx3`` BGR uint8; ImageError names ``name`` on any failure."""
    if not data:
        raise ImageError(f"{name}: empty file")
    _check_complete(data, name)
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageError(f"{name}: cannot decode image: {str(exc).strip().splitlines()[-1]}") from exc
    if image is None or image.size == 0:
        raise ImageError(f"{name}: not a decodable image ({len(data)} bytes)")
    h, w = image.shape[:2]
    if h * w > MAX_PIXELS:
        raise ImageError(f"{name}: image of {w}x{h} pixels is too large")
    return image


def load_image(path: Path | str) -> np.ndarray:
    """Read and decode an image file; missing/unreadable files are ImageError too (with the file name)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ImageError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    return decode_image(data, str(p))


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
