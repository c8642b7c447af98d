"""Local folder image store (the embedded default).

Atomic puts: write to a hidden temp file in the same folder, fsync, verify the content hash, rename.
The cursor is the (modification time, key) of the last photo listed, so photos that arrive late with
old names (out-of-order delivery) are still listed; the worker is idempotent on top of that. Pages are cut in
that (arrival) order and each page is returned in key order, as the ``ImageStore`` contract says.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

from smartmeter.errors import InputError, NotFoundError, StoreError
from smartmeter.fileio import atomic_write
from smartmeter.hashing import content_hash
from smartmeter.store.base import ImageStore, ListResult, check_key
from smartmeter.types import ImageRef

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


class LocalStore(ImageStore):
    name = "local"

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes) -> ImageRef:
        path = self._path(key)
        expected = content_hash(data)
        try:
            atomic_write(path, data, expected)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror}") from exc
        st = path.stat()
        return ImageRef(key=check_key(key), size=st.st_size, content_hash=expected,
                        modified=datetime.fromtimestamp(st.st_mtime, UTC))

    def _scan(self) -> list[tuple[int, str, os.stat_result]]:
        out: list[tuple[int, str, os.stat_result]] = []
        if not self.root.exists():
            return out
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for fn in filenames:
                if fn.startswith(".") or Path(fn).suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                full = Path(dirpath) / fn
                try:
                    st = full.stat()
                except FileNotFoundError:
                    continue  # deleted while scanning
                out.append((st.st_mtime_ns, full.relative_to(self.root).as_posix(), st))
        out.sort(key=lambda t: (t[0], t[1]))
        return out

    def list_new(self, cursor: str | None = None, limit: int = 1000) -> ListResult:
        after: tuple[int, str] = (-1, "")
        if cursor:
            try:
                c = json.loads(cursor)
                after = (int(c["t"]), str(c["k"]))
            except (ValueError, KeyError, TypeError) as exc:
                raise InputError(f"not a local-store cursor: {cursor!r}") from exc
        entries = [e for e in self._scan() if (e[0], e[1]) > after]
        page, more = entries[:limit], len(entries) > limit
        refs = []
        for mtime_ns, key, st in page:
            try:
                digest = content_hash(self._path(key).read_bytes())
            except FileNotFoundError:
                continue
            refs.append(ImageRef(key=key, size=st.st_size, content_hash=digest,
                                 modified=datetime.fromtimestamp(mtime_ns / 1e9, UTC)))
        last = (page[-1][0], page[-1][1]) if page else after
        refs.sort(key=lambda r: r.key)
        return ListResult(refs=refs, cursor=json.dumps({"t": last[0], "k": last[1]}), has_more=more)

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise NotFoundError(f"no photo {key!r} in {self.root}") from exc
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror}") from exc

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError as exc:
            raise NotFoundError(f"no photo {key!r} in {self.root}") from exc
        except OSError as exc:
            raise StoreError(f"cannot delete {path}: {exc.strerror}") from exc
