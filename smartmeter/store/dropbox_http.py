"""Dropbox image store over the standard library: the same six API v2 calls as ``dropbox_store.py``, without the SDK.

Chosen by ``store.dropbox.client: http``; the camera daemon on a Pi uses it because importing the Dropbox SDK and
``requests`` costs about 40 MB of resident memory (the SDK builds every namespace of the API, team log included)
while a camera uploads one photo a minute. Behaviour is the SDK store's, checked by the same contract and fault
tests against the TLS fake (tests/test_store_contract.py, tests/test_store_dropbox.py):

- auth: refresh token only; the access token is fetched from ``https://{api host}/oauth2/token`` and refetched
  a minute before it expires, or once when a call answers 401 (expired). Tokens are never logged.
- wire: RPC routes take JSON bodies; ``files/upload`` and ``files/download`` take their argument in the
  ``Dropbox-API-Arg`` header (JSON, non-ASCII escaped), download returns its metadata in ``Dropbox-API-Result``;
  route errors are 409 with ``{"error_summary", "error": {".tag": ...}}``.
- retries: 429 waits for Retry-After, 5xx and dropped connections back off exponentially from ``backoff_s``;
  after ``max_retries`` retries the call fails with StoreError; a TLS verification failure is not retried.
- integrity: every upload sends its content hash (Dropbox refuses a corrupted body) and the returned hash is
  compared; every download is compared with the hash Dropbox reports.
- proxies: ``https_proxy`` / ``no_proxy`` from the environment apply (urllib's own handling).
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smartmeter.errors import ConfigError, InputError, IntegrityError, NotFoundError, StoreError
from smartmeter.hashing import content_hash
from smartmeter.store.base import ListResult, check_key
from smartmeter.store.dropbox_common import MAX_SIMPLE_UPLOAD, DropboxBase
from smartmeter.store.local import IMAGE_SUFFIXES
from smartmeter.types import ImageRef

log = logging.getLogger(__name__)

TOKEN_MARGIN_S = 60.0  # refetch the access token this long before Dropbox says it expires


class _Retry(Exception):
    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.wait = reason, wait


class _Expired(Exception):
    """401 on a call: the access token is no longer good."""


class RouteError(Exception):
    """A 409 from a route: ``tags`` is the chain of ``.tag`` values, e.g. ['path', 'not_found']."""

    def __init__(self, summary: str, error: Any) -> None:
        super().__init__(summary)
        self.summary, self.tags = summary, _tags(error)


class BadInput(StoreError):
    """A 400: Dropbox did not accept the request; ``text`` is what it said."""

    def __init__(self, what: str, text: str) -> None:
        super().__init__(f"{what}: Dropbox refused the request: {text}")
        self.text = text


def _tags(error: Any) -> list[str]:
    out: list[str] = []
    while isinstance(error, dict) and isinstance(error.get(".tag"), str):
        tag = error[".tag"]
        out.append(tag)
        error = error.get(tag) if isinstance(error.get(tag), dict) else error.get("reason")
    return out


def _modified(text: str | None) -> datetime | None:
    try:
        return datetime.strptime(text or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


class DropboxHttpStore(DropboxBase):
    def _connect(self, app_key: str, refresh_token: str, app_secret: str | None, ca_certs: Path | str | None) -> None:
        self._form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": app_key}
        if app_secret:
            self._form["client_secret"] = app_secret
        self._token: str | None = None
        self._token_until = 0.0
        context = ssl.create_default_context(cafile=str(ca_certs) if ca_certs else None)
        self._opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))

    # -- the wire ---------------------------------------------------------------------------------------

    def _send(self, what: str, url: str, body: bytes, headers: dict[str, str]) -> tuple[bytes, Any]:
        """One HTTPS POST -> (body, headers); HTTP errors and transport faults sorted into our exceptions."""
        req = urllib.request.Request(url, data=body, headers={"User-Agent": "smartmeter", **headers}, method="POST")
        try:
            with self._opener.open(req, timeout=self.timeout_s) as resp:
                return resp.read(), resp.headers
        except urllib.error.HTTPError as exc:
            status = exc.code
            try:
                text = exc.read()
            except (OSError, http.client.HTTPException):
                text = b""  # the error body was cut off: the status still says what happened
            finally:
                exc.close()
            if status == 401:
                raise _Expired(text[:200].decode(errors="replace")) from exc
            if status == 409:
                try:
                    payload = json.loads(text)
                except ValueError:
                    payload = {}
                raise RouteError(str(payload.get("error_summary", "")), payload.get("error")) from exc
            if status == 429:
                after = exc.headers.get("Retry-After")
                wait = float(after) if after and after.replace(".", "", 1).isdigit() else None
                raise _Retry(f"rate limited (429, retry after {after or '?'}s)", wait) from exc
            if status >= 500:
                raise _Retry(f"Dropbox server error {status}") from exc
            if status == 400:
                raise BadInput(what, text[:300].decode(errors="replace")) from exc
            raise StoreError(f"{what}: Dropbox answered HTTP {status}: {text[:200]!r}") from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ssl.SSLCertVerificationError):
                raise StoreError(f"{what}: TLS verification with Dropbox failed: {exc.reason}",
                                 hint="check store.dropbox.ca_certs and the system CA bundle") from exc
            raise _Retry(f"connection dropped ({type(exc.reason).__name__})") from exc
        except (OSError, http.client.HTTPException) as exc:  # reset, timeout, truncated body
            raise _Retry(f"connection dropped ({type(exc).__name__})") from exc

    def _access_token(self, what: str) -> str:
        if self._token is not None and time.monotonic() < self._token_until:
            return self._token
        body = urllib.parse.urlencode(self._form).encode()
        try:
            text, _ = self._send(what, f"https://{self.api_host}/oauth2/token", body,
                                 {"Content-Type": "application/x-www-form-urlencoded"})
        except (BadInput, _Expired) as exc:
            try:
                reason = json.loads(exc.text if isinstance(exc, BadInput) else str(exc)).get("error", "refused")
            except (ValueError, AttributeError):
                reason = "refused"
            raise ConfigError(f"{what}: Dropbox refused our credentials ({reason})",
                              hint="the refresh token may be revoked, or the app key or secret is wrong: run "
                                   "'smartmeter backup auth' (docs/dropbox.md)") from exc
        try:
            payload = json.loads(text)
            self._token = str(payload["access_token"])
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{what}: the Dropbox token endpoint answered without an access token") from exc
        self._token_until = time.monotonic() + max(0.0, float(payload.get("expires_in", 14400)) - TOKEN_MARGIN_S)
        return self._token

    def _call(self, what: str, route: str, arg: dict[str, Any], data: bytes | None = None,
              download: bool = False, retried: list[int] | None = None) -> tuple[Any, bytes]:
        """One API call with our retry policy -> (result JSON, downloaded bytes); ``retried[0]`` counts the
        requests sent again after one whose outcome is unknown (dropped, 5xx)."""
        delay, attempt, refreshed = self.backoff_s, 0, False
        while True:
            try:
                token = self._access_token(what)
                headers = {"Authorization": f"Bearer {token}"}
                if data is not None or download:
                    headers["Dropbox-API-Arg"] = json.dumps(arg)
                    headers["Content-Type"] = "application/octet-stream"
                    url, body = f"https://{self.content_host}/2/{route}", data or b""
                else:
                    headers["Content-Type"] = "application/json"
                    url, body = f"https://{self.api_host}/2/{route}", json.dumps(arg).encode()
                text, got = self._send(what, url, body, headers)
                try:
                    if download:
                        return json.loads(got.get("Dropbox-API-Result") or "{}"), text
                    return json.loads(text), b""
                except ValueError as exc:
                    raise StoreError(f"{what}: Dropbox answered something that is not JSON: {text[:80]!r}") from exc
            except _Expired as exc:
                if refreshed:
                    raise ConfigError(f"{what}: Dropbox refused our credentials ({exc})",
                                      hint="run 'smartmeter backup auth' (docs/dropbox.md)") from exc
                log.info("%s: Dropbox access token expired; fetching a new one", what)
                self._token, refreshed = None, True
                continue
            except _Retry as exc:
                wait, reason = (exc.wait if exc.wait is not None else delay), exc.reason
            attempt = self._pause(what, attempt, reason, wait)
            if retried is not None:
                retried[0] += 1
            delay *= 2

    def _ref(self, md: dict[str, Any]) -> ImageRef | None:
        key = self._key(str(md.get("path_display") or md.get("path_lower") or ""))
        if key is None:
            return None
        return ImageRef(key=key, size=int(md.get("size", 0)), content_hash=str(md.get("content_hash") or ""),
                        modified=_modified(md.get("server_modified")))

    # -- the store interface ----------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> ImageRef:
        path = self._path(key)
        if len(data) > MAX_SIMPLE_UPLOAD:
            raise InputError(f"{key}: {len(data)} bytes is larger than a photo can be (150 MiB)")
        expected = content_hash(data)
        arg = {"path": path, "mode": "overwrite", "autorename": False, "mute": True, "content_hash": expected}
        try:
            md, _ = self._call(f"put {key}", "files/upload", arg, data=data)
        except RouteError as exc:
            if exc.tags[:1] == ["content_hash_mismatch"]:
                raise IntegrityError(f"{key}: Dropbox received corrupted bytes and refused them "
                                     "(nothing was written)") from exc
            raise StoreError(f"put {key}: Dropbox refused the upload: {exc.summary}") from exc
        if md.get("content_hash") != expected or md.get("size") != len(data):
            raise IntegrityError(f"{key}: Dropbox stored hash {str(md.get('content_hash'))[:12]} / {md.get('size')} "
                                 f"bytes, sent {expected[:12]} / {len(data)} bytes")
        log.debug("put %s (%d bytes)", key, len(data))
        return self._ref(md) or ImageRef(key=check_key(key), size=len(data), content_hash=expected)

    def _list_page(self, cursor: str | None, limit: int) -> dict[str, Any] | None:
        """One page of the listing, or None when the root folder does not exist yet."""
        if cursor:
            try:
                return self._call("list", "files/list_folder/continue", {"cursor": cursor})[0]
            except RouteError as exc:
                if exc.tags[:1] != ["reset"]:
                    raise StoreError(f"list: Dropbox refused the cursor: {exc.summary}") from exc
                log.warning("Dropbox expired the listing cursor (reset): listing %s again from the beginning; "
                            "photos already seen will be listed again", self.root or "/")
            except BadInput as exc:
                raise InputError(f"not a Dropbox listing cursor: {cursor[:40]!r}") from exc
        arg = {"path": self.root, "recursive": True, "limit": max(1, min(limit, 2000))}
        try:
            return self._call("list", "files/list_folder", arg)[0]
        except RouteError as exc:
            if exc.tags[:2] == ["path", "not_found"]:
                return None
            raise StoreError(f"list {self.root or '/'}: {exc.summary}") from exc

    def list_new(self, cursor: str | None = None, limit: int = 1000) -> ListResult:
        res = self._list_page(cursor, limit)
        if res is None:
            log.info("Dropbox folder %s does not exist yet: nothing to list", self.root or "/")
            return ListResult(refs=[], cursor="", has_more=False)
        refs = []
        for entry in res.get("entries", []):
            name = str(entry.get("name", ""))
            if entry.get(".tag") != "file" or name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            ref = self._ref(entry)
            if ref is not None:
                refs.append(ref)
        refs.sort(key=lambda r: r.key)
        return ListResult(refs=refs, cursor=str(res.get("cursor", "")), has_more=bool(res.get("has_more")))

    def get(self, key: str) -> bytes:
        try:
            md, data = self._call(f"get {key}", "files/download", {"path": self._path(key)}, download=True)
        except RouteError as exc:
            if exc.tags[:2] == ["path", "not_found"]:
                raise NotFoundError(f"no photo {key!r} in Dropbox {self.root or '/'}") from exc
            raise StoreError(f"get {key}: {exc.summary}") from exc
        got = content_hash(data)
        if got != md.get("content_hash"):
            raise IntegrityError(f"{key}: downloaded {len(data)} bytes hash {got[:12]}, Dropbox says "
                                 f"{str(md.get('content_hash'))[:12]} ({md.get('size')} bytes)")
        return data

    def exists(self, key: str) -> bool:
        try:
            md, _ = self._call(f"stat {key}", "files/get_metadata", {"path": self._path(key)})
        except RouteError as exc:
            if exc.tags[:2] == ["path", "not_found"]:
                return False
            raise StoreError(f"stat {key}: {exc.summary}") from exc
        return bool(md.get(".tag") == "file")

    def delete(self, key: str) -> None:
        retried = [0]
        try:
            self._call(f"delete {key}", "files/delete_v2", {"path": self._path(key)}, retried=retried)
        except RouteError as exc:
            if exc.tags[:2] == ["path_lookup", "not_found"]:
                if retried[0]:  # an earlier attempt deleted it but its answer was lost
                    log.info("delete %s: already gone after a retried request", key)
                    return
                raise NotFoundError(f"no photo {key!r} in Dropbox {self.root or '/'}") from exc
            raise StoreError(f"delete {key}: {exc.summary}") from exc
        log.debug("deleted %s", key)
