"""What both Dropbox clients share: the hosts, the root folder rule, and how settings and secrets open a client.

Kept free of the SDK (and of ``requests``) so the lean client in ``dropbox_http.py`` can use it without importing
either: on a Pi Zero those imports are 40 MB of a 512 MB board.
"""

from __future__ import annotations

import os
from typing import Any

from smartmeter.errors import ConfigError
from smartmeter.secrets import get_secret
from smartmeter.settings import DropboxSettings
from smartmeter.store.base import check_key

MAX_SIMPLE_UPLOAD = 150 * 1024 * 1024  # files/upload limit; photos are a few MB
DEFAULT_API_HOST = "api.dropboxapi.com"
DEFAULT_CONTENT_HOST = "content.dropboxapi.com"
DEFAULT_NOTIFY_HOST = "notify.dropboxapi.com"


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


class DropboxPaths:
    """Keys <-> Dropbox paths under one root folder (``root`` as ``dropbox_root`` spells it)."""

    root: str

    def _path(self, key: str) -> str:
        return f"{self.root}/{check_key(key)}"

    def _key(self, path: str) -> str | None:
        """Dropbox path -> key relative to the root (None if outside it)."""
        if not self.root:
            return path.lstrip("/")
        prefix = self.root + "/"
        return path[len(prefix):] if path.lower().startswith(prefix.lower()) else None
