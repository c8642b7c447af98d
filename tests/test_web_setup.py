"""The meter setup API (server.web.setup) in-process against a real SQLite file, image store and the shipped CNN:
a photo uploaded or taken from the store, auto-locate's proposal, the live reading of an edited profile, the
profile saved as the YAML ``smartmeter read --profile`` reads, the register confirmed once; and every refusal
(401 without credentials, 403 without CSRF, 404 unknown meter or no photo, 409 no profile path, 422 bad edits)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smartmeter.ocr.pipeline import MeterReader
from smartmeter.ocr.profile import load_profile
from smartmeter.ocr.readers.cnn import CnnReader
from smartmeter.server import auth, photos_repo
from smartmeter.server.api import create_app
from smartmeter.server.database import Database, open_database
from smartmeter.server.photos_repo import PhotoRow
from smartmeter.server.web import setup as setup_mod
from smartmeter.server.web.context import Web
from smartmeter.settings import MeterSettings, Settings
from smartmeter.types import DigitValue

TOKEN = "test-token-1234"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PHOTOS = Path(__file__).resolve().parent / "resources" / "photos"
UPRIGHT_BOXES = [[108 + 52 * i, 202, 38, 58] for i in range(8)]  # tests/resources/photos/meter.yaml
DRAFT: dict[str, Any] = {"rotate": 0, "flip": "none", "kind": "drum", "decimals": 1, "digits": UPRIGHT_BOXES}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "profile").mkdir()
    shutil.copy(PHOTOS / "meter.yaml", tmp_path / "profile" / "meter.yaml")
    shutil.copy(PHOTOS / "reference.jpg", tmp_path / "profile" / "reference.jpg")
    (tmp_path / "images").mkdir()
    return tmp_path


def server(work: Path) -> TestClient:
    """A fresh app on the test's database and files (a second one = the server restarted)."""
    url = f"sqlite:///{work / 'readings.db'}"
    settings = Settings(meters=[MeterSettings(id="meter", profile=work / "profile" / "meter.yaml"),
                                MeterSettings(id="bare")], store={"local": {"root": work / "images"}})
    return TestClient(create_app(settings, lambda: open_database(url)), headers=AUTH)


@pytest.fixture
def client(work: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("SMARTMETER_API_TOKEN", TOKEN)
    monkeypatch.delenv("SMARTMETER_API_TOKEN_FILE", raising=False)
    with open_database(f"sqlite:///{work / 'readings.db'}") as db:
        db.register_meter("meter")
        db.register_meter("bare")
        auth.add_user(db, "anna", "correct horse")
    with server(work) as c:
        yield c


def upload(client: TestClient, name: str = "reference.jpg", meter: str = "meter") -> Any:
    return client.post(f"/api/meters/{meter}/setup/photo", content=(PHOTOS / name).read_bytes(),
                       headers={"Content-Type": "image/jpeg"})


def test_state_photo_and_live_reading(client: TestClient) -> None:
    state = client.get("/api/meters/meter/setup").json()
    assert state["profile"]["digits"] == UPRIGHT_BOXES and state["profile"]["decimals"] == 1
    assert state["photo"] is False and state["confirm_hint"] is None  # no photos read yet: nothing to confirm
    assert client.post("/api/meters/meter/setup/read", json=DRAFT).status_code == 404  # no photo yet
    r = upload(client)
    assert r.status_code == 200, r.text
    assert (r.json()["width"], r.json()["height"]) == (640, 480)
    assert client.get("/api/meters/meter/setup").json()["photo"] is True
    png = client.get("/api/meters/meter/setup/photo.png", params={"rotate": 90})
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"

    live = client.post("/api/meters/meter/setup/read", json=DRAFT).json()
    assert live["reading"] == "5555555.5" and live["error"] is None, live  # the reference photo shows 55555555
    assert [b["name"] for b in live["boxes"]][:2] == ["digit 1", "digit 2"]
    # the edit is what is read: boxes moved 60 px down are off the drums, and the page is told so
    off = client.post("/api/meters/meter/setup/read",
                      json={**DRAFT, "digits": [[x, y + 60, w, h] for x, y, w, h in UPRIGHT_BOXES]}).json()
    assert off["reading"] != "5555555.5"
    # decimals are the draft's: the same drums with 3 decimals
    assert client.post("/api/meters/meter/setup/read", json={**DRAFT, "decimals": 3}).json()["reading"] == "55555.555"


def stored_photos(work: Path, meter: str = "meter") -> list[tuple[int, int]]:
    with open_database(f"sqlite:///{work / 'readings.db'}") as db:
        return [(int(q), int(n)) for q, n in db.query("SELECT seq, bytes FROM setup_photos WHERE meter_id = ? "
                                                        "ORDER BY seq", (meter,))]


def test_setup_photo_survives_a_restart(client: TestClient, work: Path) -> None:
    """The uploaded photo is stored, not held in memory: a restarted server still has it mid-setup."""
    assert upload(client).status_code == 200
    live = client.post("/api/meters/meter/setup/read", json=DRAFT).json()
    client.close()
    with server(work) as restarted:
        assert restarted.get("/api/meters/meter/setup").json()["photo"] is True
        assert restarted.post("/api/meters/meter/setup/read", json=DRAFT).json() == live
        assert restarted.get("/api/meters/bare/setup").json()["photo"] is False
        assert restarted.post("/api/meters/meter/setup/save", json=DRAFT).status_code == 200


def test_setup_photos_are_bounded_and_pruned(client: TestClient, work: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """At most KEEP_PER_METER photos per meter (the oldest pruned; the newest is edited), none over the size cap,
    and a refused upload stores nothing and keeps the current photo."""
    names = ["reference.jpg", "upright.jpg", "reference.jpg", "upright.jpg", "reference.jpg"]
    for name in names:
        assert upload(client, name).status_code == 200
    sizes = [(PHOTOS / n).stat().st_size for n in names]
    assert stored_photos(work) == list(zip(range(3, 6), sizes[2:], strict=True))
    assert client.post("/api/meters/meter/setup/read", json=DRAFT).json()["reading"] == "5555555.5"  # the newest
    assert upload(client, "upright.jpg", meter="bare").status_code == 200
    assert stored_photos(work, "bare") == [(1, sizes[1])] and len(stored_photos(work)) == 3  # per meter
    monkeypatch.setattr(setup_mod, "MAX_PHOTO_BYTES", sizes[0] - 1)
    r = upload(client)
    assert r.status_code == 413 and f"at most {sizes[0] - 1}" in r.json()["error"]
    assert 400 <= upload(client, "meter.yaml").status_code < 500  # not an image: refused, nothing stored
    assert stored_photos(work)[-1] == (5, sizes[4])
    assert client.post("/api/meters/meter/setup/read", json=DRAFT).json()["reading"] == "5555555.5"


def test_setup_photos_on_both_backends(db: Database) -> None:
    """The setup_photos queries (migration 009) on SQLite and PostgreSQL; a second server (its own cache)
    sees the newest photo the first one stored."""
    db.register_meter("meter")
    ours, theirs = (setup_mod.Setup(Web(Settings(), lambda: db, None)) for _ in range(2))
    photos = [(PHOTOS / n).read_bytes() for n in ("reference.jpg", "upright.jpg")]
    assert ours.newest(db, "meter") is None
    for i in range(4):
        ours.keep(db, "meter", photos[i % 2])
    assert ours.photo(db, "meter") == theirs.photo(db, "meter") == photos[1]
    theirs.keep(db, "meter", photos[0])
    assert ours.photo(db, "meter") == photos[0] and ours.newest(db, "meter") == 5
    assert db.query("SELECT COUNT(*) FROM setup_photos") == [(setup_mod.KEEP_PER_METER,)]


def test_auto_locate_proposes_the_counter(client: TestClient) -> None:
    assert upload(client, "upright.jpg").status_code == 200
    r = client.post("/api/meters/meter/setup/propose", json={"rotate": 0, "flip": "none"})
    assert r.status_code == 200, r.text
    found = r.json()
    assert found["located"] and len(found["digits"]) == 8
    for (x, y, _w, _h), (ex, ey, _, _) in zip(found["digits"], UPRIGHT_BOXES, strict=True):
        assert abs(x - ex) < 15 and abs(y - ey) < 15, found["digits"]


def test_save_writes_the_profile_yaml_that_reads(client: TestClient, work: Path) -> None:
    assert upload(client).status_code == 200
    moved = [[x + 2, y, w, h] for x, y, w, h in UPRIGHT_BOXES]
    r = client.post("/api/meters/meter/setup/save", json={**DRAFT, "digits": moved})
    assert r.status_code == 200, r.text
    path = work / "profile" / "meter.yaml"
    saved = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert saved["digits"] == moved and saved["decimals"] == 1 and saved["reference"] == "meter-reference.png"
    assert saved["alignment"]["max_shift_px"] == 80 and saved["reader"] in ("cnn", {"engine": "cnn"})
    assert "min_confidence" in saved  # the file had it: kept
    assert r.json()["yaml"] == path.read_text(encoding="utf-8")
    prof = load_profile(path)
    assert prof.reference is not None and prof.reference.read_bytes()[:4] == b"\x89PNG"
    # another photo of the meter, aligned to the saved reference (the setup photo, as PNG), reads right
    assert MeterReader(prof, CnnReader()).read(PHOTOS / "upright.jpg").reading == "0048127.3"


def test_refusals(client: TestClient, work: Path) -> None:
    before = (work / "profile" / "meter.yaml").read_bytes()
    anon = {"Authorization": ""}
    assert client.get("/api/meters/meter/setup", headers=anon).status_code == 401
    r = client.post("/api/meters/meter/setup/photo", content=b"x", headers=anon)
    assert r.status_code == 401 and "writing needs credentials" in r.json()["error"]
    assert upload(client, meter="nosuch").status_code == 404
    assert client.get("/api/meters/nosuch/setup").status_code == 404
    bad = client.post("/api/meters/meter/setup/photo", content=b"not a jpeg", headers={"Content-Type": "image/jpeg"})
    assert 400 <= bad.status_code < 500 and "error" in bad.json()
    assert client.post("/api/meters/meter/setup/photo", params={"source": "camera"}).status_code == 422
    r = client.post("/api/meters/meter/setup/photo", params={"source": "latest"})
    assert r.status_code == 404 and "no photos" in r.json()["error"]
    assert upload(client).status_code == 200
    for body, needle in (({**DRAFT, "digits": []}, "digits"), ({**DRAFT, "digits": [[-1, 0, 5, 5]]}, "box"),
                         ({**DRAFT, "flip": "sideways"}, "flip"), ({**DRAFT, "decimals": -1}, "decimals"),
                         ({**DRAFT, "colour": "red"}, "colour"), ([1, 2], "body")):
        for path in ("read", "save"):
            r = client.post(f"/api/meters/meter/setup/{path}", json=body)
            assert r.status_code == 422 and needle in r.json()["error"], (path, body, r.text)
    for path, box in (("save", [600, 400, 60, 90]), ("read", [0, 0, 10**9, 10**9])):  # a huge crop is refused
        r = client.post(f"/api/meters/meter/setup/{path}", json={**DRAFT, "digits": [box]})
        assert r.status_code == 422 and "outside the 640x480 photo" in r.json()["error"], r.text
    r = client.post("/api/meters/meter/setup/read", json={**DRAFT, "rotate": 90})  # turned: 480x640
    assert r.status_code == 422 and "outside the 480x640 photo" in r.json()["error"], r.text
    assert client.get("/api/meters/meter/setup/photo.png", params={"flip": "sideways"}).status_code == 422
    assert client.get("/api/meters/bare/setup/photo.png").status_code == 404  # no setup photo for it
    assert upload(client, meter="bare").status_code == 200
    r = client.post("/api/meters/bare/setup/save", json=DRAFT)
    assert r.status_code == 409 and "no profile path" in r.json()["error"]
    assert (work / "profile" / "meter.yaml").read_bytes() == before  # nothing refused changed the profile

    # a login without the page's CSRF token is refused; with it the save goes through
    login = client.post("/login", json={"user": "anna", "password": "correct horse"}, headers=anon)
    csrf = login.json()["csrf"]
    assert client.post("/api/meters/meter/setup/save", json=DRAFT, headers=anon).status_code == 403
    r = client.post("/api/meters/meter/setup/save", json=DRAFT, headers={**anon, "X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text


def test_confirm_the_register_once(client: TestClient, work: Path) -> None:
    r = client.post("/api/meters/meter/setup/confirm", json={"reading": "0048127.3"})
    assert r.status_code == 404 and "no photos" in r.json()["error"]
    key = "meter_20261201T100000Z.jpg"
    (work / "images" / key).write_bytes((PHOTOS / "upright.jpg").read_bytes())
    with open_database(f"sqlite:///{work / 'readings.db'}") as db:
        photos_repo.record(db, PhotoRow(key, "h1", "meter", datetime(2026, 12, 1, 10, tzinfo=UTC), "name",
                                        "rejected", None, None, [DigitValue(None, 0.1)] * 8, confidence=0.1,
                                        reason="digit 4 unreadable"))
    for body in ({"reading": 48127.3}, {"value": "0048127.3"}, ["0048127.3"]):
        assert client.post("/api/meters/meter/setup/confirm", json=body).status_code == 422
    r = client.post("/api/meters/meter/setup/confirm", json={"reading": "48127.3"})  # 6 digits for 8 boxes
    assert r.status_code == 400 and "8 digit boxes" in r.json()["error"]
    r = client.post("/api/meters/meter/setup/confirm", json={"reading": "0048127.3"})
    assert r.status_code == 200, r.text
    assert r.json()["photo"] == key and r.json()["labelled"] == 8
    rows = client.get("/api/meters/meter/readings").json()["readings"]
    assert [(x["contatore"], x["source"]) for x in rows] == [(48127.3, "review:" + key)]
    r = client.post("/api/meters/bare/setup/confirm", json={"reading": "1.0"})
    assert r.status_code in (404, 409), r.text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.recursive(st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats() | st.text(max_size=8),
                         lambda kids: st.lists(kids, max_size=5) | st.dictionaries(
                             st.sampled_from(["rotate", "flip", "kind", "decimals", "digits", "pointers", "x"]),
                             kids, max_size=6), max_leaves=20),
       meter=st.sampled_from(["meter", "bare", "nosuch", "bad id", "a" * 300]),
       path=st.sampled_from(["read", "save", "propose", "confirm"]))
def test_fuzzed_setup_bodies_never_5xx(client: TestClient, work: Path, body: Any, meter: str, path: str) -> None:
    """Any JSON to the setup endpoints: a 4xx naming the problem or an answer, never a 5xx, and a refused save
    leaves the profile file as it was."""
    before = (work / "profile" / "meter.yaml").read_bytes()
    if meter == "meter" and not client.get("/api/meters/meter/setup").json()["photo"]:
        assert upload(client).status_code == 200
    # json.dumps writes inf and nan as Infinity / NaN, which is not JSON: the server must refuse it with a 4xx too
    r = client.post(f"/api/meters/{meter}/setup/{path}", content=json.dumps(body),
                    headers={"content-type": "application/json"})
    assert r.status_code < 500, (path, body, r.text)
    if r.status_code >= 400:
        assert r.json()["error"]
        assert (work / "profile" / "meter.yaml").read_bytes() == before
