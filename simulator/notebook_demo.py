"""Demo data for the notebooks, only when a meter has no readings at all (never into a real database).

- ``ensure_household_data``: a simulated household (``smartmeter.simulator.household`` with its injected events:
  blackout, heater left on, threshold exceedance) written as a dataset CSV and imported with
  ``smartmeter.server.csv_import`` (``with_household_data``: the same for a consumption notebook session);
- ``simulate_camera``: photos of the simulated meter read by the real OCR and judged by the real validator.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from smartmeter.server.csv_import import ImportResult, import_csv
from smartmeter.server.database import Database
from smartmeter.server.notebook_data import DEMO_CAMERA, real_readings
from smartmeter.settings import MeterSettings, Settings

log = logging.getLogger(__name__)

def ensure_household_data(db: Database, settings: Settings, meter_id: str, *, days: float = 7.0,
                          start: datetime | None = None, seed: int = 1, profile: str = "day-worker",
                          step_s: int = 60, demo_meters: Sequence[str] = (DEMO_CAMERA,)) -> ImportResult | None:
    """Import a simulated week (with injected events) for ``meter_id`` when it has no readings and the database
    holds nothing but demo data; None otherwise (a real database never gets simulated readings)."""
    if db.count_readings(meter_id) or real_readings(db, demo_meters):
        return None
    from smartmeter.simulator.dataset import write_csv
    from smartmeter.simulator.events import plan_events
    from smartmeter.simulator.household import generate

    start = start or datetime(2024, 3, 4, tzinfo=UTC)  # a Monday: five weekdays and a weekend
    events = plan_events(start, int(days * 86400), seed, kinds=("blackout", "heater_left_on", "threshold_exceedance"),
                         power_threshold_w=settings.analysis.power_threshold_w)
    hh = generate(profile, days, start, seed, components=False, events=events)
    with tempfile.TemporaryDirectory(prefix="smartmeter-nb-") as tmp:
        path = Path(tmp) / f"simulated-{profile}.csv"
        write_csv(hh, path, step_s)
        result = import_csv(db, settings, path, meter_id, progress=False)
    log.info("demo data for %s: %s", meter_id, result.summary())
    return result


def with_household_data(session: Any, days: float = 7.0, resolution_kwh: float | None = None) -> Any:
    """The consumption notebook's demo step: :func:`ensure_household_data` for ``session``'s meter (a
    ``server.notebook_consumption.Session``), printing what it did; the demo data's register step is 1 Wh."""
    imported = ensure_household_data(session.db, session.settings, session.meter.id, days=days)
    if imported is None:
        return session
    print("the meter had no readings: imported a simulated household:", imported.summary())
    return session.with_resolution(0.001) if resolution_kwh is None else session


def with_camera_demo(cap: Any, meter_id: str, folder: Path, hours: float = 24.0, interval_s: float = 600.0,
                     given_interval: float | None = None) -> list[str]:
    """The capture notebook's demo step: without any camera meter (and nothing but demo data) photograph a simulated
    meter and let the worker read it (:func:`simulate_camera`); then load every meter's records into ``cap`` (a
    ``server.notebook_capture.Capture``). Returns the lines to print."""
    lines: list[str] = []
    if cap.needs_demo():
        stats = simulate_camera(cap.db, cap.settings, meter_id, folder, hours=hours, interval_s=interval_s)
        lines.append(f"no camera meter in the database: simulated {meter_id} ({folder}); worker: {stats.summary()}")
        cap.meters = [meter_id]
        if not given_interval:
            cap.expected_s = interval_s  # the simulated meter's own interval
    return lines + cap.load()


def simulate_camera(db: Database, settings: Settings, meter_id: str, folder: Path, *, hours: float = 24.0,
                    interval_s: float = 600.0, stale: tuple[float, float] | None = (9.0, 11.5), seed: int = 1,
                    start: datetime | None = None) -> Any:
    """Demo camera meter: photograph a simulated household's meter every ``interval_s`` into a local image store
    under ``folder`` (no photos during the ``stale`` hours), then let the real worker read, validate and store
    them (tables photos, review_queue, corrections). Returns the worker's statistics."""
    from smartmeter.server.worker import Worker
    from smartmeter.simulator.cli import render_photos
    from smartmeter.simulator.dataset import Series, sample
    from smartmeter.simulator.events import Event
    from smartmeter.simulator.household import generate
    from smartmeter.simulator.meter_render import MeterRenderer
    from smartmeter.store.local import LocalStore

    start = start or datetime(2024, 3, 4, tzinfo=UTC)
    hh = generate("day-worker", hours / 24.0 + 60 / 86400.0, start, seed, components=False, start_kwh=12345.0)
    idx, reg, _ = sample(hh, 60)
    series = Series(start.timestamp() + idx.astype(np.float64), reg)
    events = [] if stale is None else [Event("stale_camera", start + timedelta(hours=stale[0]),
                                             start + timedelta(hours=stale[1]))]
    renderer = MeterRenderer(seed, meter_id=meter_id)
    profile = renderer.write_profile(folder)
    store = LocalStore(folder / "images")
    render_photos(series, store, renderer, interval_s, folder / "truth.csv", events=events, start=start,
                  end=start + timedelta(hours=hours, seconds=-1), progress=False)
    meter = MeterSettings(id=meter_id, profile=profile)
    cam_settings = settings.model_copy(update={"meters": [*(m for m in settings.meters if m.id != meter_id), meter]})
    stats = Worker(cam_settings, db, store).run_once()
    log.info("demo camera %s: %s", meter_id, stats.summary())
    return stats
