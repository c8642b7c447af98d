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


@pytest.mark.fault("corrupt JPEG", proves="a JPEG cut short is refused with a clear error instead of being read with "
                   "a grey bottom")
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


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit grey PNG of ``width`` x ``height`` black pixels, built row by row: small on disk, and
    ``width * height`` bytes once OpenCV decodes it to 8-bit."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    z = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG whose frame header is rewritten to announce ``width`` x ``height``."""
    data = bytearray(encoded(".jpg", (16, 16, 3)))
    i = 2
    while data[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    data[i + 5:i + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


@pytest.fixture
def no_decoder(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record any call to OpenCV's decoder (a bomb must be refused before it)."""
    import smartmeter.ocr.image_io as image_io

    calls: list[int] = []
    real = image_io.cv2.imdecode

    def spy(buf: np.ndarray, flags: int) -> np.ndarray | None:
        calls.append(flags)
        return real(buf, flags)

    monkeypatch.setattr(image_io.cv2, "imdecode", spy)
    return calls


@pytest.mark.fault("decompression bomb (huge image in a small file)",
                   proves="refused from the header, never decoded: 0 bytes of pixels allocated")
@pytest.mark.parametrize("grey", [False, True])
@pytest.mark.parametrize("reduce", [1, 2, 8])
def test_decompression_bomb_refused_from_header(tmp_path: Path, no_decoder: list[int], grey: bool,
                                                reduce: int) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb(30000, 30000))
    assert bomb.stat().st_size < 300_000  # 900 MB of pixels in a small file
    for path, data in [(bomb, bomb.read_bytes()), (tmp_path / "bomb.jpg", jpeg_claiming(30000, 30000))]:
        path.write_bytes(data)
        with pytest.raises(ImageError, match=rf"{path.name}: image of 30000x30000 pixels is too large "
                                             r"\(limit MAX_PIXELS = 80,000,000"):
            load_image(path, grey=grey, reduce=reduce)
    assert no_decoder == []


def test_read_command_refuses_bomb(tmp_path: Path, no_decoder: list[int]) -> None:
    from click.testing import CliRunner

    from smartmeter.cli import cli

    (tmp_path / "bomb.png").write_bytes(png_bomb(30000, 30000))
    res = CliRunner().invoke(cli, ["read", "--auto", str(tmp_path / "bomb.png")])
    assert res.exit_code == 3, res.output
    assert "30000x30000 pixels is too large" in res.output and no_decoder == []


@pytest.mark.parametrize("ext", [".jpg", ".png", ".bmp", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".pfm"])
@pytest.mark.parametrize("shape", [(31, 17), (200, 333)])
def test_header_size_is_the_decoded_size(ext: str, shape: tuple[int, int]) -> None:
    from smartmeter.ocr.image_header import image_size

    grey = ext in (".pgm", ".pbm")
    img = np.random.default_rng(1).integers(0, 255, shape if grey else (*shape, 3), dtype=np.uint8)
    if ext == ".pfm":
        img = img.astype(np.float32) / 255
    ok, buf = cv2.imencode(ext, img)
    assert ok
    data = buf.tobytes()
    assert image_size(data) == (shape[1], shape[0])
    assert decode_image(data, "x" + ext).shape[:2] == shape


@pytest.mark.parametrize("data", [b"GIF89a" + b"\x00" * 40, b"\x89PNG\r\n\x1a\n" + b"\x00" * 8 + b"IEND",
                                  b"BM\x00", b"P6\n", b"RIFF\x00\x00\x00\x00WEBPVP8 ",
                                  b"\xff\xd8\xff\xe0\x00\x01\xff\xd9"])
def test_unknown_or_broken_header_is_not_decoded(data: bytes, no_decoder: list[int]) -> None:
    with pytest.raises(ImageError, match="x.img: not a decodable image"):
        decode_image(data, "x.img")
    assert no_decoder == []
