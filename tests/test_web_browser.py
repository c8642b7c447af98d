"""The dashboard end to end in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium)
against a real uvicorn server and SQLite file: a write refused without login, log in, a chart with data, the live
stream followed for a few intervals, the latest photo drawn with its boxes, a review value saved from the queue
(with the page's CSRF token), a cookie write without the CSRF token refused, log out; the meter setup page (a
photo uploaded, a digit box dragged and resized with the mouse, the live reading, the profile YAML saved) and the
invoice page reached from the dashboard.

``make test`` installs chromium and chromium-driver when missing; where they cannot start the test is skipped
with the reason.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from smartmeter.server import auth, photos_repo, review_repo
from smartmeter.server.api import create_app
from smartmeter.server.database import open_database
from smartmeter.server.photos_repo import PhotoRow
from smartmeter.settings import MeterSettings, Settings
from smartmeter.types import DigitValue, Reading

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402
from web_live import live_server  # noqa: E402

FETCH = """const [path, opts, done] = arguments;
fetch(path, Object.assign({credentials: "same-origin", headers: {"Content-Type": "application/json"}}, opts))
  .then(r => r.text().then(t => done([r.status, t]))).catch(e => done([0, String(e)]));"""
READING = '{"timestamp": "2020-01-01T00:00:00Z", "contatore": 1.0}'
RESOURCES = Path(__file__).resolve().parent / "resources" / "photos"
PHOTO = "home_20261201T100000Z.jpg"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = shutil.which("chromedriver")
    if not chromium or not driver_bin:
        pytest.skip("Debian chromium and chromium-driver are not installed (make apt installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1600"):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_bin))
    except WebDriverException as exc:
        pytest.skip(f"headless chromium cannot start here: {exc.msg}")
    driver.set_script_timeout(20)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("web")


@pytest.fixture(scope="module")
def site(work: Path) -> Iterator[str]:
    url = f"sqlite:///{work / 'readings.db'}"
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(hours=26)
    shot = now - timedelta(minutes=30, seconds=-30)  # between two readings: 522.95 and 522.965 kWh
    (work / "images").mkdir()
    (work / "profile").mkdir()
    for name in ("meter.yaml", "reference.jpg"):
        shutil.copy(RESOURCES / name, work / "profile" / name)
    (work / "images" / PHOTO).write_bytes((RESOURCES / "upright.jpg").read_bytes())
    with open_database(url) as db:
        db.register_meter("home")
        db.insert_readings([Reading("home", start + timedelta(minutes=i), 500 + i * 0.015, "api", power_w=900.0)
                            for i in range(26 * 60 + 1)])
        auth.add_user(db, "anna", "correct horse")
        photos_repo.record(db, PhotoRow(PHOTO, "h1", "home", shot, "name", "rejected", 522.9, "00522.9",
                                        [DigitValue(5.0, 0.9), DigitValue(None, 0.1)], confidence=0.3,
                                        reason="digit 2 unreadable"))
        review_repo.open_item(db, PHOTO, "home", shot, 522.9, "digit 2 unreadable")
        db.register_meter("new")  # photos, none read surely yet: the setup page says to confirm its register
        for i in range(3):
            photos_repo.record(db, PhotoRow(f"new_{i}.jpg", f"n{i}", "new", shot, "name", "held", 62712.7,
                                            "062712.7", [DigitValue(7.1, 0.7)], confidence=0.7))
    mp = pytest.MonkeyPatch()
    mp.delenv("SMARTMETER_API_TOKEN", raising=False)
    mp.delenv("SMARTMETER_API_TOKEN_FILE", raising=False)
    profile = work / "profile" / "meter.yaml"
    settings = Settings(meters=[MeterSettings(id="home", resolution_kwh=0.001, profile=profile),
                                MeterSettings(id="new")], validation={"confirm_hint_photos": 3},
                        store={"local": {"root": work / "images"}},
                        billing={"tariffs": [{"name": "flat", "start": "2020-01-01",
                                              "energy": [{"tiers": [{"price": 0.25}]}]}]})
    with live_server(create_app(settings, lambda: open_database(url))) as base:
        yield base
    mp.undo()


def fetch(driver: Any, path: str, **opts: Any) -> tuple[int, str]:
    status, text = driver.execute_async_script(FETCH, path, opts)
    return int(status), str(text)


def test_dashboard_in_chromium(browser: Any, site: str) -> None:
    wait = WebDriverWait(browser, 30)
    browser.get(site + "/")
    wait.until(lambda d: d.current_url.endswith("/login"))
    # not logged in: the write is refused and nothing is shown
    status, text = fetch(browser, "/api/meters/home/readings", method="POST", body=READING)
    assert status == 401 and "writing needs credentials" in text
    assert fetch(browser, "/api/meters")[0] == 401

    browser.find_element(By.ID, "user").send_keys("anna")
    browser.find_element(By.ID, "password").send_keys("wrong password")
    browser.find_element(By.ID, "login-button").click()
    wait.until(lambda d: "wrong user or password" in d.find_element(By.ID, "login-error").text)
    browser.find_element(By.ID, "user").clear()
    browser.find_element(By.ID, "user").send_keys("anna")
    browser.find_element(By.ID, "password").send_keys("correct horse")
    browser.find_element(By.ID, "login-button").click()
    wait.until(lambda d: d.current_url.rstrip("/") == site)
    assert browser.find_element(By.ID, "who").text == "anna"

    # the history chart drew the last day's data (15-minute buckets at 900 W)
    wait.until(lambda d: int(d.find_element(By.ID, "history-chart").get_attribute("data-points") or 0) > 90)
    assert browser.find_elements(By.CSS_SELECTOR, "#history-chart canvas")
    assert browser.find_element(By.ID, "today").text.endswith("kWh")
    wait.until(lambda d: int(d.find_element(By.ID, "heatmap").get_attribute("data-cells") or 0) >= 24)
    browser.find_element(By.CSS_SELECTOR, "button[data-range=week]").click()
    wait.until(lambda d: "of 168 buckets of 3600 s" in d.find_element(By.ID, "history-info").text)

    # the live stream: switch to 1 s intervals and follow it for a few
    Select(browser.find_element(By.ID, "interval")).select_by_visible_text("1")
    wait.until(lambda d: int(d.find_element(By.ID, "live-count").get_attribute("data-count")) >= 3)
    assert browser.find_element(By.ID, "live-status").text == "live"
    assert browser.find_element(By.ID, "live-power").text.startswith("900")

    # the latest photo with its boxes, and the review queue: a person's value saved with the page's CSRF token
    wait.until(lambda d: "rejected" in d.find_element(By.ID, "photo-info").text)
    wait.until(lambda d: int(d.find_element(By.ID, "photo").get_attribute("width")) > 300)  # the JPEG drawn
    cell = browser.find_element(By.CSS_SELECTOR, "#review tbody input")
    cell.send_keys("522.955")
    browser.find_element(By.CSS_SELECTOR, "#review tbody button").click()
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, "#review tbody tr"))
    assert browser.find_element(By.ID, "review-msg").text == ""
    two_hours_ago = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status, text = fetch(browser, "/api/meters/home/readings?start=" + two_hours_ago)
    assert status == 200 and '"source":"review:' + PHOTO in text

    # a write with the session cookie but without the page's CSRF token is refused
    status, text = fetch(browser, "/api/meters/home/readings", method="POST", body=READING)
    assert status == 403 and "CSRF" in text

    browser.find_element(By.ID, "logout").click()
    wait.until(lambda d: d.current_url.endswith("/login"))
    assert fetch(browser, "/api/meters")[0] == 401
    browser.get(site + "/")
    wait.until(lambda d: d.current_url.endswith("/login"))


def login(driver: Any, site: str) -> None:
    driver.get(site + "/login")
    status, text = fetch(driver, "/login", method="POST", body='{"user": "anna", "password": "correct horse"}')
    assert status == 200, text


def box_row(driver: Any, i: int) -> list[int]:
    """Box i's inputs read in one script call: the table is redrawn after each live reading, so element handles
    taken one by one may go stale between two reads."""
    values = driver.execute_script(
        "const row = document.querySelectorAll('#boxes tbody tr')[arguments[0]];"
        "return row ? Array.from(row.querySelectorAll('input'), x => x.value) : null;",
        i,
    )
    assert values is not None, f"no row {i} in the box table"
    return [int(v) for v in values]


def test_setup_page_in_chromium(browser: Any, site: str, work: Path) -> None:
    """Upload the reference photo, see it read live, drag and resize digit 1 with the mouse, save: the YAML on disk
    has the moved box (the others as they were) and still loads; then the invoice page from the dashboard."""
    wait = WebDriverWait(browser, 30)
    login(browser, site)
    browser.get(site + "/meters/home/setup")
    wait.until(lambda d: d.find_element(By.ID, "canvas").get_attribute("data-ready") == "true")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#box-layer rect.box")) == 8  # the saved profile's boxes
    browser.find_element(By.ID, "photo-file").send_keys(str(RESOURCES / "reference.jpg"))
    wait.until(lambda d: "640×480" in d.find_element(By.ID, "photo-info").text)
    wait.until(lambda d: d.find_element(By.ID, "live-reading").text == "5555555.5")
    before = box_row(browser, 0)
    assert before == [108, 202, 38, 58]

    svg = browser.find_element(By.ID, "canvas")
    scale = 640 / svg.rect["width"]  # photo pixels per screen pixel
    reads = int(browser.find_element(By.ID, "live-reading").get_attribute("data-reads"))
    rect = browser.find_element(By.CSS_SELECTOR, "#box-layer rect.box[data-index='0']")
    ActionChains(browser).drag_and_drop_by_offset(rect, 0, round(40 / scale)).perform()  # 40 px down
    wait.until(lambda d: box_row(d, 0)[1] > 230)
    moved = box_row(browser, 0)
    assert abs(moved[1] - 242) <= 3 and abs(moved[0] - 108) <= 2 and moved[2:] == [38, 58]
    # the live reading follows the edit: digit 1 off its drum is read again (and the page says how)
    wait.until(lambda d: int(d.find_element(By.ID, "live-reading").get_attribute("data-reads")) > reads)
    handle = browser.find_elements(By.CSS_SELECTOR, "#box-layer rect.handle")[0]
    ActionChains(browser).drag_and_drop_by_offset(handle, round(6 / scale), round(-40 / scale)).perform()
    wait.until(lambda d: box_row(d, 0)[3] < 30)
    edited = box_row(browser, 0)
    assert edited[:2] == moved[:2] and abs(edited[2] - 44) <= 3 and abs(edited[3] - 18) <= 3
    browser.find_element(By.ID, "decimals").clear()
    browser.find_element(By.ID, "decimals").send_keys("2")
    browser.find_element(By.ID, "save").click()
    wait.until(lambda d: d.find_element(By.ID, "saved-yaml").is_displayed())
    assert browser.find_element(By.ID, "setup-msg").get_attribute("class") == ""
    saved = yaml.safe_load((work / "profile" / "meter.yaml").read_text(encoding="utf-8"))
    assert saved["digits"][0] == edited and saved["decimals"] == 2
    assert saved["digits"][1:] == [[108 + 52 * i, 202, 38, 58] for i in range(1, 8)]
    assert saved["reference"] == "meter-reference.png" and (work / "profile" / "meter-reference.png").exists()
    assert re.search(r"digits:\n- \[" + str(edited[0]), browser.find_element(By.ID, "saved-yaml").text)

    # confirming the register: the server's refusal is shown on the page (8 digit boxes, 3 digits typed)
    browser.find_element(By.ID, "confirm-reading").send_keys("123")
    browser.find_element(By.ID, "confirm").click()
    wait.until(lambda d: "8 digit boxes" in d.find_element(By.ID, "setup-msg").text)
    assert browser.find_element(By.ID, "setup-msg").get_attribute("class") == "error"
    assert not browser.find_element(By.ID, "confirm-hint").is_displayed()  # home has readings
    browser.get(site + "/meters/new/setup")  # 3 photos, no reading: the page says how to start the meter
    wait.until(lambda d: d.find_element(By.ID, "confirm-hint").is_displayed())
    assert "smartmeter meter confirm new --reading" in browser.find_element(By.ID, "confirm-hint").text

    # the invoice page, linked from the dashboard
    browser.get(site + "/")
    wait.until(lambda d: d.find_element(By.ID, "invoice-link").get_attribute("href").endswith("/meters/home/invoice"))
    browser.find_element(By.ID, "invoice-link").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "table.invoice-lines tbody tr"))
    assert "/meters/home/invoice" in browser.current_url
    assert browser.find_elements(By.CSS_SELECTOR, ".payment-qr svg")
    assert "EUR" in browser.find_element(By.CSS_SELECTOR, "table.invoice-lines").text


def test_static_assets_are_vendored() -> None:
    vendor = Path(__file__).resolve().parent.parent / "server" / "static" / "vendor"
    assert (vendor / "uPlot.iife.min.js").stat().st_size > 20_000
    assert "MIT" in (vendor / "LICENSE").read_text(encoding="utf-8")
