"""The one module that runs the tesseract binary.

It finds the binary (``PATH`` or an explicit command), checks ``tesseract --version`` is 4 or newer (the LSTM
engine), runs it on one image through stdin/stdout (no temporary files) and turns every failure — missing
binary, too old, crash, timeout, unparseable output — into ``ExternalToolError`` (exit code 69).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

import cv2
import numpy as np

from smartmeter.errors import ExternalToolError

log = logging.getLogger(__name__)

MIN_VERSION = (4, 0, 0)
INSTALL_HINT = "install it: apt-get install tesseract-ocr (Debian/Raspberry Pi OS)"
_VERSION_RE = re.compile(r"tesseract\s+v?(\d+)\.(\d+)(?:\.(\d+))?", re.IGNORECASE)


@dataclass(frozen=True)
class Tesseract:
    """A checked tesseract binary."""

    path: str
    version: tuple[int, int, int]

    @property
    def version_text(self) -> str:
        return ".".join(str(v) for v in self.version)


def parse_version(text: str) -> tuple[int, int, int]:
    """``tesseract 5.3.0\\n leptonica-1.82.0 ...`` -> ``(5, 3, 0)``; ExternalToolError if absent."""
    m = _VERSION_RE.search(text)
    if not m:
        raise ExternalToolError(f"cannot tell the tesseract version from {text.strip()[:80]!r}")
    return int(m[1]), int(m[2]), int(m[3] or 0)


def _env() -> dict[str, str]:
    # One thread per process: tesseract's OpenMP threads only slow down single-digit images.
    return {**os.environ, "OMP_THREAD_LIMIT": "1"}


@functools.lru_cache(maxsize=8)
def find_tesseract(cmd: str | None = None, timeout_s: float = 10.0) -> Tesseract:
    """Locate ``cmd`` (default: ``tesseract`` on PATH) and check its version is at least 4 (cached)."""
    return check_tesseract(cmd, timeout_s)


def check_tesseract(cmd: str | None = None, timeout_s: float = 10.0) -> Tesseract:
    """:func:`find_tesseract` without the cache: does the binary run, now?"""
    name = cmd or "tesseract"
    path = shutil.which(name)
    if path is None:
        raise ExternalToolError(f"tesseract not found ({name!r})", hint=INSTALL_HINT)
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, timeout=timeout_s, env=_env(), check=False)
    except subprocess.TimeoutExpired as exc:
        raise ExternalToolError(f"{path} --version did not answer within {timeout_s:.0f} s") from exc
    except OSError as exc:
        raise ExternalToolError(f"cannot run {path}: {exc.strerror or exc}", hint=INSTALL_HINT) from exc
    text = (proc.stdout + proc.stderr).decode("utf-8", "replace")  # tesseract 3 printed it on stderr
    if proc.returncode != 0:
        raise ExternalToolError(f"{path} --version failed with exit code {proc.returncode}: {text.strip()[:200]}")
    version = parse_version(text)
    if version < MIN_VERSION:
        raise ExternalToolError(f"tesseract {'.'.join(map(str, version))} at {path} is too old; need 4 or newer",
                                hint=INSTALL_HINT)
    log.debug("using tesseract %s at %s", version, path)
    return Tesseract(path, version)


@dataclass(frozen=True)
class Word:
    """One recognised word (for psm 10: one character) with tesseract's confidence 0-100."""

    text: str
    confidence: float
    box: tuple[int, int, int, int]


def parse_tsv(tsv: str) -> list[Word]:
    """Words from tesseract's TSV output (level 5 rows with text)."""
    words: list[Word] = []
    for line in tsv.splitlines()[1:]:
        cols = line.split("\t")
        if len(cols) < 12 or cols[0] != "5" or not cols[11].strip():
            continue
        try:
            conf = float(cols[10])
            box = (int(cols[6]), int(cols[7]), int(cols[8]), int(cols[9]))
        except ValueError as exc:
            raise ExternalToolError(f"unexpected tesseract TSV line {line[:80]!r}") from exc
        words.append(Word(cols[11].strip(), conf, box))
    return words


def run_tesseract(image: np.ndarray, args: list[str], tool: Tesseract | None = None,
                  timeout_s: float = 30.0) -> list[Word]:
    """Run tesseract on one image with extra ``args`` (e.g. ``["--psm", "10"]``); return the words it read."""
    tess = tool or find_tesseract()
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ExternalToolError("cannot encode the image for tesseract")
    cmd = [tess.path, "stdin", "stdout", *args, "tsv"]
    try:
        proc = subprocess.run(cmd, input=buf.tobytes(), capture_output=True, timeout=timeout_s, env=_env(),
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise ExternalToolError(f"tesseract did not finish within {timeout_s:g} s") from exc
    except OSError as exc:
        raise ExternalToolError(f"cannot run {tess.path}: {exc.strerror or exc}", hint=INSTALL_HINT) from exc
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ExternalToolError(f"tesseract failed with exit code {proc.returncode}: {(err or ['no message'])[-1]}")
    return parse_tsv(proc.stdout.decode("utf-8", "replace"))
