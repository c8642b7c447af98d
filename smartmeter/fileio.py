"""Atomic file writes, shared by the local image store, the Pi's spool and the backup tool.

A write goes to a hidden temp file in the same folder, is fsynced, optionally checked against a content hash on
disk, then renamed over the target and the folder fsynced. A crash or a failed check at any point leaves the old
file (or nothing) in place and no partial file under the final name; temp files start with ``.tmp-``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from smartmeter.errors import IntegrityError
from smartmeter.hashing import file_content_hash

log = logging.getLogger(__name__)

TMP_PREFIX = ".tmp-"


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, expected_hash: str | None = None) -> None:
    """Write ``data`` to ``path`` atomically; with ``expected_hash``, verify the bytes on disk first.

    Raises OSError (e.g. disk full) or IntegrityError; in both cases no temp file is left behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if expected_hash is not None:
            got = file_content_hash(Path(tmp))
            if got != expected_hash:
                raise IntegrityError(f"{path}: bytes on disk hash {got[:12]}, expected {expected_hash[:12]}")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
