"""Dropbox image store, over the official ``dropbox`` SDK (v12).

Auth is refresh-token only: the app key comes from settings, the refresh token (and, for apps not using
PKCE, the app secret) from ``smartmeter.secrets``. The SDK turns the refresh token into short-lived access
tokens and refreshes them when they expire. The token is never logged.

Hosts: the SDK reads ``DROPBOX_API_HOST`` / ``DROPBOX_API_CONTENT_HOST`` only once, when ``dropbox.session``
is first imported, and binds the token endpoint (``https://{api host}/oauth2/token``) as a default argument
at that moment. ``from_settings`` therefore re-reads those variables when the store is opened and points the
client's host map and token refresh at them, so a process can set them after import (tests, proxies).

Retries are ours, not the SDK's (its own are switched off so there is one policy): 429 waits for the
server's Retry-After, 5xx and dropped connections back off exponentially from ``backoff_s``; after
``max_retries`` retries the call fails with StoreError. Every put is verified by Dropbox's content hash:
the SDK sends our hash with the upload (Dropbox refuses corrupted bodies) and we compare the hash in the
returned metadata; every get compares the downloaded bytes with the hash in the download metadata.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import dropbox
import requests
from dropbox import files
from dropbox.exceptions import ApiError, AuthError, BadInputError, HttpError, InternalServerError, RateLimitError

from smartmeter.errors import ConfigError, InputError, IntegrityError, NotFoundError, StoreError
from smartmeter.hashing import content_hash
from smartmeter.store.base import ListResult, check_key
from smartmeter.store.dropbox_common import DEFAULT_API_HOST, DEFAULT_NOTIFY_HOST, MAX_SIMPLE_UPLOAD, DropboxBase
from smartmeter.store.local import IMAGE_SUFFIXES
from smartmeter.types import ImageRef, utc

log = logging.getLogger(__name__)

T = TypeVar("T")


# Connection-level failures worth retrying (SSL verification failures are not: they are a configuration fault).
_TRANSIENT = (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError,
              requests.exceptions.Timeout)


class _Client(dropbox.Dropbox):
    """The SDK client, with the token endpoint following our API host instead of the import-time default."""

    token_host: str = DEFAULT_API_HOST

    def refresh_access_token(self, host: str | None = None, scope: list[str] | None = None) -> None:
        super().refresh_access_token(host=host or self.token_host, scope=scope)


class _CaSession(requests.Session):
    """A session whose CA bundle is the one we configured.

    requests lets ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` override ``Session.verify`` when a request does
    not pass ``verify`` (which the SDK never does), so the SDK's own ``ca_certs`` is silently ignored on hosts
    where those variables are set. Proxies and the rest of the environment still apply.
    """

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        settings["verify"] = self.verify
        return settings


def ca_session(ca_certs: Path | str) -> requests.Session:
    session = _CaSession()
    session.verify = str(ca_certs)
    session.mount("https://", requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=8))
    return session


class DropboxStore(DropboxBase):
    def _connect(self, app_key: str, refresh_token: str, app_secret: str | None, ca_certs: Path | str | None) -> None:
        client = _Client(oauth2_refresh_token=refresh_token, app_key=app_key, app_secret=app_secret,
                         timeout=self.timeout_s, max_retries_on_error=0, max_retries_on_rate_limit=0,
                         user_agent="smartmeter", session=ca_session(ca_certs) if ca_certs else None)
        client.token_host = self.api_host
        client._host_map = {"api": self.api_host, "content": self.content_host, "notify": DEFAULT_NOTIFY_HOST}
        self.client = client

    # -- plumbing ---------------------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one SDK call with our retry policy; translate transport and auth failures."""
        delay = self.backoff_s
        attempt = 0
        while True:
            try:
                return fn()
            except RateLimitError as exc:
                wait = float(exc.backoff) if exc.backoff is not None else delay
                reason = f"rate limited (429, retry after {wait:g}s)"
            except InternalServerError as exc:
                wait, reason = delay, f"Dropbox server error {exc.status_code}"
            except requests.exceptions.SSLError as exc:
                raise StoreError(f"{what}: TLS verification with Dropbox failed: {exc}",
                                 hint="check store.dropbox.ca_certs and the system CA bundle") from exc
            except _TRANSIENT as exc:
                wait, reason = delay, f"connection dropped ({type(exc).__name__})"
            except AuthError as exc:
                raise ConfigError(f"{what}: Dropbox refused our credentials ({exc.error})",
                                  hint="the refresh token may be revoked: run 'smartmeter backup auth' "
                                       "(docs/dropbox.md)") from exc
            except BadInputError as exc:
                if "invalid_grant" in str(exc.body) or "invalid_client" in str(exc.body):
                    raise ConfigError(f"{what}: Dropbox refused the app key or refresh token",
                                      hint="see docs/dropbox.md") from exc
                raise
            except HttpError as exc:
                raise StoreError(f"{what}: Dropbox answered HTTP {exc.status_code}: {str(exc.body)[:200]}") from exc
            attempt = self._pause(what, attempt, reason, wait)
            delay *= 2

    # -- the store interface ----------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> ImageRef:
        path = self._path(key)
        if len(data) > MAX_SIMPLE_UPLOAD:
            raise InputError(f"{key}: {len(data)} bytes is larger than a photo can be (150 MiB)")
        expected = content_hash(data)

        def upload() -> files.FileMetadata:
            return self.client.files_upload(data, path, mode=files.WriteMode.overwrite, mute=True,
                                            content_hash=expected)

        try:
            md = self._call(f"put {key}", upload)
        except ApiError as exc:
            err = exc.error
            if isinstance(err, files.UploadError) and err.is_content_hash_mismatch():
                raise IntegrityError(f"{key}: Dropbox received corrupted bytes and refused them "
                                     "(nothing was written)") from exc
            raise StoreError(f"put {key}: Dropbox refused the upload: {err}") from exc
        if md.content_hash != expected or md.size != len(data):
            raise IntegrityError(f"{key}: Dropbox stored hash {str(md.content_hash)[:12]} / {md.size} bytes, "
                                 f"sent {expected[:12]} / {len(data)} bytes")
        log.debug("put %s (%d bytes)", key, len(data))
        return self._ref(md) or ImageRef(key=check_key(key), size=md.size, content_hash=expected)

    def _ref(self, md: files.FileMetadata) -> ImageRef | None:
        key = self._key(md.path_display or md.path_lower or "")
        if key is None:
            return None
        return ImageRef(key=key, size=md.size, content_hash=md.content_hash or "",
                        modified=utc(md.server_modified) if md.server_modified else None)

    def _list_page(self, cursor: str | None, limit: int) -> files.ListFolderResult | None:
        """One page of the listing, or None when the root folder does not exist yet."""
        if cursor:
            try:
                return self._call("list", lambda: self.client.files_list_folder_continue(cursor))
            except ApiError as exc:
                if not (isinstance(exc.error, files.ListFolderContinueError) and exc.error.is_reset()):
                    raise StoreError(f"list: Dropbox refused the cursor: {exc.error}") from exc
                log.warning("Dropbox expired the listing cursor (reset): listing %s again from the beginning; "
                            "photos already seen will be listed again", self.root or "/")
            except BadInputError as exc:
                raise InputError(f"not a Dropbox listing cursor: {cursor[:40]!r}") from exc
        try:
            return self._call("list", lambda: self.client.files_list_folder(
                self.root, recursive=True, limit=max(1, min(limit, 2000))))
        except ApiError as exc:
            err = exc.error
            if isinstance(err, files.ListFolderError) and err.is_path() and err.get_path().is_not_found():
                return None
            raise StoreError(f"list {self.root or '/'}: {err}") from exc

    def list_new(self, cursor: str | None = None, limit: int = 1000) -> ListResult:
        res = self._list_page(cursor, limit)
        if res is None:
            log.info("Dropbox folder %s does not exist yet: nothing to list", self.root or "/")
            return ListResult(refs=[], cursor="", has_more=False)
        refs = []
        for entry in res.entries:
            if not isinstance(entry, files.FileMetadata):
                continue
            name = entry.name
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            ref = self._ref(entry)
            if ref is not None:
                refs.append(ref)
        refs.sort(key=lambda r: r.key)
        return ListResult(refs=refs, cursor=res.cursor, has_more=res.has_more)

    def get(self, key: str) -> bytes:
        path = self._path(key)

        def download() -> tuple[files.FileMetadata, bytes]:
            md, resp = self.client.files_download(path)
            with contextlib.closing(resp):
                return md, resp.content

        try:
            md, data = self._call(f"get {key}", download)
        except ApiError as exc:
            err = exc.error
            if isinstance(err, files.DownloadError) and err.is_path() and err.get_path().is_not_found():
                raise NotFoundError(f"no photo {key!r} in Dropbox {self.root or '/'}") from exc
            raise StoreError(f"get {key}: {err}") from exc
        got = content_hash(data)
        if got != md.content_hash:
            raise IntegrityError(f"{key}: downloaded {len(data)} bytes hash {got[:12]}, Dropbox says "
                                 f"{str(md.content_hash)[:12]} ({md.size} bytes)")
        return data

    def exists(self, key: str) -> bool:
        path = self._path(key)
        try:
            md = self._call(f"stat {key}", lambda: self.client.files_get_metadata(path))
        except ApiError as exc:
            err = exc.error
            if isinstance(err, files.GetMetadataError) and err.is_path() and err.get_path().is_not_found():
                return False
            raise StoreError(f"stat {key}: {err}") from exc
        return isinstance(md, files.FileMetadata)

    def delete(self, key: str) -> None:
        path = self._path(key)
        tries = 0

        def remove() -> files.DeleteResult:
            nonlocal tries
            tries += 1
            return self.client.files_delete_v2(path)

        try:
            self._call(f"delete {key}", remove)
        except ApiError as exc:
            err = exc.error
            if isinstance(err, files.DeleteError) and err.is_path_lookup() and err.get_path_lookup().is_not_found():
                if tries > 1:  # an earlier attempt deleted it but its answer was lost
                    log.info("delete %s: already gone after a retried request", key)
                    return
                raise NotFoundError(f"no photo {key!r} in Dropbox {self.root or '/'}") from exc
            raise StoreError(f"delete {key}: {err}") from exc
        log.debug("deleted %s", key)
