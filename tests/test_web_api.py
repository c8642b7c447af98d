"""The API's read side (server.web.data, pagination, /metrics) against a real SQLite file through TestClient:
every endpoint a dashboard uses, and fuzzed query parameters (never a 5xx)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smartmeter.server.api import create_app
from smartmeter.server.database import Database, open_database
from smartmeter.server.web.series import AnswerCache
from smartmeter.settings import Settings
from smartmeter.types import Reading

TOKEN = "test-token-1234"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'readings.db'}"


@pytest.fixture
def client(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("SMARTMETER_API_TOKEN", TOKEN)
    monkeypatch.delenv("SMARTMETER_API_TOKEN_FILE", raising=False)
    with TestClient(create_app(Settings(), lambda: open_database(db_url)), headers=AUTH) as c:
        yield c


def stored(db_url: str, meter_id: str) -> list[tuple[str, float, float | None, str]]:
    with open_database(db_url) as db:
        return [(r.timestamp.isoformat(), r.value_kwh, r.power_w, r.source) for r in db.readings(meter_id)]


def minute_series(db_url: str, n: int, meter: str = "meter1", start: datetime | None = None) -> list[Reading]:
    """``n`` readings a minute apart at a constant 1.2 kW, stored."""
    t0 = start or datetime(2014, 12, 12, tzinfo=UTC)
    rs = [Reading(meter, t0 + timedelta(minutes=i), 100 + 0.02 * i, "csv:x.csv") for i in range(n)]
    with open_database(db_url) as db:
        db.register_meter(meter)
        db.insert_readings(rs)
    return rs


def test_readings_are_paginated_with_a_cursor(client: TestClient, db_url: str) -> None:
    """No full-history answers: pages of at most `limit`, `next_cursor` to go on (the old API sent everything)."""
    minute_series(db_url, 25)
    pages, cursor = [], None
    while True:
        r = client.get("/api/meters/meter1/readings", params={"limit": 10, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        pages.append([x["timestamp"] for x in r.json()["readings"]])
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [10, 10, 5]
    every = [t for p in pages for t in p]
    assert every == sorted(set(every)) and len(every) == 25
    assert client.get("/api/meters/meter1/readings").json()["count"] == 25  # default page 1000
    window = client.get("/api/meters/meter1/readings", params={"start": "2014-12-12T00:05:00Z", "limit": 3}).json()
    assert [x["timestamp"][11:16] for x in window["readings"]] == ["00:05", "00:06", "00:07"]
    for params, needle in (({"limit": 100001}, "limit: 100001 is over the most one page holds (5000)"),
                           ({"limit": 0}, "limit:"), ({"cursor": "@@not-ours"}, "cursor: not a next_cursor")):
        r = client.get("/api/meters/meter1/readings", params=params)
        assert r.status_code == 422 and needle in r.json()["error"], r.text


def test_latest_power_summary_statistics(client: TestClient, db_url: str) -> None:
    assert client.get("/api/meters/meter1/latest").status_code == 404
    client.post("/api/meters", json={"id": "meter1"})
    assert client.get("/api/meters/meter1/latest").json() == {"meter_id": "meter1", "reading": None, "age_s": None}
    rs = minute_series(db_url, 181)  # 3 hours at 1.2 kW
    latest = client.get("/api/meters/meter1/latest").json()
    assert latest["reading"]["timestamp"] == "2014-12-12T03:00:00Z" and latest["reading"]["contatore"] == 103.6
    assert latest["age_s"] > 3600
    r = client.get("/api/meters/meter1/power", params={"start": "2014-12-11T23:00:00Z",
                                                       "end": "2014-12-12T04:00:00Z", "step": "1h"})
    body = r.json()
    assert body["t"][0] == int(datetime(2014, 12, 11, 23, tzinfo=UTC).timestamp())
    # hours outside the readings are unknown (null), never zero; inside: the register's 1.2 kW
    assert body["power_w"][0] is None and body["power_w"][4] is None
    assert body["power_w"][1:4] == pytest.approx([1200, 1200, 1200])
    assert sum(body["energy_kwh"][1:4]) == pytest.approx(rs[-1].value_kwh - rs[0].value_kwh)
    r = client.get("/api/meters/meter1/power", params={"step": "7s"})
    assert r.status_code == 422 and r.json()["error"].startswith("step: '7s' is not one of 1m, 5m")
    r = client.get("/api/meters/meter1/power", params={"start": "2000-01-01T00:00:00Z", "step": "1m"})
    assert r.status_code == 422 and "at most 5000" in r.json()["error"]
    summary = client.get("/api/meters/meter1/summary").json()
    assert summary["register_kwh"] == 103.6 and summary["today_kwh"] is None  # nothing this year
    stats = client.get("/api/meters/meter1/statistics").json()
    assert stats["readings"] == 181 and stats["energy_kwh"] == pytest.approx(3.6)
    assert stats["mean_power_w"] == pytest.approx(1200)


def test_summary_today_month_year(client: TestClient, db_url: str) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    if (now - timedelta(minutes=29)).date() != now.date():
        pytest.skip("the half hour of test data would straddle midnight")
    minute_series(db_url, 30, start=now - timedelta(minutes=29))
    with open_database(db_url) as db:  # a reading last year, long before: its energy is not today's
        db.insert_readings([Reading("meter1", now.replace(month=1, day=1, hour=0, minute=0) - timedelta(days=1),
                                    90.0, "csv:x.csv")])
    s = client.get("/api/meters/meter1/summary").json()
    assert (s["today_kwh"], s["month_kwh"], s["year_kwh"]) == pytest.approx((0.58, 0.58, 0.58))
    assert s["register_kwh"] == pytest.approx(100.58)
    midnight = now.replace(hour=0, minute=0)  # readings across midnight: the register interpolated at it
    minute_series(db_url, 11, meter="m2", start=midnight - timedelta(minutes=5))
    if midnight.day != 1:
        assert client.get("/api/meters/m2/summary").json()["today_kwh"] == pytest.approx(0.1)


def test_review_queue_and_photo(client: TestClient, db_url: str) -> None:
    from smartmeter.server import photos_repo, review_repo
    from smartmeter.server.photos_repo import PhotoRow
    from smartmeter.types import DigitValue

    ts = datetime(2014, 12, 12, 10, tzinfo=UTC)
    with open_database(db_url) as db:
        db.register_meter("cam")
        photos_repo.record(db, PhotoRow("cam_20141212T100000Z.jpg", "h1", "cam", ts, "name", "rejected", 1234.5,
                                        "01234.5", [DigitValue(1.0, 0.9), DigitValue(None, 0.1)], confidence=0.3,
                                        reason="digit 2 unreadable"))
        review_repo.open_item(db, "cam_20141212T100000Z.jpg", "cam", ts, 1234.5, "digit 2 unreadable")
    photo = client.get("/api/meters/cam/photo").json()
    assert photo["status"] == "rejected" and photo["digits"] == [[1.0, 0.9], [None, 0.1]]
    assert photo["timestamp"] == "2014-12-12T10:00:00Z" and photo["image"] == "/api/meters/cam/photo.jpg"
    queue = client.get("/api/review", params={"meter": "cam"}).json()
    assert [i["key"] for i in queue["items"]] == ["cam_20141212T100000Z.jpg"]
    for body in ({"value": "x"}, {"value": -1}, {"v": 1}, [1]):
        r = client.post("/api/review/cam_20141212T100000Z.jpg", json=body)
        assert r.status_code == 400, (body, r.text)
    assert client.post("/api/review/nope.jpg", json={"value": 1.0}).status_code == 404
    r = client.post("/api/review/cam_20141212T100000Z.jpg", json={"value": 1234.6})
    assert r.status_code == 200, r.text
    assert stored(db_url, "cam") == [("2014-12-12T10:00:00+00:00", 1234.6, None,
                                      "review:cam_20141212T100000Z.jpg")]
    assert client.get("/api/review", params={"meter": "cam"}).json()["count"] == 0
    assert client.get("/api/meters/nobody/photo").status_code == 404


def test_metrics(client: TestClient, db_url: str) -> None:
    minute_series(db_url, 5)
    text = client.get("/metrics").text
    assert 'smartmeter_readings_stored{meter="meter1"} 5' in text
    assert "smartmeter_review_queue_open 0" in text
    age = [ln for ln in text.splitlines() if ln.startswith('smartmeter_last_reading_age_seconds{meter="meter1"}')]
    assert len(age) == 1 and float(age[0].split()[-1]) > 3600
    assert "# TYPE smartmeter_photos_unreadable_ratio gauge" in text


def test_openapi_documents_the_new_endpoints(client: TestClient) -> None:
    paths = set(client.get("/openapi.json").json()["paths"])
    assert {"/api/meters/{meter_id}/latest", "/api/meters/{meter_id}/power", "/api/meters/{meter_id}/summary",
            "/api/meters/{meter_id}/statistics", "/api/meters/{meter_id}/photo", "/api/review", "/api/review/{key}",
            "/api/stream", "/api/stream/stats", "/metrics", "/api/session"} <= paths


QUERY_TEXT = st.one_of(st.text(max_size=30), st.sampled_from(
    ["", "0", "-1", "1e400", "nan", "10000000000000000000000", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00Z",
     "2014-12-12T10:00:00Z", "2999-01-01T00:00:00Z", "1m", "15m", "1h", "1d", "7d", "5", "60", "MTox", "@@"]))
GET_PATHS = ["/api/meters/{m}/readings", "/api/meters/{m}/latest", "/api/meters/{m}/power", "/api/meters/{m}/summary",
             "/api/meters/{m}/statistics", "/api/meters/{m}/events", "/api/meters/{m}/health", "/api/meters/{m}/photo",
             "/api/meters/{m}/state", "/api/meters/{m}/heatmap", "/api/review", "/api/stream/stats", "/metrics"]


@pytest.mark.fault("hostile API/MQTT input", proves="fuzzed query parameters on every read endpoint: never a 5xx, "
                   "always a message, nothing stored is changed")
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(GET_PATHS), meter=st.sampled_from(["meter1", "ghost", "bad id!", "x" * 70]),
       params=st.dictionaries(st.sampled_from(["start", "end", "limit", "cursor", "step", "interval", "window",
                                               "meter", "hours", "days", "include_resolved"]), QUERY_TEXT, max_size=4))
def test_fuzz_read_parameters(fuzz_client: tuple[TestClient, str], path: str, meter: str,
                              params: dict[str, str]) -> None:
    client, db_url = fuzz_client
    r = client.get(path.format(m=meter), params=params)
    assert r.status_code < 500, (path, params, r.status_code, r.text[:300])
    if r.status_code >= 400:
        assert 0 < len(r.json()["error"]) < 500
    assert len(stored(db_url, "meter1")) == 30


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzzget') / 'readings.db'}"
    minute_series(url, 30)
    mp = pytest.MonkeyPatch()
    mp.setenv("SMARTMETER_API_TOKEN", TOKEN)
    with TestClient(create_app(Settings(), lambda: open_database(url)), headers=AUTH,
                    raise_server_exceptions=False) as c:
        yield c, url
    mp.undo()


def test_heatmap_hour_by_day(client: TestClient, db_url: str) -> None:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    minute_series(db_url, 48 * 60 + 1, start=today - timedelta(days=2))  # the two days before today, 1.2 kW
    h = client.get("/api/meters/meter1/heatmap", params={"days": 4}).json()
    assert h["days"] == [(today.date() - timedelta(days=k)).isoformat() for k in (3, 2, 1, 0)]
    assert h["kwh"][0] == [None] * 24 and h["kwh"][3] == [None] * 24  # no readings: unknown, not zero
    assert h["kwh"][1] == pytest.approx([1.2] * 24) and h["kwh"][2] == pytest.approx([1.2] * 24)
    assert client.get("/api/meters/meter1/heatmap", params={"days": 0}).status_code == 422


def test_invoice_page(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``/meters/{id}/invoice?period=``: the billing invoice on a dashboard page (lines, boundaries, payment QR);
    login first, 404 unknown meter, 422 bad period, 409 when no tariff prices anything."""
    monkeypatch.setenv("SMARTMETER_API_TOKEN", TOKEN)
    minute_series(db_url, 3 * 24 * 60 + 1)  # 2014-12-12 .. 12-15 at 1.2 kW
    priced = Settings.model_validate({"billing": {"tariffs": [
        {"name": "flat", "start": "2014-01-01", "energy": [{"tiers": [{"price": 0.25}]}]}]}})
    with TestClient(create_app(priced, lambda: open_database(db_url)), headers=AUTH) as c:
        r = c.get("/meters/meter1/invoice", params={"period": "2014-12-13"})
        assert r.status_code == 200, r.text
        page = r.text
        assert '<table class="invoice-lines">' in page and "<svg" in page and "SM-meter1-2014-12-13" in page
        assert "<td>7.20</td>" in page  # 24 h x 1.2 kW = 28.8 kWh x 0.25
        assert "&lt;" not in page.split('id="invoice"')[1][:200]  # the fragment is HTML, not escaped text
        assert 'href="?period=2014-12-12"' in page
        for period, status in (("2014-13", 422), ("13/2014", 422), ("2099-01", 404)):
            r = c.get("/meters/meter1/invoice", params={"period": period})
            assert r.status_code == status and "error" in r.json(), (period, r.text)
        assert c.get("/meters/nosuch/invoice", params={"period": "2014-12"}).status_code == 404
        assert c.get("/meters/bad%20id/invoice").status_code == 400
        r = c.get("/meters/meter1/invoice", headers={"Authorization": ""}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login"
        assert 'id="invoice-link" href="/meters/meter1/invoice"' in c.get("/").text
    with TestClient(create_app(Settings(), lambda: open_database(db_url)), headers=AUTH) as c:
        r = c.get("/meters/meter1/invoice", params={"period": "2014-12"})
        assert r.status_code == 409 and "no tariff" in r.json()["error"]


def test_power_answers_are_kept_until_anything_is_written(client: TestClient, db_url: str) -> None:
    """A closed day's power answer is kept (server.web.series.AnswerCache), and every write shows at once: a
    correction committed by another process (another connection) and a reading posted to this server."""
    rs = minute_series(db_url, 181)
    day = {"start": "2014-12-12T00:00:00Z", "end": "2014-12-12T03:30:00Z", "step": "1800"}
    first = client.get("/api/meters/meter1/power", params=day).json()
    assert client.get("/api/meters/meter1/power", params=day).json() == first
    assert first["power_w"][:6] == pytest.approx([1200] * 6) and first["power_w"][6] is None
    with open_database(db_url) as other:  # e.g. `smartmeter readings correct`: the register was 0.6 kWh higher
        from smartmeter.server import readings_repo

        for r in rs[60:]:
            readings_repo.correct(other, "meter1", r.timestamp, r.source, r.value_kwh + 0.6)
    corrected = client.get("/api/meters/meter1/power", params=day).json()
    assert corrected["energy_kwh"][1] == pytest.approx(first["energy_kwh"][1] + 0.6)
    posted = client.post("/api/meters/meter1/readings", json=[{"timestamp": "2014-12-12T03:30:00Z",
                                                                "contatore": rs[-1].value_kwh + 0.6 + 0.6}])
    assert posted.status_code == 201 and posted.json()["accepted"] == 1, posted.text
    after = client.get("/api/meters/meter1/power", params=day).json()
    assert corrected["power_w"][6] is None and after["power_w"][6] == pytest.approx(1200)


def test_answer_cache_generations(db: Database, tmp_path: Path) -> None:
    """A commit through the same handle or through any other starts a new generation (the old answers go, an
    answer computed across it is not kept); where the backend gives no mark (PostgreSQL) nothing is kept."""
    cache = AnswerCache(entries=2)
    g = cache.generation(db)
    cache.put("a", g, b"A")
    if db.dialect != "sqlite":
        assert g is None and cache.get("a", g) is None
        return
    assert cache.generation(db) == g and cache.get("a", g) == b"A"
    db.register_meter("m1")  # through this handle
    g2 = cache.generation(db)
    assert g2 != g and cache.get("a", g2) is None
    cache.put("late", g, b"computed before the write")
    assert cache.get("late", g2) is None
    cache.put("b", g2, b"B")
    with open_database(db.url) as other:
        assert cache.generation(other) != g2  # a handle it never saw: nothing it cannot vouch for is kept
        g3 = cache.generation(other)
        cache.put("c", g3, b"C")
        db.register_meter("m2")  # another connection commits: `other` sees it
        assert cache.generation(other) != g3 and cache.get("c", cache.current) is None
    g4 = cache.generation(db)
    for key in "xyz":  # at most `entries`, least recently used out first
        cache.put(key, g4, key.encode())
    assert cache.get("x", g4) is None and cache.get("z", g4) == b"z"
