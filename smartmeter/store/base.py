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
    """Put, list-new-since-cursor, get and delete photos. Keys are '/'-separated paths under the root."""

    name: str = "store"

    @abstractmethod
    def put(self, key: str, data: bytes) -> ImageRef:
        """Store ``data`` at ``key`` atomically and verify it by content hash. Overwrites."""

    @abstractmethod
    def list_new(self, cursor: str | None = None, limit: int = 1000) -> ListResult:
        """Photos added since ``cursor`` (None = from the beginning), oldest first."""

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
