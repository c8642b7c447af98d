"""Who may read and write over HTTP: the machine token, people's logins, open read-only networks.

Writes (ingest, meters, review) are refused without credentials, always:

- machines send ``Authorization: Bearer <token>``. The global token is the secret ``api_token``
  (``SMARTMETER_API_TOKEN`` or ``SMARTMETER_API_TOKEN_FILE``), never the settings or the repository; it sees
  every meter (admin). A per-meter token (``smartmeter user token create --meter ID``, ``smt_<id>_<secret>``)
  reads and writes only its meters; only its SHA-256 is stored, and ``token revoke`` ends it at once.
- people log in (``POST /login``) with a name and password added by ``smartmeter user add``; the password is
  kept as an argon2id hash. The session cookie is HttpOnly and SameSite=Strict, and a write made with it must
  also send the session's CSRF token in ``X-CSRF-Token`` (the dashboard's pages carry it). A user sees and
  changes only the meters listed for them (``*`` = all): several households on one server.
- reads need one of the two as well, unless the client's address is in ``auth.open_read_networks`` (a LAN):
  those clients may view everything, and write nothing.

Users and sessions live in the readings database (``web_users``, ``web_sessions``; migration 006), machine
tokens too (``machine_tokens``; migration 009).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from smartmeter.domain import check_meter_id
from smartmeter.errors import InputError, NotFoundError, SmartMeterError
from smartmeter.server.database import Database, now_ms
from smartmeter.settings import AuthSettings

SESSION_COOKIE = "smartmeter_session"
MAX_TOKEN_CHARS = 200
CSRF_HEADER = "x-csrf-token"
_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash("not a password")  # same work for unknown names: no user enumeration by timing


class Unauthorized(SmartMeterError):
    """A request without valid credentials (no token, wrong token, no login)."""

    exit_code = 77  # EX_NOPERM
    http_status = 401


class Forbidden(SmartMeterError):
    """Credentials are valid but do not allow this (another household's meter, a write from an open network,
    a cookie write without the CSRF token)."""

    exit_code = 77
    http_status = 403


@dataclass(frozen=True)
class Principal:
    """Who is asking: ``meters`` None = every meter; ``can_write`` False for open-network viewers."""

    name: str
    via: str  # token | session | network
    meters: frozenset[str] | None = None
    can_write: bool = True
    csrf: str | None = None  # the session's CSRF token (cookie logins only)

    def sees(self, meter_id: str) -> bool:
        return self.meters is None or meter_id in self.meters

    def check_meter(self, meter_id: str) -> None:
        if not self.sees(meter_id):
            raise Forbidden(f"user {self.name!r} has no access to meter {meter_id!r}")

    def visible(self, meter_ids: Iterable[str]) -> list[str]:
        return [m for m in meter_ids if self.sees(m)]


class Gate:
    """Decides a request's principal from its headers, cookie and client address."""

    def __init__(self, cfg: AuthSettings, token: str | None) -> None:
        self.cfg = cfg
        self.token = token.encode() if token else None
        self.networks = [ipaddress.ip_network(n, strict=False) for n in cfg.open_read_networks]

    def bearer(self, authorization: str) -> str:
        """The token of an ``Authorization: Bearer <token>`` header (401 for another scheme or an empty one)."""
        scheme, _, given = authorization.partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given or len(given) > MAX_TOKEN_CHARS:
            raise self.wrong_token()
        return given

    def admin(self, given: str) -> Principal | None:
        """The machine principal of every meter when ``given`` is the global token, else None."""
        if self.token is not None and hmac.compare_digest(given.encode(), self.token):
            return Principal("api-token", "token")
        return None

    def wrong_token(self) -> Unauthorized:
        hint = "send Authorization: Bearer <token>"
        if self.token is None:
            hint = ("this server has no global API token (SMARTMETER_API_TOKEN(_FILE)); per-meter tokens come "
                    "from `smartmeter user token create`, or log in")
        return Unauthorized("missing or wrong API token", hint=hint)

    def open_network(self, client_host: str | None) -> Principal | None:
        if not client_host or not self.networks:
            return None
        try:
            addr = ipaddress.ip_address(client_host)
        except ValueError:
            return None
        if any(addr in net for net in self.networks):
            return Principal(f"viewer@{client_host}", "network", can_write=False)
        return None


def check_write(p: Principal | None, csrf_sent: str | None) -> Principal:
    """The principal a write may go ahead with, or the reason it may not."""
    if p is None:
        raise Unauthorized("writing needs credentials", hint="send Authorization: Bearer <token>, or log in")
    if not p.can_write:
        raise Unauthorized("viewing from an open network is read-only; writing needs credentials",
                           hint="log in, or send Authorization: Bearer <token>")
    if p.via == "session" and not (csrf_sent and p.csrf and hmac.compare_digest(csrf_sent.encode(),
                                                                                p.csrf.encode())):
        raise Forbidden("missing or wrong CSRF token", hint=f"send the page's token in {CSRF_HEADER}")
    return p


class TooManyAttempts(SmartMeterError):
    """Too many failed logins from one address or for one name in a short time."""

    exit_code = 75  # EX_TEMPFAIL
    http_status = 429


class LoginThrottle:
    """At most ``limit`` failed logins per client address and per user name in ``window_s``; past that, logins
    from there (or for that name) are refused until the window has passed (guessing passwords stays slow)."""

    def __init__(self, limit: int = 5, window_s: float = 300.0) -> None:
        self.limit, self.window_s = limit, window_s
        self.failures: dict[str, list[float]] = {}
        self.lock = threading.Lock()

    def _recent(self, key: str, now: float) -> list[float]:
        times = [t for t in self.failures.get(key, []) if now - t < self.window_s]
        if times:
            self.failures[key] = times
        else:
            self.failures.pop(key, None)
        return times

    def check(self, client: str, user: str) -> None:
        now = time.monotonic()
        with self.lock:
            for key in (f"ip:{client}", f"user:{user}"):
                times = self._recent(key, now)
                if len(times) >= self.limit:
                    wait = int(self.window_s - (now - times[0])) + 1
                    raise TooManyAttempts(f"too many failed logins; try again in {wait} s")

    def failed(self, client: str, user: str) -> None:
        now = time.monotonic()
        with self.lock:
            if len(self.failures) > 10_000:  # bounded memory under a spray of addresses and names
                self.failures = {k: v for k, v in self.failures.items() if now - v[-1] < self.window_s}
            for key in (f"ip:{client}", f"user:{user}"):
                self.failures.setdefault(key, []).append(now)


# ---- users and sessions (web_users, web_sessions) --------------------------------------------------------
def _meters_text(meters: Iterable[str] | None) -> str:
    if meters is None:
        return "*"
    ids = sorted(set(meters))
    for m in ids:
        check_meter_id(m)
    return ",".join(ids) or "*"


def _meters_set(text: str) -> frozenset[str] | None:
    return None if text.strip() == "*" else frozenset(m for m in text.split(",") if m)


def add_user(db: Database, name: str, password: str, meters: Iterable[str] | None = None) -> None:
    """Create or replace a login (the password is hashed with argon2id; the old sessions end)."""
    if not name or len(name) > 64 or not name.isprintable() or name != name.strip():
        raise InputError(f"bad user name {name!r}: 1-64 printable characters, no surrounding spaces")
    if len(password) < 8:
        raise InputError("the password must have at least 8 characters")
    with db.transaction():
        db.execute("DELETE FROM web_sessions WHERE user_name = ?", (name,))
        db.execute("DELETE FROM web_users WHERE name = ?", (name,))
        db.execute("INSERT INTO web_users (name, password_hash, meters, created_ms) VALUES (?, ?, ?, ?)",
                   (name, _HASHER.hash(password), _meters_text(meters), now_ms()))


def remove_user(db: Database, name: str) -> None:
    with db.transaction():
        db.execute("DELETE FROM web_sessions WHERE user_name = ?", (name,))
        if not db.execute("DELETE FROM web_users WHERE name = ?", (name,)):
            raise NotFoundError(f"no user {name!r}")


def users(db: Database) -> list[tuple[str, str]]:
    """(name, meters) of every login."""
    return [(str(n), str(m)) for n, m in db.query("SELECT name, meters FROM web_users ORDER BY name")]


def verify(db: Database, name: str, password: str) -> bool:
    rows = db.query("SELECT password_hash FROM web_users WHERE name = ?", (name,))
    try:
        return bool(_HASHER.verify(rows[0][0] if rows else _DUMMY_HASH, password)) and bool(rows)
    except (VerificationError, InvalidHashError):
        return False


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(db: Database, name: str, hours: float) -> tuple[str, str]:
    """A new session for ``name``: (cookie value, CSRF token). Expired sessions are swept here."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    now = now_ms()
    with db.transaction():
        db.execute("DELETE FROM web_sessions WHERE expires_ms < ?", (now,))
        db.execute("INSERT INTO web_sessions (token_hash, user_name, csrf, expires_ms) VALUES (?, ?, ?, ?)",
                   (_hash(token), name, csrf, now + int(hours * 3_600_000)))
    return token, csrf


def session(db: Database, token: str, hours: float) -> Principal | None:
    """The principal of a live session cookie (its expiry moves on), or None."""
    if not token or len(token) > 100:
        return None
    now = now_ms()
    rows = db.query("SELECT s.user_name, s.csrf, s.expires_ms, u.meters FROM web_sessions s JOIN web_users u "
                    "ON u.name = s.user_name WHERE s.token_hash = ?", (_hash(token),))
    if not rows or int(rows[0][2]) < now:
        return None
    name, csrf, expires, meters = rows[0]
    if int(expires) - now < hours * 3_600_000 / 2:  # refresh at most every half lifetime: reads stay reads
        db.execute("UPDATE web_sessions SET expires_ms = ? WHERE token_hash = ?",
                   (now + int(hours * 3_600_000), _hash(token)))
    return Principal(str(name), "session", _meters_set(str(meters)), csrf=str(csrf))


def end_session(db: Database, token: str) -> None:
    db.execute("DELETE FROM web_sessions WHERE token_hash = ?", (_hash(token),))


# ---- per-meter machine tokens (machine_tokens) ------------------------------------------------------------
TOKEN_PREFIX = "smt_"
_TOKEN_ID_HEX = 12
_USED_EVERY_MS = 3_600_000  # used_ms is written at most once an hour per token: reads stay reads


@dataclass(frozen=True)
class MachineToken:
    """One row of ``token list`` (never the token itself)."""

    id: str
    name: str
    meters: str
    created_ms: int
    used_ms: int | None
    revoked_ms: int | None


def token_id(given: str) -> str | None:
    """The public id a per-meter token begins with (``smt_<12 hex>_<secret>``), None for any other form."""
    tid = given[len(TOKEN_PREFIX):len(TOKEN_PREFIX) + _TOKEN_ID_HEX]
    if (not given.startswith(TOKEN_PREFIX) or given[len(TOKEN_PREFIX) + _TOKEN_ID_HEX:][:1] != "_"
            or len(tid) != _TOKEN_ID_HEX or any(c not in "0123456789abcdef" for c in tid)):
        return None
    return tid


def create_token(db: Database, meters: Iterable[str], name: str | None = None) -> tuple[str, str]:
    """A new token for ``meters`` (at least one): (its id, the token). The token is shown this once: only its
    SHA-256 is stored."""
    ids = sorted(set(meters))
    if not ids:
        raise InputError("a machine token needs at least one meter", hint="--meter ID (repeat for more)")
    text = _meters_text(ids)
    tid = secrets.token_hex(_TOKEN_ID_HEX // 2)
    name = ids[0] if name is None else name
    if not name or len(name) > 64 or not name.isprintable() or name != name.strip():
        raise InputError(f"bad token name {name!r}: 1-64 printable characters, no surrounding spaces")
    token = f"{TOKEN_PREFIX}{tid}_{secrets.token_urlsafe(32)}"
    db.execute("INSERT INTO machine_tokens (id, name, token_hash, meters, created_ms) VALUES (?, ?, ?, ?, ?)",
               (tid, name, _hash(token), text, now_ms()))
    return tid, token


def machine_tokens(db: Database) -> list[MachineToken]:
    rows = db.query("SELECT id, name, meters, created_ms, used_ms, revoked_ms FROM machine_tokens "
                    "ORDER BY created_ms, id")
    return [MachineToken(str(i), str(n), str(m), int(c), None if u is None else int(u),
                         None if r is None else int(r)) for i, n, m, c, u, r in rows]


def revoke_token(db: Database, which: str) -> list[str]:
    """Revoke the token with id ``which``, or every live token named ``which``; returns the ids revoked."""
    with db.transaction():
        rows = db.query("SELECT id FROM machine_tokens WHERE (id = ? OR name = ?) AND revoked_ms IS NULL",
                        (which, which))
        if not rows:
            raise NotFoundError(f"no live machine token with id or name {which!r}", hint="smartmeter user token list")
        ids = sorted(str(r[0]) for r in rows)
        now = now_ms()
        for tid in ids:
            db.execute("UPDATE machine_tokens SET revoked_ms = ? WHERE id = ?", (now, tid))
    return ids


def machine_principal(db: Database, given: str) -> Principal | None:
    """The principal of a per-meter token: its meters only. None when ``given`` is no such token; 401 when it
    was revoked."""
    tid = token_id(given)
    if tid is None:
        return None
    rows = db.query("SELECT name, token_hash, meters, used_ms, revoked_ms FROM machine_tokens WHERE id = ?", (tid,))
    if not rows or not hmac.compare_digest(str(rows[0][1]).encode(), _hash(given).encode()):
        return None
    name, _, meters, used, revoked = rows[0]
    if revoked is not None:
        raise Unauthorized(f"machine token {tid} was revoked", hint="create a new one: smartmeter user token create")
    now = now_ms()
    if used is None or now - int(used) > _USED_EVERY_MS:
        db.execute("UPDATE machine_tokens SET used_ms = ? WHERE id = ?", (now, tid))
    return Principal(f"token:{name}", "token", frozenset(m for m in str(meters).split(",") if m))  # never "all"
