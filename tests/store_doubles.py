"""Image stores for tests, defined once: ``FlakyStore`` (the real local store with injected faults) and
``dropbox_store`` (the real ``DropboxStore`` and SDK pointed at the HTTPS fake in ``fake_dropbox.py``).

``FlakyStore`` is a :class:`~smartmeter.store.local.LocalStore` whose calls fail with ``StoreError`` while
``down`` is set (only the operations named in ``ops``: by default every one), counts its calls per operation in
``calls``, and runs ``before(op, key)`` ahead of each call (to stop an uploader mid-upload, delete a file under
it, ...). Everything else is the real store: what it does when up is what production does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from fake_dropbox import FakeDropbox

from smartmeter.errors import StoreError
from smartmeter.store.base import ListResult
from smartmeter.store.dropbox_http import DropboxHttpStore
from smartmeter.store.dropbox_store import DropboxStore
from smartmeter.store.local import LocalStore
from smartmeter.types import ImageRef

OPS = ("put", "get", "list_new", "delete")


class FlakyStore(LocalStore):
    """The real local store with an outage switch, call counts and a hook before every call."""

    def __init__(self, root: Path | str, *, down: bool = False, ops: Iterable[str] = OPS) -> None:
        super().__init__(root)
        self.down = down
        self.ops = set(ops)
        unknown = self.ops - set(OPS)
        if unknown:
            raise ValueError(f"FlakyStore cannot fail {sorted(unknown)}: only {', '.join(OPS)}")
        self.calls: Counter[str] = Counter()
        self.before: Callable[[str, str], None] | None = None

    def _fault(self, op: str, key: str) -> None:
        self.calls[op] += 1
        if self.before is not None:
            self.before(op, key)
        if self.down and op in self.ops:
            raise StoreError(f"injected: {op} {key}: store unreachable (connection reset)")

    def put(self, key: str, data: bytes) -> ImageRef:
        self._fault("put", key)
        return super().put(key, data)

    def get(self, key: str) -> bytes:
        self._fault("get", key)
        return super().get(key)

    def list_new(self, cursor: str | None = None, limit: int = 1000) -> ListResult:
        self._fault("list_new", cursor or "")
        return super().list_new(cursor, limit)

    def delete(self, key: str) -> None:
        self._fault("delete", key)
        super().delete(key)


def dropbox_store(fake: FakeDropbox, sleep: Callable[[float], None] = lambda s: None, client: str = "sdk",
                  **kw: object) -> DropboxStore | DropboxHttpStore:
    """A Dropbox store on the fake (its own CA, quick retries): ``client`` "sdk" is ``DropboxStore`` (the real
    SDK), "http" ``DropboxHttpStore`` (the standard-library client); ``kw`` overrides any constructor argument."""
    args: dict[str, object] = dict(app_key=fake.app_key, refresh_token=fake.refresh_token, root="/smartmeter",
                                   api_host=fake.api_host, content_host=fake.api_host, ca_certs=fake.ca_file,
                                   max_retries=3, backoff_s=0.01, timeout_s=5, sleep=sleep)
    args.update(kw)
    cls = DropboxHttpStore if client == "http" else DropboxStore
    return cls(**args)  # type: ignore[arg-type]
