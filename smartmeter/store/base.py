"""The image-store interface shared by the camera uploader, the worker and the backup tool."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from smartmeter.types import ImageRef


@dataclass(frozen=True)
class ListResult:
    """New photos since a cursor, and the cursor to pass next time."""

    refs: list[ImageRef]
    cursor: str
    has_more: bool = False


class ImageStore(ABC):
    """Put, list-new-since-cursor, get and delete photos. Keys are '/'-separated paths under the root.

    The contract every backend keeps (``tests/test_store_contract.py`` runs it on each):

    - ``put`` stores atomically, overwrites, and returns the ref of what was stored (key without leading '/',
      size, content hash); a key with '..', '.', an empty part, '\\' or NUL is refused (InputError).
    - ``get`` / ``delete`` of a missing key raise NotFoundError.
    - ``list_new`` lists photos only (.jpg, .jpeg, .png in any case; no hidden files), in subfolders too. Each page
      is in key order (photo names begin with the capture time); pages follow the order the store received the
      photos. Following the cursors lists every photo once, then each photo put (or overwritten) after the cursor
      once more, also one with an older name (late delivery); deleted photos are not listed. A cursor of
      another store is refused (InputError); an empty cursor means "from the beginning".
    """

    name: str = "store"

    @abstractmethod
    def put(self, key: str, data: bytes) -> ImageRef:
        """Store ``data`` at ``key`` atomically and verify it by content hash. Overwrites."""

    @abstractmethod
    def list_new(self, cursor: str | None = None, limit: int = 1000) -> ListResult:
        """Photos added since ``cursor`` (None = from the beginning): one page of at most about ``limit``,
        in key order (see the class docstring)."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The bytes of one photo, verified against the stored content hash."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove one photo. Deleting a missing key raises NotFoundError."""

    def exists(self, key: str) -> bool:
        from smartmeter.errors import NotFoundError

        try:
            self.get(key)
        except NotFoundError:
            return False
        return True


def check_key(key: str) -> str:
    """Reject keys that could escape the store root."""
    from smartmeter.errors import InputError

    parts = key.strip("/").split("/")
    if not key or any(p in ("", ".", "..") for p in parts) or "\\" in key or "\x00" in key:
        raise InputError(f"invalid image key {key!r}")
    return "/".join(parts)
