"""What both Dropbox clients share: the hosts, the root folder rule, and how settings and secrets open a client.

Kept free of the SDK (and of ``requests``) so the lean client in ``dropbox_http.py`` can use it without importing
either: on a Pi Zero those imports are 40 MB of a 512 MB board.
"""

from __future__ import annotations

import logging
import os
import time
from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from smartmeter.errors import ConfigError, StoreError
from smartmeter.secrets import get_secret
from smartmeter.settings import DropboxSettings
from smartmeter.store.base import ImageStore, check_key

MAX_SIMPLE_UPLOAD = 150 * 1024 * 1024  # files/upload limit; photos are a few MB
DEFAULT_API_HOST = "api.dropboxapi.com"
DEFAULT_CONTENT_HOST = "content.dropboxapi.com"
DEFAULT_NOTIFY_HOST = "notify.dropboxapi.com"

log = logging.getLogger(__name__)


def dropbox_root(root: str) -> str:
    """'/smartmeter/' -> '/smartmeter'; '/' or '' -> '' (Dropbox spells the app folder root as '')."""
    clean = root.strip().strip("/")
    if clean and any(p in ("", ".", "..") for p in clean.split("/")):
        raise ConfigError(f"store.dropbox.root {root!r} is not a clean Dropbox folder path")
    return "/" + clean if clean else ""


def check_credentials(app_key: str, refresh_token: str) -> None:
    if not app_key:
        raise ConfigError("store.dropbox.app_key is empty", hint="see docs/dropbox.md")
    if not refresh_token:
        raise ConfigError("the Dropbox refresh token is empty", hint="set SMARTMETER_DROPBOX_REFRESH_TOKEN")


def client_kwargs(settings: DropboxSettings, **kwargs: Any) -> dict[str, Any]:
    """Constructor arguments of either client from settings plus secrets; hosts from the SDK's own env variables
    (``DROPBOX_API_HOST``, ``DROPBOX_API_CONTENT_HOST``), read now; ``kwargs`` win."""
    token = get_secret("dropbox_refresh_token")
    secret = get_secret("dropbox_app_secret", required=False)
    assert token is not None  # required=True raises instead
    kwargs.setdefault("api_host", os.environ.get("DROPBOX_API_HOST") or DEFAULT_API_HOST)
    kwargs.setdefault("content_host", os.environ.get("DROPBOX_API_CONTENT_HOST") or DEFAULT_CONTENT_HOST)
    kwargs.setdefault("ca_certs", settings.ca_certs)
    return dict(app_key=settings.app_key, refresh_token=token.get_secret_value(),
                app_secret=secret.get_secret_value() if secret else None, root=settings.root,
                timeout_s=settings.timeout_s, max_retries=settings.max_retries, backoff_s=settings.backoff_s, **kwargs)


class DropboxBase(ImageStore):
    """What both Dropbox clients do alike: their settings, keys <-> paths under the root folder, and the pace of
    retries. A client sets up its connection in ``_connect``."""

    name = "dropbox"

    def __init__(self, *, app_key: str, refresh_token: str, app_secret: str | None = None,
                 root: str = "/smartmeter", timeout_s: float = 60.0, max_retries: int = 5, backoff_s: float = 1.0,
                 api_host: str = DEFAULT_API_HOST, content_host: str = DEFAULT_CONTENT_HOST,
                 ca_certs: Path | str | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        check_credentials(app_key, refresh_token)
        self.root = dropbox_root(root)
        self.timeout_s, self.max_retries, self.backoff_s, self._sleep = timeout_s, max_retries, backoff_s, sleep
        self.api_host, self.content_host = api_host, content_host
        self._connect(app_key, refresh_token, app_secret or None, ca_certs)

    @abstractmethod
    def _connect(self, app_key: str, refresh_token: str, app_secret: str | None, ca_certs: Path | str | None) -> None:
        """Set up the client (the secrets stay inside it)."""

    @classmethod
    def from_settings(cls, settings: DropboxSettings, **kwargs: Any) -> Self:
        """Open the store from settings plus secrets; hosts from the SDK's own env variables, read now."""
        return cls(**client_kwargs(settings, **kwargs))

    def __repr__(self) -> str:  # never show the client (it holds the tokens)
        return f"{type(self).__name__}(root={self.root!r}, api_host={self.api_host!r})"

    def _path(self, key: str) -> str:
        return f"{self.root}/{check_key(key)}"

    def _key(self, path: str) -> str | None:
        """Dropbox path -> key relative to the root (None if outside it)."""
        if not self.root:
            return path.lstrip("/")
        prefix = self.root + "/"
        return path[len(prefix):] if path.lower().startswith(prefix.lower()) else None

    def _pause(self, what: str, retries: int, reason: str, wait: float) -> int:
        """After a failure worth retrying: give up when ``retries`` retries were made already, else wait ``wait``
        seconds and return the retries made now."""
        if retries >= self.max_retries:
            raise StoreError(f"{what}: gave up after {retries + 1} attempts: {reason}")
        retries += 1
        log.warning("%s: %s; retry %d/%d in %.2fs", what, reason, retries, self.max_retries, wait)
        self._sleep(wait)
        return retries
