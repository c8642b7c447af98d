"""Get a Dropbox refresh token with the no-redirect OAuth code flow, and store it as a secret file.

The user opens the authorize URL, allows the app, and pastes the code shown by Dropbox. With an app secret
the code is exchanged with the secret; without one, PKCE is used (apps that cannot keep a secret). The
token is written to a file readable only by its owner and never printed or logged: point
``SMARTMETER_DROPBOX_REFRESH_TOKEN_FILE`` at that file.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import requests
from dropbox.oauth import DropboxOAuth2FlowNoRedirect

from smartmeter.errors import ConfigError, StoreError
from smartmeter.store.dropbox_common import DEFAULT_API_HOST
from smartmeter.store.dropbox_store import ca_session

log = logging.getLogger(__name__)

# What the store needs: list (metadata), download (content.read), upload and delete (content.write).
SCOPES = ["files.metadata.read", "files.content.read", "files.content.write"]


class _Flow(DropboxOAuth2FlowNoRedirect):
    """The SDK flow, with the token endpoint on our API host (the SDK binds it at import time)."""

    api_host: str = DEFAULT_API_HOST

    def build_url(self, target: str, params: dict[str, str] | None = None, host: str | None = None) -> str:
        if host is None:
            host = self.api_host
        return super().build_url(target, params, host)  # type: ignore[no-any-return]


def obtain_refresh_token(app_key: str, app_secret: str | None, read_code: Callable[[str], str], *,
                         api_host: str = DEFAULT_API_HOST, ca_certs: Path | str | None = None,
                         timeout_s: float = 60.0) -> str:
    """Run the flow: ``read_code(authorize_url)`` returns the code the user pasted; returns the refresh token."""
    if not app_key:
        raise ConfigError("store.dropbox.app_key is empty", hint="create the app first: docs/dropbox.md")
    flow = _Flow(app_key, consumer_secret=app_secret or None, token_access_type="offline", scope=SCOPES,
                 use_pkce=not app_secret, timeout=timeout_s)
    flow.api_host = api_host
    if ca_certs:
        flow.requests_session = ca_session(ca_certs)
    code = read_code(flow.start()).strip()
    if not code:
        raise ConfigError("no authorization code given")
    try:
        result = flow.finish(code)
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise ConfigError(f"Dropbox refused the authorization code (HTTP {status})",
                          hint="codes are single-use and expire after a few minutes: run the command again"
                          ) from None  # the chained error would carry the request body (code, secret)
    except requests.RequestException as exc:
        raise StoreError(f"cannot reach Dropbox to finish the authorization: {type(exc).__name__}") from exc
    if not result.refresh_token:
        raise ConfigError("Dropbox returned no refresh token", hint="the flow must ask for offline access")
    return str(result.refresh_token)


def save_secret_file(path: Path, secret: str) -> None:
    """Write a secret atomically into a file only its owner can read (0600), creating the folder (0700)."""
    path = path.expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)  # mkstemp creates it 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(secret + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise StoreError(f"cannot write secret file {path}: {exc.strerror}") from exc
    log.info("secret written to %s", path)
