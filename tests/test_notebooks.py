"""The notebooks run headless (nbclient) against a temporary SQLite database; their helpers in server.notebook_data.

The kernel is the venv's own ipykernel (kernelspec from ``sys.prefix``, else ipykernel's built-in spec), never a
user-level kernelspec, so the test works on a fresh clone.
"""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from smartmeter.errors import InputError
from smartmeter.server import notebook_data as nd
from smartmeter.server.database import Database, open_database
from smartmeter.settings import Settings
from smartmeter.simulator import notebook_demo
from smartmeter.types import Reading

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
T0 = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday


# ---- helpers -------------------------------------------------------------------------------------------------
def run_notebook(name: str, tmp_path: Path, **params: Any) -> Any:
    """Execute notebooks/<name>.ipynb with ``params`` injected after its "parameters" cell (as papermill does)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in params.items())))
    ksm = KernelSpecManager(kernel_dirs=[str(Path(sys.prefix) / "share" / "jupyter" / "kernels")])
    km = KernelManager(kernel_name="python3", kernel_spec_manager=ksm)
    nbclient.NotebookClient(nb, km=km, timeout=120, resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb


def outputs(nb: Any) -> tuple[str, str, int]:
    """(printed text, HTML shown, number of PNG images) of an executed notebook."""
    text, htm, pngs = [], [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and out.name == "stdout":
                text.append(out.text)
            data = out.get("data", {})
            htm.append(data.get("text/html", ""))
            pngs += "image/png" in data
    return "".join(text), "".join(htm), pngs


def table_rows(htm: str, css_class: str) -> list[list[str]]:
    m = re.search(rf'<table class="{css_class}">(.*?)</table>', htm, re.S)
    assert m, f"no table {css_class}"
    body = m.group(1).split("<tbody>", 1)[1]
    return [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body)]


def readings(watts: list[float], step_s: int = 60, start: datetime = T0, sensor: bool = True,
             kwh: float = 100.0) -> list[Reading]:
    """A register from ``kwh`` driven by ``watts`` (one value per step), sensor power reported when ``sensor``."""
    out = []
    for i, w in enumerate([*watts, watts[-1]]):
        out.append(Reading("m1", start + timedelta(seconds=i * step_s), round(kwh, 6), "csv:t", 1.0, "",
                           w if sensor else None))
        kwh += w * step_s / 3.6e6
    return out


# ---- the notebooks -------------------------------------------------------------------------------------------
def test_consumption_report_on_an_empty_database_imports_a_week_then_reports(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nb.db'}"
    nb = run_notebook("consumption_report", tmp_path, database_url=url, meter_id="house")
    text, htm, pngs = outputs(nb)
    assert "imported a simulated household" in text
    days = table_rows(htm, "daily-energy")  # local days (Europe/Rome, UTC+1): the week ends at 01:00 on day 8
    assert [d[0] for d in days] == [(T0 + timedelta(days=i)).date().isoformat() for i in range(8)]
    assert all(float(d[1]) > 1.0 for d in days[:7]) and days[0][2] == "96 %" and days[7][2] == "4 %"
    assert pngs == 3  # daily bars, hour profile, load-duration curve
    kinds = [r[0] for r in table_rows(htm, "anomalies")]
    assert "blackout" in kinds and "power_high" in kinds  # the injected blackout and threshold exceedance
    assert len(table_rows(htm, "peak-hours")) == 10
    invoice = {r[0].split(" ")[0]: float(r[1]) for r in table_rows(htm, "invoice")}
    with open_database(url) as db:
        energy = max(r.value_kwh for r in db.readings("house")) - db.readings("house")[0].value_kwh
    assert invoice["energy"] == pytest.approx(energy * 0.25, abs=0.01)
    assert invoice["total"] == pytest.approx(invoice["energy"] + invoice["fixed"], abs=0.011)

    # run again on the same database over two days: no new import, two rows
    nb = run_notebook("consumption_report", tmp_path, database_url=url, meter_id="house", start="2024-03-05",
                      end="2024-03-07", resolution_kwh=0.001)
    text, htm, _ = outputs(nb)
    assert "imported" not in text
    assert [d[0] for d in table_rows(htm, "daily-energy")] == ["2024-03-05", "2024-03-06"]


def test_capture_health_on_an_empty_database_simulates_a_camera_meter(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nb.db'}"
    nb = run_notebook("capture_health", tmp_path, database_url=url, demo_hours=12.0)
    text, htm, pngs = outputs(nb)
    assert "simulated sim1" in text and (tmp_path / "var" / "notebook-demo-camera" / "images").is_dir()
    assert pngs == 2  # photos per hour, confidence histogram
    gaps = table_rows(htm, "capture-gaps")
    assert gaps == [["2024-03-04 08:50", "2024-03-04 11:30", "160", "15", "yes"]]  # the 09:00-11:30 stale camera
    outcomes = {r[0]: int(r[1]) for r in table_rows(htm, "photo-outcomes")}
    assert sum(outcomes.values()) == 12 * 6 - 15
    assert outcomes["published"] > 0
    with open_database(url) as db:
        waiting = nd.review_queue(db, "sim1")
        current = len(db.readings("sim1"))  # published, plus corrected ones that were not withdrawn
        assert outcomes["published"] <= current <= outcomes["published"] + outcomes["corrected"]
    assert f"sim1: {waiting} photos wait in the review queue" in text


def test_capture_health_without_worker_rows_skips_those_cells(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nb.db'}"
    with open_database(url) as db:
        db.insert_readings([Reading("cam", T0 + timedelta(minutes=10 * i), 500 + i * 0.1, f"image:{i}.jpg",
                                    0.7 + 0.01 * (i % 30)) for i in range(36) if not 12 <= i < 18])
    nb = run_notebook("capture_health", tmp_path, database_url=url, interval_s=600.0)
    text, htm, pngs = outputs(nb)
    assert "simulated" not in text
    assert "no photos in the worker's table; counting readings from photos instead" in text
    assert "outcome shares skipped" in text and "photo-outcomes" not in htm
    assert "cam: 0 photos wait in the review queue" in text
    assert table_rows(htm, "capture-gaps") == [["2024-03-04 01:50", "2024-03-04 03:00", "70", "6", "yes"]]
    assert pngs == 2


# ---- server.notebook_data ------------------------------------------------------------------------------------
def test_parse_period() -> None:
    assert nd.parse_period("", " ") == (None, None)
    assert nd.parse_period("2024-03-05", "") == (datetime(2024, 3, 5, tzinfo=UTC), None)
    with pytest.raises(InputError):
        nd.parse_period("2024-03-05", "2024-03-04")
    with pytest.raises(InputError):
        nd.parse_period("yesterday", "")


def test_hourly_energy_and_profile_split_weekdays_from_weekends() -> None:
    sunday, monday = readings([500.0] * 60, start=T0 - timedelta(hours=1)), readings([2000.0] * 120, kwh=100.5)
    series = sunday[:-1] + monday  # Sunday 23:00 at 500 W, Monday 00:00-02:00 at 2000 W
    hours, kwh = nd.hourly_energy(series, 0.001)
    assert hours.tolist() == [(T0 + timedelta(hours=h)).timestamp() for h in (-1, 0, 1)]
    assert kwh == pytest.approx([0.5, 2.0, 2.0], abs=0.002)
    prof = nd.hour_profile(hours, kwh, "UTC")
    assert prof["weekend"][23] == pytest.approx(500, abs=2) and np.isnan(prof["weekend"][0])
    assert prof["weekday"][0] == pytest.approx(2000, abs=2) and np.isnan(prof["weekday"][23])
    rome = nd.hour_profile(hours, kwh, "Europe/Rome")  # UTC+1 in March: Sunday 23:00 UTC is Monday 00:00
    assert rome["weekday"][0] == pytest.approx(500, abs=2) and rome["weekday"][1] == pytest.approx(2000, abs=2)
    assert nd.top_hours(hours, kwh, 1, "UTC")[0][1] == pytest.approx(2000, abs=2)
    assert nd.hourly_energy(series[:1], 0.001)[0].size == 0


def test_duration_curve_from_sensor_and_from_register() -> None:
    series = readings([2000.0] * 30 + [500.0] * 90)
    pct, w, source = nd.duration_curve(series, 0.001, 900)
    assert source == "sensor"
    assert w[np.searchsorted(pct, 20)] == 2000 and w[np.searchsorted(pct, 30)] == 500
    assert np.all(np.diff(w) <= 0) and pct[-1] == pytest.approx(100)
    pct, w, source = nd.duration_curve(readings([2000.0] * 30 + [500.0] * 90, sensor=False), 0.001, 900)
    assert source == "register"
    assert w.max() == pytest.approx(2000, rel=0.1) and w.min() == pytest.approx(500, rel=0.1)
    assert nd.duration_curve(series[:1], 0.001, 900)[2] == "none"


def test_notebook_invoice_is_the_billing_model(tmp_path: Path) -> None:
    """show_invoice prices with server.invoice: a flat tariff of the notebook's price and fee without tariffs in the
    settings (fee pro rata of the calendar month), the settings' tariffs when there are some."""
    from smartmeter.server.notebook_consumption import Consumption, Session, show_invoice

    url = f"sqlite:///{tmp_path}/n.db"
    with open_database(url) as db:
        db.register_meter("m1")  # 2026-11-02 .. 2026-11-09 00:00 UTC, 1 kWh an hour: 168 kWh over 7 days
        db.insert_readings([Reading("m1", datetime(2026, 11, 2, tzinfo=UTC) + timedelta(hours=h), 100.0 + h, "csv:n")
                            for h in range(169)])
    session = Session.open(url, "", "m1")
    stats = SimpleNamespace(start=datetime(2026, 11, 2, tzinfo=UTC), end=datetime(2026, 11, 9, tzinfo=UTC))
    c = Consumption(session, stats, [], {})  # type: ignore[arg-type]
    rows = dict(table_rows(show_invoice(c, 0.3, 12.0)[0].data, "invoice"))
    # energy 168 x 0.30 = 50.40; fee 12 x 7/30 (November) = 2.80; total 53.20
    assert list(rows.values()) == ["2.80", "50.40", "53.20"]
    tou = {"name": "t", "start": "2020-01-01", "energy": [{"tiers": [{"price": 0.5}]}]}
    session.settings = session.settings.model_copy(update={"billing": Settings.model_validate(
        {"billing": {"tariffs": [tou]}}).billing})
    assert list(dict(table_rows(show_invoice(c, 0.3, 12.0)[0].data, "invoice")).values()) == ["84.00", "84.00"]
    session.db.close()


def test_hourly_counts_and_capture_gaps() -> None:
    t0 = T0.timestamp()
    times = np.array([t0 + 600 * i for i in range(18) if not 6 <= i < 12])  # 01:00-02:00 missing
    hours, counts = nd.hourly_counts(times)
    assert counts.tolist() == [6, 0, 6] and hours[0] == t0
    assert nd.hourly_counts(times, t0 - 3600, t0 + 4 * 3600)[1].tolist() == [0, 6, 0, 6, 0]
    assert nd.hourly_counts(np.zeros(0))[1].size == 0
    gaps = nd.capture_gaps(times, 600, 1200)
    assert gaps == [(T0 + timedelta(minutes=50), T0 + timedelta(hours=2), 6)]
    assert nd.capture_gaps(times, 600, 4200) == []


def test_photo_outcomes_are_exclusive() -> None:
    status = ["published", "held", "suspect", "rejected", "rejected", "failed", "corrected", "withdrawn", "reviewed"]
    has_value = [True, True, True, True, False, False, True, True, True]
    photos = nd.PhotoArrays(np.arange(9.0), np.array(status, dtype=object), np.ones(9), np.array(has_value))
    got = nd.photo_outcomes(photos)
    assert got == {"published": 1, "corrected": 2, "reviewed": 1, "held": 2, "rejected": 1, "unreadable": 2,
                   "duplicate": 0}


def _photo(db: Database, key: str, meter: str, ts: datetime, status: str, value: float | None) -> None:
    db.execute("INSERT INTO photos (photo_key, content_hash, meter_id, ts_ms, status, value_kwh, confidence, "
               "updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
               (key, key, meter, int(ts.timestamp() * 1000), status, value, 0.5 if value else 0.0))


def test_worker_tables_queries(tmp_path: Path) -> None:
    with open_database(f"sqlite:///{tmp_path / 'w.db'}") as db:
        if "photos" not in nd.db_tables(db):
            pytest.skip("the worker's migration is not present")
        assert nd.camera_meters(db) == [] and len(nd.load_photos(db, "cam")) == 0
        assert nd.review_queue(db) == 0
        _photo(db, "a.jpg", "cam", T0, "published", 1.0)
        _photo(db, "b.jpg", "cam", T0 + timedelta(hours=1), "rejected", None)
        _photo(db, "c.jpg", "other", T0, "published", 1.0)
        db.execute("INSERT INTO review_queue (photo_key, meter_id, ts_ms, reason, created_ms) VALUES "
                   "('b.jpg', 'cam', 0, 'unreadable', 0)")
        assert nd.camera_meters(db) == ["cam", "other"]
        p = nd.load_photos(db, "cam", T0 + timedelta(minutes=1))
        assert p.status.tolist() == ["rejected"] and p.has_value.tolist() == [False]
        assert nd.review_queue(db, "cam") == 1 and nd.review_queue(db, "other") == 0


def test_ensure_household_data_only_fills_an_empty_meter(tmp_path: Path) -> None:
    with open_database(f"sqlite:///{tmp_path / 'h.db'}") as db:
        settings = Settings()
        first = notebook_demo.ensure_household_data(db, settings, "h", days=1.0)
        assert first is not None and first.ingest.summary().startswith("1440 accepted")
        assert notebook_demo.ensure_household_data(db, settings, "h", days=1.0) is None
        assert db.count_readings("h") == 1440
        assert notebook_demo.ensure_household_data(db, settings, "h2", days=1.0) is not None  # beside demo data: fine
        db.insert_readings(readings([300.0] * 10))  # a real meter m1
        assert nd.real_readings(db) == 11
        assert notebook_demo.ensure_household_data(db, settings, "h3", days=1.0) is None  # never into real data
        assert db.count_readings("h3") == 0


def test_consumption_report_never_simulates_into_a_database_with_real_readings(tmp_path: Path) -> None:
    nbclient = pytest.importorskip("nbclient")
    url = f"sqlite:///{tmp_path / 'real.db'}"
    with open_database(url) as db:
        db.insert_readings(readings([300.0] * 10))
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="no readings in the period.*stored meters: m1"):
        run_notebook("consumption_report", tmp_path, database_url=url, meter_id="house")
    with open_database(url) as db:
        assert db.meters() == ["m1"] and db.count_readings() == 11


def test_notebook_settings_adds_a_resolution_only_for_unconfigured_meters(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("meters:\n  - id: known\n    resolution_kwh: 0.01\n", encoding="utf-8")
    assert nd.notebook_settings(str(cfg), "known", 0.001).meter("known").resolution_kwh == 0.01
    assert nd.notebook_settings(str(cfg), "new", 0.001).meter("new").resolution_kwh == 0.001
    assert nd.notebook_settings("", "new").meter("new").resolution_kwh == 0.1


def test_notebooks_are_committed_without_outputs() -> None:
    nbformat = pytest.importorskip("nbformat")
    for path in NOTEBOOKS.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert all(not c.get("outputs") and c.get("execution_count") is None
                   for c in nb.cells if c.cell_type == "code"), path.name
