"""Dropbox's content hash, used by every image store so a photo has one hash wherever it lives.

Algorithm (Dropbox docs, "Content hash"): split the bytes into 4 MiB blocks, SHA-256 each block,
concatenate the digests, SHA-256 the concatenation; hex-encode.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

BLOCK = 4 * 1024 * 1024


def content_hash_chunks(chunks: Iterable[bytes]) -> str:
    outer = hashlib.sha256()
    block = hashlib.sha256()
    filled = 0
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            take = min(BLOCK - filled, len(view))
            block.update(view[:take])
            filled += take
            view = view[take:]
            if filled == BLOCK:
                outer.update(block.digest())
                block, filled = hashlib.sha256(), 0
    if filled:
        outer.update(block.digest())
    return outer.hexdigest()


def content_hash(data: bytes) -> str:
    return content_hash_chunks([data])


def file_content_hash(path: Path) -> str:
    with path.open("rb") as fh:
        return content_hash_chunks(iter(lambda: fh.read(1 << 20), b""))
