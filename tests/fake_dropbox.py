"""A local HTTPS fake of the Dropbox API v2 endpoints SmartMeter uses, for tests with the real SDK.

In memory, served by ``http.server`` over TLS with a ``trustme`` CA on a free port. It speaks the wire protocol
the SDK expects: RPC routes take and return JSON bodies; content routes (upload, download) take their argument
in the ``Dropbox-API-Arg`` header and download returns its result in ``Dropbox-API-Result``; route errors are
409 with ``{"error": {".tag": ...}}``; auth errors 401; the token endpoint is ``/oauth2/token``.

Fault switches (``fail_next``): ``drop`` (close the connection mid-transfer: half the download body, or half
the upload read then no answer), ``429`` (with Retry-After), ``500``, ``bad_hash`` (wrong content hash in the
returned metadata), ``corrupt`` (flip a byte: of the upload as received — Dropbox then refuses it — or of the
download body). ``expire_tokens()`` makes every access token expired; ``reset_cursors()`` expires every cursor.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import trustme

from smartmeter.hashing import content_hash

ROUTES = ("files/upload", "files/download", "files/list_folder", "files/list_folder/continue",
          "files/delete_v2", "files/get_metadata", "oauth2/token")


@dataclass
class Entry:
    path: str  # display path, e.g. /smartmeter/m1/x.jpg
    seq: int
    data: bytes | None  # None = folder
    deleted: bool = False
    modified: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class Fault:
    route: str
    kind: str  # drop | 429 | 500 | bad_hash | corrupt
    times: int = 1
    retry_after: int = 1
    after: int = 0  # let this many matching requests through first


class RouteError(Exception):
    def __init__(self, status: int, error: Any, summary: str = "") -> None:
        self.status, self.error, self.summary = status, error, summary


def _ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeDropbox:
    """The server state plus fault switches; ``start()`` serves it, ``api_host`` is ``localhost:PORT``."""

    def __init__(self, tmp_dir: Path, app_key: str = "fake-app-key", refresh_token: str = "fake-refresh-token",
                 app_secret: str | None = None) -> None:
        self.app_key, self.refresh_token, self.app_secret = app_key, refresh_token, app_secret
        self.auth_code = "fake-auth-code"
        self.entries: dict[str, Entry] = {}  # lower-case path -> entry (tombstones kept, deleted=True)
        self.seq = 0
        self.generation = 0
        self.tokens: set[str] = set()
        self.refreshes = 0
        self.calls: list[str] = []
        self.faults: list[Fault] = []
        self.lock = threading.Lock()
        ca = trustme.CA()
        cert = ca.issue_cert("localhost", "127.0.0.1")
        self.ca_file = tmp_dir / "fake-dropbox-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        self._ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(self._ctx)
        self.server: ThreadingHTTPServer | None = None

    # -- switches -----------------------------------------------------------------------------------------

    def fail_next(self, route: str, kind: str, times: int = 1, retry_after: int = 1, after: int = 0) -> None:
        """The next ``times`` calls of ``route`` (after ``after`` good ones) fail with ``kind``.

        Faults of one route queue up: a later one starts counting ``after`` once the earlier ones are used.
        """
        assert route in ROUTES, route
        self.faults.append(Fault(route, kind, times, retry_after, after))

    def expire_tokens(self) -> None:
        self.tokens.clear()

    def reset_cursors(self) -> None:
        self.generation += 1

    def files(self) -> dict[str, bytes]:
        """What is stored: display path -> bytes."""
        return {e.path: e.data for e in self.entries.values() if not e.deleted and e.data is not None}

    def _take_fault(self, route: str) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.route == route:
                    if f.after > 0:
                        f.after -= 1
                        return None
                    f.times -= 1
                    if f.times <= 0:
                        self.faults.remove(f)
                    return f
        return None

    # -- serving ------------------------------------------------------------------------------------------

    def start(self) -> FakeDropbox:
        fake = self

        class Handler(_Handler):
            state = fake

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = self._ctx.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @property
    def api_host(self) -> str:
        assert self.server is not None
        return f"localhost:{self.server.server_address[1]}"

    # -- the model ----------------------------------------------------------------------------------------

    def _bump(self) -> int:
        self.seq += 1
        return self.seq

    def metadata(self, e: Entry, bad_hash: bool = False) -> dict[str, Any]:
        name = e.path.rsplit("/", 1)[-1]
        if e.deleted:
            return {".tag": "deleted", "name": name, "path_lower": e.path.lower(), "path_display": e.path}
        if e.data is None:
            return {".tag": "folder", "name": name, "id": f"id:folder{e.seq}", "path_lower": e.path.lower(),
                    "path_display": e.path}
        digest = content_hash(e.data)
        if bad_hash:
            digest = hashlib.sha256(digest.encode()).hexdigest()
        return {".tag": "file", "name": name, "id": f"id:file{e.seq}", "client_modified": _ts(e.modified),
                "server_modified": _ts(e.modified), "rev": f"{e.seq:015x}", "size": len(e.data),
                "path_lower": e.path.lower(), "path_display": e.path, "is_downloadable": True,
                "content_hash": digest}

    def _lookup(self, path: str, tag: str) -> Entry:
        e = self.entries.get(path.lower())
        if e is None or e.deleted:
            raise RouteError(409, {".tag": tag, tag: {".tag": "not_found"}}, f"{tag}/not_found/")
        return e

    def upload(self, arg: dict[str, Any], body: bytes, fault: Fault | None) -> dict[str, Any]:
        if fault and fault.kind == "corrupt":
            body = bytes([body[0] ^ 0xFF]) + body[1:] if body else b"x"
        if arg.get("content_hash") and arg["content_hash"] != content_hash(body):
            raise RouteError(409, {".tag": "content_hash_mismatch"}, "content_hash_mismatch/")
        path = arg["path"]
        mode = arg.get("mode", "add")
        mode = mode[".tag"] if isinstance(mode, dict) else mode
        with self.lock:
            old = self.entries.get(path.lower())
            if mode == "add" and old is not None and not old.deleted:
                raise RouteError(409, {".tag": "path", "reason": {".tag": "conflict", "conflict": {".tag": "file"}},
                                       "upload_session_id": "x"}, "path/conflict/file/")
            parts = path.strip("/").split("/")
            for i in range(1, len(parts)):  # folders appear implicitly, as on Dropbox
                folder = "/" + "/".join(parts[:i])
                if folder.lower() not in self.entries or self.entries[folder.lower()].deleted:
                    self.entries[folder.lower()] = Entry(folder, self._bump(), None)
            e = Entry(path if old is None else old.path, self._bump(), body)
            self.entries[path.lower()] = e
        return self.metadata(e, bad_hash=bool(fault and fault.kind == "bad_hash"))

    def _cursor(self, path: str, seq: int, limit: int) -> str:
        raw = json.dumps({"p": path, "s": seq, "l": limit, "g": self.generation}).encode()
        return "AAF" + base64.urlsafe_b64encode(raw).decode()

    def _under(self, e: Entry, root: str) -> bool:
        return e.path.lower().startswith(root.lower() + "/") if root else True

    def list_folder(self, path: str, after: int | None, limit: int) -> dict[str, Any]:
        with self.lock:
            if path and after is None:
                self._lookup(path, "path")
            found = sorted((e for e in self.entries.values() if self._under(e, path)
                            and e.seq > (after or 0) and (after is not None or not e.deleted)),
                           key=lambda e: e.seq)
            page, more = found[:limit], len(found) > limit
            last = page[-1].seq if more else max(self.seq, after or 0)
            return {"entries": [self.metadata(e) for e in page], "cursor": self._cursor(path, last, limit),
                    "has_more": more}

    def list_continue(self, cursor: str) -> dict[str, Any]:
        try:
            c = json.loads(base64.urlsafe_b64decode(cursor[3:].encode()))
            path, seq, limit, gen = str(c["p"]), int(c["s"]), int(c["l"]), int(c["g"])
        except (ValueError, KeyError, TypeError) as exc:
            raise RouteError(400, 'Error in call to API function "files/list_folder/continue": '
                                  'Invalid "cursor" parameter') from exc
        if gen != self.generation:
            raise RouteError(409, {".tag": "reset"}, "reset/")
        return self.list_folder(path, seq, limit)

    def delete(self, path: str) -> dict[str, Any]:
        with self.lock:
            e = self._lookup(path, "path_lookup")
            md = self.metadata(e)
            e.deleted, e.seq = True, self._bump()
        return {"metadata": md}

    def token(self, form: dict[str, str]) -> dict[str, Any]:
        if form.get("grant_type") == "authorization_code":  # the no-redirect flow of `smartmeter backup auth`
            proof = bool(form.get("code_verifier")) if self.app_secret is None else \
                form.get("client_secret") == self.app_secret
            if form.get("code") != self.auth_code or form.get("client_id") != self.app_key or not proof:
                raise RouteError(400, {"error": "invalid_grant", "error_description": "code doesn't exist"})
            return {"access_token": "sl.fake-access-0", "token_type": "bearer", "expires_in": 14400,
                    "refresh_token": self.refresh_token, "account_id": "dbid:fake", "uid": "1",
                    "scope": "files.content.read files.content.write files.metadata.read"}
        ok = (form.get("grant_type") == "refresh_token" and form.get("refresh_token") == self.refresh_token
              and form.get("client_id") == self.app_key
              and (self.app_secret is None or form.get("client_secret") == self.app_secret))
        if not ok:
            raise RouteError(400, {"error": "invalid_grant", "error_description": "refresh token is invalid"})
        with self.lock:
            self.refreshes += 1
            tok = f"sl.fake-access-{self.refreshes}"
            self.tokens.add(tok)
        return {"access_token": tok, "token_type": "bearer", "expires_in": 14400}


class _Handler(BaseHTTPRequestHandler):
    state: FakeDropbox
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json", extra: dict[str, str] | None = None,
              cut: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if cut else body)
        if cut:
            self.close_connection = True

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        fake = self.state
        route = self.path.removeprefix("/2/").lstrip("/")
        fake.calls.append(route)
        length = int(self.headers.get("Content-Length") or 0)
        fault = fake._take_fault(route)
        if fault and fault.kind == "drop" and route != "files/download":
            self.rfile.read(length // 2)  # half the upload arrives, then the line goes dead
            self.close_connection = True
            return
        body = self.rfile.read(length)
        if fault and fault.kind == "429":
            self._send(429, b"too_many_requests", "text/plain", {"Retry-After": str(fault.retry_after)})
            return
        if fault and fault.kind == "500":
            self._send(500, b"internal server error", "text/plain")
            return
        try:
            self._route(route, body, fault)
        except RouteError as err:
            if err.status == 400 and isinstance(err.error, str):
                self._send(400, err.error.encode(), "text/plain")
            elif err.status == 400 or err.status == 401:
                payload = err.error if err.status == 400 else {"error_summary": err.summary, "error": err.error}
                self._send(err.status, json.dumps(payload).encode())
            else:
                self._send(err.status, json.dumps({"error_summary": err.summary, "error": err.error}).encode())

    def _route(self, route: str, body: bytes, fault: Fault | None) -> None:
        fake = self.state
        if route == "oauth2/token":
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            self._send(200, json.dumps(fake.token(form)).encode())
            return
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in fake.tokens:
            tag = "expired_access_token" if auth.startswith("Bearer sl.fake-access-") else "invalid_access_token"
            raise RouteError(401, {".tag": tag}, f"{tag}/")
        if route in ("files/upload", "files/download"):
            arg = json.loads(self.headers["Dropbox-API-Arg"])
        else:
            arg = json.loads(body or b"{}")
        if route == "files/upload":
            self._send(200, json.dumps(fake.upload(arg, body, fault)).encode())
        elif route == "files/download":
            e = fake._lookup(arg["path"], "path")
            assert e.data is not None
            data = e.data
            if fault and fault.kind == "corrupt":
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            md = fake.metadata(e, bad_hash=bool(fault and fault.kind == "bad_hash"))
            self._send(200, data, "application/octet-stream", {"Dropbox-API-Result": json.dumps(md)},
                       cut=bool(fault and fault.kind == "drop"))
        elif route == "files/list_folder":
            self._send(200, json.dumps(fake.list_folder(arg["path"], None, int(arg.get("limit") or 2000))).encode())
        elif route == "files/list_folder/continue":
            self._send(200, json.dumps(fake.list_continue(arg["cursor"])).encode())
        elif route == "files/delete_v2":
            self._send(200, json.dumps(fake.delete(arg["path"])).encode())
        elif route == "files/get_metadata":
            self._send(200, json.dumps(fake.metadata(fake._lookup(arg["path"], "path"))).encode())
        else:
            self._send(404, b"unknown route", "text/plain")
