"""Width and height of an encoded image from its header alone, before any pixel is decoded.

A decompression bomb is a small file whose header announces a huge image (a 30000x30000 PNG of one colour is
100 KB on disk and 900 MB to 2.7 GB once decoded). ``image_size`` reads only the header of the formats the OCR
library accepts (JPEG, PNG, BMP, TIFF, WebP and the PNM family) so ``image_io`` can refuse such a file before the
decoder allocates anything. Any other bytes are not an image we read.
"""

from __future__ import annotations

import re
import struct

from smartmeter.errors import ImageError

_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers (DHT, JPG, DAC are not)
_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}  # RSTn, TEM: no length field
_PNM = re.compile(rb"P([1-6])(?:\s|#[^\n]*\n)+(\d+)(?:\s|#[^\n]*\n)+(\d+)")
_PFM = re.compile(rb"P[Ff]\s+(\d+)\s+(\d+)")
_PAM = re.compile(rb"P7\s(?:.*?\s)?WIDTH\s+(\d+)\s(?:.*?\s)?HEIGHT\s+(\d+)", re.S)


class NotAnImage(ImageError):
    """The bytes are none of the formats we read, or their header is broken."""


def _jpeg(data: bytes) -> tuple[int, int]:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise NotAnImage("JPEG header broken (no marker where one must be)")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            break
        (length,) = struct.unpack_from(">H", data, i + 2)
        if marker in _SOF and i + 9 <= len(data):
            height, width = struct.unpack_from(">HH", data, i + 5)
            if width and height:
                return width, height
            break  # height 0 (defined later by a DNL marker): not supported
        if length < 2:
            raise NotAnImage("JPEG header broken (segment length < 2)")
        i += 2 + length
    raise NotAnImage("JPEG without a usable frame header")


def _tiff(data: bytes) -> tuple[int, int]:
    end = "<" if data[:2] == b"II" else ">"
    (offset,) = struct.unpack_from(end + "I", data, 4)
    if offset + 2 > len(data):
        raise NotAnImage("TIFF header broken (directory past the end)")
    (count,) = struct.unpack_from(end + "H", data, offset)
    found: dict[int, int] = {}
    for n in range(count):
        at = offset + 2 + 12 * n
        if at + 12 > len(data):
            break
        tag, kind = struct.unpack_from(end + "HH", data, at)
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
            fmt = "H" if kind == 3 else "I"
            found[tag] = struct.unpack_from(end + fmt, data, at + 8)[0]
    if 256 not in found or 257 not in found:
        raise NotAnImage("TIFF without width and height")
    return found[256], found[257]


def _webp(data: bytes) -> tuple[int, int]:
    chunk, body = data[12:16], data[20:30]
    if len(body) < 10:
        raise NotAnImage("WebP header cut short")
    if chunk == b"VP8X":
        return 1 + int.from_bytes(body[4:7], "little"), 1 + int.from_bytes(body[7:10], "little")
    if chunk == b"VP8L" and body[0] == 0x2F:
        bits = int.from_bytes(body[1:5], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and body[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    raise NotAnImage("WebP header not understood")


def _pnm(data: bytes) -> tuple[int, int]:
    head = data[:4096]
    m = _PNM.match(head) or _PFM.match(head)
    if m:
        return int(m.groups()[-2]), int(m.groups()[-1])
    m = _PAM.match(head)
    if m:
        return int(m[1]), int(m[2])
    raise NotAnImage("PNM header not understood")


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) announced by the header; NotAnImage for bytes that are no format we read."""
    try:
        if data[:3] == b"\xff\xd8\xff":
            return _jpeg(data)
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            w, h = struct.unpack_from(">II", data, 16)
            return int(w), int(h)
        if data[:2] == b"BM" and len(data) >= 26:
            (dib,) = struct.unpack_from("<I", data, 14)
            w, h = struct.unpack_from("<hh" if dib == 12 else "<ii", data, 18)
            return abs(int(w)), abs(int(h))
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp(data)
        if data[:1] == b"P" and data[1:2] in b"1234567Ff":
            return _pnm(data)
    except struct.error as exc:
        raise NotAnImage("image header cut short") from exc
    raise NotAnImage("not JPEG, PNG, BMP, TIFF, WebP or PNM")
