"""Benchmark: refusing a decompression bomb, ``ocr/image_io.py`` now beside the code before the header check.

The bomb is a valid 30000x30000 1-bit PNG of one colour (about 110 KB on disk, 900 MB of grey pixels, 2.7 GB in
colour once decoded). Each variant runs in a fresh process (the old module copied from ``--old-rev`` into a temp
folder) and decodes it as the OCR pipeline does (grey) and in colour; printed side by side: seconds, peak RSS.

Usage: ``python bench/decode_bomb.py [--size 30000] [--old-rev 3ff359b]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def png_bomb(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    z = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def child(module_file: str, bomb: Path, grey: bool) -> None:
    sys.path.insert(0, str(ROOT))
    if module_file:
        spec = importlib.util.spec_from_file_location("image_io_old", module_file)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules["image_io_old"] = mod
        spec.loader.exec_module(mod)
    else:
        import smartmeter.ocr.image_io as mod
    data = bomb.read_bytes()
    t0 = time.perf_counter()
    try:
        mod.decode_image(data, bomb.name, grey=grey)
        message = "decoded"
    except Exception as exc:  # noqa: BLE001 - the message is what we print
        message = str(exc)
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "message": message}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=30000)
    ap.add_argument("--old-rev", default="3ff359b")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), args.child[2] == "grey")
        return
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "image_io_old.py"
        old.write_text(subprocess.run(["git", "-C", str(ROOT), "show", f"{args.old_rev}:ocr/image_io.py"],
                                      capture_output=True, text=True, check=True).stdout)
        bomb = Path(tmp) / "bomb.png"
        bomb.write_bytes(png_bomb(args.size, args.size))
        print(f"{args.size}x{args.size} PNG bomb, {bomb.stat().st_size / 1e3:.0f} KB on disk")
        print(f"{'code':<18} {'decode':<7} {'seconds':>8} {'peak RSS MB':>12}  message")
        for label, module in ((f"before ({args.old_rev})", str(old)), ("now", "")):
            for mode in ("grey", "colour"):
                out = subprocess.run([sys.executable, __file__, "--child", module, str(bomb), mode],
                                     capture_output=True, text=True, check=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
                print(f"{label:<18} {mode:<7} {r['seconds']:>8.2f} {r['rss_mb']:>12.0f}  {r['message'][:70]}")


if __name__ == "__main__":
    main()
