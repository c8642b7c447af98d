"""What ``notebooks/capture_health.ipynb`` shows, one function per cell: the notebook only calls these.

``Capture.open`` opens the user's database (the settings' ``database.url`` unless the notebook names another) and
loads, per camera meter, the worker's photo records (table ``photos``) and the readings from photos. The ``show_*``
functions return what a cell displays: texts (printed) and IPython objects (HTML tables with a CSS class, PNGs).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from smartmeter.server.database import Database, open_database
from smartmeter.server.notebook_data import (
    PhotoArrays,
    SeriesArrays,
    camera_meters,
    capture_gaps,
    hourly_counts,
    html_table,
    load_photos,
    notebook_settings,
    parse_period,
    photo_outcomes,
    plot,
    real_readings,
    review_queue,
    to_arrays,
)
from smartmeter.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Capture:
    settings: Settings
    db: Database
    start: datetime | None
    end: datetime | None
    expected_s: float
    meters: list[str] = field(default_factory=list)
    photos: dict[str, PhotoArrays] = field(default_factory=dict)
    camera: dict[str, SeriesArrays] = field(default_factory=dict)

    @classmethod
    def open(cls, database_url: str, config: str, meter_id: str, start: str, end: str,
             interval_s: float | None) -> Capture:
        settings = notebook_settings(config, meter_id or "camera")
        t0, t1 = parse_period(start, end)
        db = open_database(database_url or settings.database.url)
        cap = cls(settings, db, t0, t1, float(interval_s or settings.camera.interval_s))
        cap.meters = [meter_id] if meter_id else camera_meters(db)
        return cap

    def needs_demo(self) -> bool:
        """No camera meter and nothing but demo data: the notebook may simulate one."""
        return not self.meters and not real_readings(self.db, ())

    def load(self, meters: Sequence[str] | None = None) -> list[str]:
        if meters is not None:
            self.meters = list(meters)
        self.photos = {m: load_photos(self.db, m, self.start, self.end) for m in self.meters}
        self.camera = {m: to_arrays(self.db.readings(m, self.start, self.end, sources="image:")) for m in self.meters}
        if not self.meters:
            return ["no camera meter in this database (and it holds real readings: no simulated meter is added)"]
        return [f"{m}: {len(self.photos[m])} photos in the worker's table, {len(self.camera[m])} readings from photos"
                for m in self.meters]

    def times(self, m: str) -> np.ndarray:
        return self.photos[m].epoch_s if len(self.photos[m]) else self.camera[m].epoch_s



def show_per_hour(cap: Capture) -> list[Any]:
    out: list[Any] = []
    per_hour = 3600.0 / cap.expected_s
    for m in cap.meters:
        times = cap.times(m)
        if not len(cap.photos[m]):
            out.append(f"{m}: no photos in the worker's table; counting readings from photos instead")
        if not times.size:
            out.append(f"{m}: nothing to count")
            continue
        starts, counts = hourly_counts(times)
        if times.size > 1:
            out.append(f"{m}: median time between photos {np.median(np.diff(times)):.0f} s (expected "
                       f"{cap.expected_s:g} s)")
        out.append(f"{m}: {int(counts.sum())} photos in {counts.size} h, expected {per_hour * counts.size:.0f} "
                   f"({100 * counts.sum() / (per_hour * counts.size):.0f} %), {int((counts == 0).sum())} hours "
                   "without any")

        def draw(ax: Any, starts: np.ndarray = starts, counts: np.ndarray = counts, m: str = m) -> None:
            ax.bar((starts - starts[0]) / 3600.0, counts, width=0.9, align="edge", label="photos")
            ax.axhline(per_hour, color="tab:red", linestyle="--", label=f"expected ({cap.expected_s:g} s interval)")
            ax.set(xlabel="hours since the first photo", ylabel="photos per hour", title=f"Photos per hour, meter {m}")
            ax.legend()

        out.append(plot(draw, (8, 3)))
    return out


def show_gaps(cap: Capture) -> list[Any]:
    from IPython.display import HTML

    out: list[Any] = []
    stale_s = cap.settings.analysis.stale_camera_s
    for m in cap.meters:
        gaps = capture_gaps(cap.times(m), cap.expected_s, 2 * cap.expected_s)
        out.append(f"{m}: {len(gaps)} gaps longer than {2 * cap.expected_s:g} s; "
                   f"{sum(1 for a, b, _ in gaps if (b - a).total_seconds() >= stale_s)} stale (>= {stale_s:g} s)")
        rows = [(f"{a:%Y-%m-%d %H:%M}", f"{b:%Y-%m-%d %H:%M}", f"{(b - a).total_seconds() / 60:.0f}", missed,
                 "yes" if (b - a).total_seconds() >= stale_s else "") for a, b, missed in gaps]
        out.append(HTML(html_table(["from (UTC)", "to (UTC)", "minutes", "photos missed", "stale"], rows,
                                   "capture-gaps")))
    return out


def show_confidence(cap: Capture) -> list[Any]:
    out: list[Any] = []
    low = cap.settings.validation.min_confidence
    for m in cap.meters:
        p = cap.photos[m]
        conf = p.confidence[p.has_value] if len(p) else cap.camera[m].confidence
        what = "photos read" if len(p) else "readings from photos (stored ones only)"
        if not conf.size:
            out.append(f"{m}: no confidences to show")
            continue
        out.append(f"{m}: {conf.size} {what}; confidence median {np.median(conf):.2f}, "
                   f"{100 * np.mean(conf < low):.0f} % below {low:g} (review threshold)")

        def draw(ax: Any, conf: np.ndarray = conf, what: str = what) -> None:
            ax.hist(conf, bins=np.linspace(0, 1, 21))
            ax.axvline(low, color="tab:red", linestyle="--", label="min_confidence")
            ax.set(xlabel="OCR confidence", ylabel=what)
            ax.legend()

        out.append(plot(draw, (8, 3)))
    return out


def show_outcomes(cap: Capture) -> list[Any]:
    from IPython.display import HTML

    out: list[Any] = []
    for m in cap.meters:
        p = cap.photos[m]
        if not len(p):
            out.append(f"{m}: the worker's photos table has nothing for this meter: outcome shares skipped")
            continue
        rows = [(k, n, f"{100 * n / len(p):.1f} %") for k, n in photo_outcomes(p).items()]
        out.append(HTML(html_table([f"outcome ({m})", "photos", "share"], rows, "photo-outcomes")))
    return out


def show_review(cap: Capture) -> list[Any]:
    out: list[Any] = []
    for m in cap.meters:
        waiting = review_queue(cap.db, m)
        if waiting is None:
            return ["no review queue table in this database (the worker has never run here)"]
        out.append(f"{m}: {waiting} photos wait in the review queue (smartmeter review list)")
    return out
