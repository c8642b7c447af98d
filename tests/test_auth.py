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
    assert r.status_code == 401 and "no global API token" in r.json()["hint"]
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


def make_token(db_url: str, *meters: str, name: str | None = None) -> tuple[str, str]:
    with open_database(db_url) as db:
        return auth.create_token(db, meters, name)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_per_meter_token_writes_and_reads_only_its_meter(client: TestClient, db_url: str) -> None:
    """Real HTTP through the app: a flat2 token ingests for flat2, is refused (403) for home and stores nothing
    there; it sees only flat2; it may register its own meter id and no other."""
    _, token = make_token(db_url, "flat2", name="pi-flat2")
    h = bearer(token)
    assert token.startswith("smt_")
    r = client.post("/api/meters/home/readings", json=READING, headers=h)
    assert r.status_code == 403 and "no access to meter 'home'" in r.json()["error"]
    assert client.post("/api/meters/home/setup/photo", content=b"\x89PNG not really", headers=h).status_code == 403
    assert stored(db_url, "home") == 0
    r = client.post("/api/meters/flat2/readings", json=READING, headers=h)
    assert r.status_code == 201 and r.json()["accepted"] == 1
    assert client.get("/api/meters", headers=h).json() == {"meters": ["flat2"]}
    for path in ("readings", "latest", "events"):
        assert client.get(f"/api/meters/home/{path}", headers=h).status_code == 403, path
        assert client.get(f"/api/meters/flat2/{path}", headers=h).status_code == 200, path
    me = client.get("/api/session", headers=h).json()
    assert me == {"user": "token:pi-flat2", "via": "token", "can_write": True, "csrf": None, "meters": ["flat2"]}
    assert client.post("/api/meters", json={"id": "flat2"}, headers=h).status_code == 200  # a machine restarting
    assert client.post("/api/meters", json={"id": "flat3"}, headers=h).status_code == 403
    assert client.post("/api/meters", json={}, headers=h).status_code == 403  # a new server-assigned id: admin only
    assert client.get("/metrics", headers=h).status_code == 403
    assert (stored(db_url, "home"), stored(db_url, "flat2")) == (0, 1)
    with open_database(db_url) as db:
        assert "flat3" not in db.meters()
        [(hashed, used)] = db.query("SELECT token_hash, used_ms FROM machine_tokens")
    assert token not in hashed and token.split("_", 2)[2] not in hashed and used is not None  # only a hash kept


def test_revoked_and_forged_tokens_are_401_and_store_nothing(client: TestClient, db_url: str) -> None:
    tid, token = make_token(db_url, "home")
    assert client.post("/api/meters/home/readings", json=READING, headers=bearer(token)).status_code == 201
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")  # right id, wrong secret
    for wrong in (forged, f"smt_{tid}", "smt_zzzzzzzzzzzz_x", "x" * 500):
        r = client.post("/api/meters/home/readings", json=READING, headers=bearer(wrong))
        assert r.status_code == 401 and r.json()["error"] == "missing or wrong API token", wrong
        assert "token create" in r.json()["hint"]  # no global token here: where per-meter ones come from
    with open_database(db_url) as db:
        assert auth.revoke_token(db, tid) == [tid]
        with pytest.raises(Exception, match="no live machine token"):
            auth.revoke_token(db, tid)
    later = {**READING, "timestamp": "2014-12-12T11:00:00Z"}
    r = client.post("/api/meters/home/readings", json=later, headers=bearer(token))
    assert r.status_code == 401 and "revoked" in r.json()["error"] and r.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/meters/home/readings", headers=bearer(token)).status_code == 401
    # a revoked token with a login cookie is still refused: a token that is sent must be right
    login(client, "anna", "correct horse")
    assert client.get("/api/meters", headers=bearer(token)).status_code == 401
    assert stored(db_url, "home") == 1


def test_global_token_keeps_working_beside_per_meter_tokens(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMARTMETER_API_TOKEN", "the-admin-token")
    _, token = make_token(db_url, "home", "flat2", name="shared")
    with app_client(db_url) as c:
        assert c.get("/api/meters", headers=bearer("the-admin-token")).json() == {"meters": ["flat2", "home"]}
        assert c.post("/api/meters", json={"id": "new"}, headers=bearer("the-admin-token")).status_code == 201
        assert c.get("/metrics", headers=bearer("the-admin-token")).status_code == 200
        assert c.get("/api/meters", headers=bearer(token)).json() == {"meters": ["flat2", "home"]}  # its two
        r = c.get("/api/meters", headers=bearer("the-admin-tokenX"))
        assert r.status_code == 401 and r.json()["hint"] == "send Authorization: Bearer <token>"
        assert c.get("/api/meters", headers={"Authorization": "Basic the-admin-token"}).status_code == 401


def test_cli_creates_lists_and_revokes_tokens(client: TestClient, db_url: str, tmp_path: Path) -> None:
    config = tmp_path / "smartmeter.yaml"
    config.write_text(f"database:\n  url: {db_url}\n")
    run = CliRunner().invoke
    res = run(cli, ["-c", str(config), "user", "token", "create", "--meter", "home", "--name", "pi-home"])
    assert res.exit_code == 0, res.output
    token = res.stdout.strip()
    assert token.startswith("smt_") and "shown this once" in res.stderr
    assert client.get("/api/meters", headers=bearer(token)).json() == {"meters": ["home"]}
    res = run(cli, ["-c", str(config), "user", "token", "create", "--meter", "garage"])
    assert res.exit_code == 0 and "not registered yet" in res.stderr
    listed = run(cli, ["-c", str(config), "user", "token", "list"]).stdout
    assert token not in listed and "\tpi-home\thome\t" in listed and "\tgarage\tgarage\t" in listed
    assert listed.count("\tlive") == 2
    assert run(cli, ["-c", str(config), "user", "token", "revoke", "pi-home"]).exit_code == 0
    assert client.get("/api/meters", headers=bearer(token)).status_code == 401
    listed = run(cli, ["-c", str(config), "user", "token", "list"]).stdout
    assert listed.count("\tlive") == 1 and "revoked 20" in listed
    assert run(cli, ["-c", str(config), "user", "token", "revoke", "pi-home"]).exit_code == 66
    assert run(cli, ["-c", str(config), "user", "token", "create", "--meter", "a,b"]).exit_code != 0
    assert run(cli, ["-c", str(config), "user", "token", "create"]).exit_code != 0  # --meter is required


def test_machine_tokens_on_both_backends(db: Database) -> None:
    """The machine_tokens queries (migration 009) on SQLite and PostgreSQL."""
    tid, token = auth.create_token(db, ["home", "flat2"])
    p = auth.machine_principal(db, token)
    assert p is not None and (p.name, p.via, p.meters) == ("token:flat2", "token", frozenset({"flat2", "home"}))
    assert auth.machine_principal(db, token + "x") is None and auth.machine_principal(db, "guess") is None
    [t] = auth.machine_tokens(db)
    assert (t.id, t.meters, t.revoked_ms) == (tid, "flat2,home", None) and t.used_ms is not None
    assert auth.revoke_token(db, "flat2") == [tid]
    with pytest.raises(auth.Unauthorized, match="revoked"):
        auth.machine_principal(db, token)
    with pytest.raises(Exception, match="at least one meter"):
        auth.create_token(db, [])
