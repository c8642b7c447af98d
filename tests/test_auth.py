"""Auth by default (server.auth): writes refused without credentials, logins with argon2 and CSRF, per-meter
access, read-only open networks; against a real SQLite file through FastAPI's TestClient."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from smartmeter.cli import cli
from smartmeter.errors import ConfigError
from smartmeter.server import auth
from smartmeter.server.api import create_app
from smartmeter.server.database import Database, open_database
from smartmeter.settings import Settings, parse_settings

READING = {"timestamp": "2014-12-12T10:00:00Z", "contatore": 10.0}


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("SMARTMETER_API_TOKEN", raising=False)
    monkeypatch.delenv("SMARTMETER_API_TOKEN_FILE", raising=False)
    url = f"sqlite:///{tmp_path / 'readings.db'}"
    with open_database(url) as db:
        db.register_meter("home")
        db.register_meter("flat2")
        auth.add_user(db, "anna", "correct horse")
        auth.add_user(db, "bob", "battery staple", meters=["flat2"])
    return url


def app_client(db_url: str, settings: Settings | None = None, host: str = "testclient") -> TestClient:
    return TestClient(create_app(settings or Settings(), lambda: open_database(db_url)), client=(host, 50000))


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    with app_client(db_url) as c:
        yield c


def stored(db_url: str, meter: str) -> int:
    with open_database(db_url) as db:
        return len(db.readings(meter))


def login(client: TestClient, user: str, password: str) -> str:
    r = client.post("/login", json={"user": user, "password": password})
    assert r.status_code == 200, r.text
    assert auth.SESSION_COOKIE in r.cookies
    return str(r.json()["csrf"])


def test_writes_are_refused_without_credentials_by_default(client: TestClient, db_url: str) -> None:
    """No token configured, nobody logged in: every write is 401 and nothing is stored (the old app let anyone
    write when no token was set)."""
    for path, body in (("/api/meters", {"id": "x"}), ("/api/meters/home/readings", READING),
                       ("/api/review/some.jpg", {"value": 1.0})):
        r = client.post(path, json=body)
        assert r.status_code == 401, (path, r.text)
        assert r.json()["error"] == "writing needs credentials" and "log in" in r.json()["hint"]
    r = client.post("/api/meters", json={"id": "x"}, headers={"Authorization": "Bearer guess"})
    assert r.status_code == 401 and "no API token" in r.json()["error"]
    assert client.get("/api/meters").status_code == 401  # reads too: no open network configured
    assert stored(db_url, "home") == 0


def test_login_session_and_csrf(client: TestClient, db_url: str) -> None:
    assert client.post("/login", json={"user": "anna", "password": "wrong password"}).status_code == 401
    assert client.post("/login", json={"user": "nobody", "password": "correct horse"}).status_code == 401
    csrf = login(client, "anna", "correct horse")
    assert client.get("/api/meters").json() == {"meters": ["flat2", "home"]}
    me = client.get("/api/session").json()
    assert me == {"user": "anna", "via": "session", "can_write": True, "csrf": csrf, "meters": None}
    # a cookie alone is not enough to write: a forged cross-site form has no CSRF token
    r = client.post("/api/meters/home/readings", json=READING)
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    r = client.post("/api/meters/home/readings", json=READING, headers={"X-CSRF-Token": "not-it"})
    assert r.status_code == 403
    assert stored(db_url, "home") == 0
    r = client.post("/api/meters/home/readings", json=READING, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201 and r.json()["accepted"] == 1
    # logout needs the token too, then the cookie is dead
    assert client.post("/logout").status_code == 403
    r = client.post("/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert client.get("/api/meters").status_code == 401
    assert stored(db_url, "home") == 1


def test_form_login_redirects(client: TestClient) -> None:
    r = client.post("/login", data={"user": "anna", "password": "nope nope"}, follow_redirects=False)
    assert r.status_code == 303 and "error=" in r.headers["location"]
    r = client.post("/login", data={"user": "anna", "password": "correct horse"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert client.get("/").status_code == 200


def test_per_meter_access(client: TestClient, db_url: str) -> None:
    csrf = login(client, "bob", "battery staple")
    assert client.get("/api/meters").json() == {"meters": ["flat2"]}
    for path in ("readings", "latest", "power", "summary", "events"):
        r = client.get(f"/api/meters/home/{path}")
        assert r.status_code == 403 and "no access to meter 'home'" in r.json()["error"], path
        assert client.get(f"/api/meters/flat2/{path}").status_code == 200, path
    headers = {"X-CSRF-Token": csrf}
    assert client.post("/api/meters/home/readings", json=READING, headers=headers).status_code == 403
    assert client.post("/api/meters/flat2/readings", json=READING, headers=headers).status_code == 201
    assert client.post("/api/meters", json={"id": "new"}, headers=headers).status_code == 403
    assert client.get("/metrics").status_code == 403  # metrics span every household
    assert client.get("/api/stream", params={"meter": "home"}).status_code == 404  # not even named to bob
    assert (stored(db_url, "home"), stored(db_url, "flat2")) == (0, 1)


def test_open_network_may_view_but_not_write(db_url: str) -> None:
    settings = Settings(auth={"open_read_networks": ["192.168.1.0/24"]})
    with app_client(db_url, settings, host="192.168.1.20") as lan:
        assert lan.get("/api/meters").json() == {"meters": ["flat2", "home"]}
        assert lan.get("/").status_code == 200
        r = lan.post("/api/meters/home/readings", json=READING)
        assert r.status_code == 401 and "read-only" in r.json()["error"]
    with app_client(db_url, settings, host="10.0.0.5") as outside:
        assert outside.get("/api/meters").status_code == 401
        assert outside.get("/", follow_redirects=False).headers["location"] == "/login"
    assert stored(db_url, "home") == 0
    with pytest.raises(ConfigError, match="not a network"):
        parse_settings("auth:\n  open_read_networks: [192.168.1.0/33]\n")


def test_passwords_are_argon2_hashes_and_cli_manages_users(db_url: str, tmp_path: Path) -> None:
    with open_database(db_url) as db:
        [(hashed,)] = db.query("SELECT password_hash FROM web_users WHERE name = 'anna'")
        assert hashed.startswith("$argon2id$") and "correct horse" not in hashed
        with pytest.raises(Exception, match="at least 8"):
            auth.add_user(db, "carl", "short")
    config = tmp_path / "smartmeter.yaml"
    config.write_text(f"database:\n  url: {db_url}\n")
    secret = tmp_path / "pw"
    secret.write_text("a long password\n")
    run = CliRunner().invoke
    res = run(cli, ["-c", str(config), "user", "add", "carl", "--meter", "home", "--password-file", str(secret)])
    assert res.exit_code == 0, res.output
    assert "carl\thome" in run(cli, ["-c", str(config), "user", "list"]).output
    with app_client(db_url) as c:
        login(c, "carl", "a long password")
        assert c.get("/api/meters").json() == {"meters": ["home"]}
        assert run(cli, ["-c", str(config), "user", "remove", "carl"]).exit_code == 0
        assert c.get("/api/meters").status_code == 401  # its sessions ended with it
    assert run(cli, ["-c", str(config), "user", "remove", "carl"]).exit_code == 66


def test_users_and_sessions_on_both_backends(db: Database) -> None:
    """The web_users / web_sessions queries (migration 006) on SQLite and PostgreSQL."""
    db.register_meter("home")
    auth.add_user(db, "anna", "correct horse", meters=["home"])
    assert auth.verify(db, "anna", "correct horse") and not auth.verify(db, "anna", "Correct horse")
    assert not auth.verify(db, "nobody", "correct horse")
    token, csrf = auth.start_session(db, "anna", 1.0)
    p = auth.session(db, token, 1.0)
    assert p is not None and (p.name, p.via, p.meters, p.csrf) == ("anna", "session", frozenset({"home"}), csrf)
    assert auth.session(db, token + "x", 1.0) is None
    assert db.query("SELECT COUNT(*) FROM web_sessions WHERE token_hash = ?", (token,)) == [(0,)]  # only a hash
    auth.add_user(db, "anna", "a new password")  # a new password ends the old sessions
    assert auth.session(db, token, 1.0) is None and auth.users(db) == [("anna", "*")]
    token, _ = auth.start_session(db, "anna", 1.0)
    auth.end_session(db, token)
    assert auth.session(db, token, 1.0) is None
    expired, _ = auth.start_session(db, "anna", -1.0)
    assert auth.session(db, expired, 1.0) is None


def test_password_guessing_is_throttled(client: TestClient) -> None:
    for _ in range(5):
        assert client.post("/login", json={"user": "anna", "password": "guess guess"}).status_code == 401
    r = client.post("/login", json={"user": "anna", "password": "correct horse"})
    assert r.status_code == 429 and "too many failed logins" in r.json()["error"]
    assert client.post("/login", json={"user": "bob", "password": "battery staple"}).status_code == 429  # same address
    with TestClient(client.app, client=("10.0.0.9", 1)) as other:  # another address, another name: fine
        assert other.post("/login", json={"user": "bob", "password": "battery staple"}).status_code == 200
        assert other.post("/login", json={"user": "anna", "password": "correct horse"}).status_code == 429
