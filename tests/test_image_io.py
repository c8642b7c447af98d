"""Decoding: every kind of bad file gives an ImageError naming it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from smartmeter.errors import ImageError
from smartmeter.ocr.image_io import decode_image, list_images, load_image, to_grey

PHOTOS = Path(__file__).parent / "resources" / "photos"


def encoded(ext: str, shape: tuple[int, ...] = (30, 20, 3)) -> bytes:
    img = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


def test_decodes_to_bgr() -> None:
    image = load_image(PHOTOS / "upright.jpg")
    assert image.shape == (480, 640, 3) and image.dtype == np.uint8
    assert decode_image(encoded(".png", (30, 20)), "grey.png").shape == (30, 20, 3)  # grey becomes BGR
    assert decode_image(encoded(".png", (30, 20, 4)), "rgba.png").shape == (30, 20, 3)


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty file"),
    (b"hello, I am text", "not a decodable image"),
    (encoded(".jpg")[:-200], "truncated JPEG"),
    (encoded(".png")[:-30], "truncated PNG"),
    (b"\xff\xd8" + b"\x00" * 100 + b"\xff\xd9", "not a decodable image"),
])
def test_bad_bytes_name_the_file(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=f"crop.jpg: {message}"):
        decode_image(data, "crop.jpg")


def test_truncated_photo_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="corrupt.jpg: truncated JPEG"):
        load_image(PHOTOS / "corrupt.jpg")
    with pytest.raises(ImageError, match="nope.jpg: cannot read"):
        load_image(tmp_path / "nope.jpg")


def test_list_images_recursive_sorted_skips_hidden(tmp_path: Path) -> None:
    for rel in ["b.jpg", "a/c.PNG", "a/notes.txt", ".hidden/d.jpg", "e.jpeg"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == ["a/c.PNG", "b.jpg", "e.jpeg"]
    with pytest.raises(ImageError, match="not a folder"):
        list_images(tmp_path / "b.jpg")


def test_to_grey() -> None:
    assert to_grey(np.zeros((4, 5, 3), np.uint8)).shape == (4, 5)
    grey = np.zeros((4, 5), np.uint8)
    assert to_grey(grey) is grey


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_at_every_size(orientation: int) -> None:
    """A phone photo stores its pixels sideways and says so in EXIF: every decode (colour or grey, full size or
    reduced for speed) gives the photo as displayed, so boxes drawn on a displayed reference fit all of them."""
    import io

    from PIL import Image

    stored = np.zeros((96, 160, 3), np.uint8)
    stored[:32, :40] = 255  # a white corner block and a red one: every flip and turn looks different
    stored[60:, 100:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(stored[:, :, ::-1]).save(buf, "JPEG", quality=95, exif=exif.tobytes())
    turns: dict[int, Callable[[np.ndarray], np.ndarray]] = {
        1: lambda a: a, 2: lambda a: cv2.flip(a, 1), 3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
        4: lambda a: cv2.flip(a, 0), 5: cv2.transpose, 6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
        7: lambda a: cv2.flip(cv2.transpose(a), -1), 8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE)}
    displayed = turns[orientation](stored)
    for grey in (False, True):
        for reduce in (1, 2, 4):
            got = decode_image(buf.getvalue(), grey=grey, reduce=reduce)
            want = cv2.resize(displayed, (got.shape[1], got.shape[0]), interpolation=cv2.INTER_AREA)
            if grey:
                want = cv2.cvtColor(want, cv2.COLOR_BGR2GRAY)
            assert got.shape[:2] == (displayed.shape[0] // reduce, displayed.shape[1] // reduce)
            assert np.abs(got.astype(int) - want.astype(int)).mean() < 10, (grey, reduce)
