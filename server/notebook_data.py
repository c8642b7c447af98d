"""Data helpers behind the notebooks (``notebooks/``): readings as arrays, per-hour and per-day figures, a demo
dataset when the database is empty, capture-health figures for camera meters.

The notebooks stay thin: every number they show comes from a function here (tested in tests/test_notebooks.py).
Days are UTC days (as in ``smartmeter.server.analysis``); hour-of-day profiles use the ``timezone`` given.

The demo data the notebooks fall back to on an empty database is made in ``smartmeter.simulator.notebook_demo`` (the
simulator sits above the server: README, "Architecture").
"""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from smartmeter.errors import InputError
from smartmeter.server import photos_repo, readings_repo, review_repo
from smartmeter.server.database import Database
from smartmeter.server.power import clean_series, power_holds, register_at, step_points
from smartmeter.settings import MeterSettings, Settings, load_settings
from smartmeter.types import Reading, parse_timestamp

log = logging.getLogger(__name__)

DEMO_SOURCE = "csv:simulated-"  # readings imported by ensure_household_data
DEMO_CAMERA = "sim1"  # the capture-health notebook's simulated camera meter


def parse_period(start: str, end: str) -> tuple[datetime | None, datetime | None]:
    """Notebook parameters ("" = open) -> UTC datetimes; a date alone means its midnight UTC."""
    out: list[datetime | None] = []
    for text in (start, end):
        out.append(parse_timestamp(text) if text.strip() else None)
    if out[0] is not None and out[1] is not None and out[1] <= out[0]:
        raise InputError(f"the period ends ({end}) before it starts ({start})")
    return out[0], out[1]


def notebook_settings(config: str, meter_id: str, resolution_kwh: float | None = None) -> Settings:
    """Settings from ``config`` ("" = embedded defaults); an unconfigured meter gets ``resolution_kwh``."""
    settings = load_settings(config or None)
    if resolution_kwh is not None and all(m.id != meter_id for m in settings.meters):
        meter = MeterSettings(id=meter_id, resolution_kwh=resolution_kwh)
        settings = settings.model_copy(update={"meters": [*settings.meters, meter]})
    return settings


@dataclass
class SeriesArrays:
    """One meter's current readings as arrays (time order, one row per timestamp)."""

    epoch_s: np.ndarray  # float64 seconds since the epoch, UTC
    kwh: np.ndarray  # register
    power_w: np.ndarray  # sensor power, NaN where none was reported
    confidence: np.ndarray
    camera: np.ndarray  # bool: the reading came from a photo (source image:...)

    def __len__(self) -> int:
        return int(self.epoch_s.shape[0])


def to_arrays(readings: Sequence[Reading]) -> SeriesArrays:
    series = clean_series(readings)
    return SeriesArrays(
        np.array([r.timestamp.timestamp() for r in series], dtype=np.float64),
        np.array([r.value_kwh for r in series], dtype=np.float64),
        np.array([np.nan if r.power_w is None else r.power_w for r in series], dtype=np.float64),
        np.array([r.confidence for r in series], dtype=np.float64),
        np.array([r.source.startswith("image:") for r in series], dtype=bool))


def real_readings(db: Database, demo_meters: Sequence[str] = (DEMO_CAMERA,)) -> int:
    """Readings that are not the notebooks' demo data: demo data is only ever added to a database without these."""
    return readings_repo.count_other_than(db, DEMO_SOURCE, demo_meters)




# ---- consumption ---------------------------------------------------------------------------------------------
def hourly_energy(readings: Sequence[Reading], resolution_kwh: float) -> tuple[np.ndarray, np.ndarray]:
    """(hour starts as epoch s, kWh in that hour) for every whole UTC hour inside the observed span."""
    series = clean_series(readings)
    if len(series) < 2:
        return np.zeros(0), np.zeros(0)
    points = step_points(series, resolution_kwh)
    first = series[0].timestamp.replace(minute=0, second=0, microsecond=0)
    if first < series[0].timestamp:
        first += timedelta(hours=1)
    hours, energy = [], []
    t = first
    while t + timedelta(hours=1) <= series[-1].timestamp:
        a, b = register_at(points, t), register_at(points, t + timedelta(hours=1))
        if a is not None and b is not None:
            hours.append(t.timestamp())
            energy.append(max(b - a, 0.0))
        t += timedelta(hours=1)
    return np.array(hours, dtype=np.float64), np.array(energy, dtype=np.float64)


def hour_profile(hours: np.ndarray, kwh: np.ndarray, timezone: str = "UTC") -> dict[str, np.ndarray]:
    """Mean power (W) by local hour of day, ``weekday`` and ``weekend`` (NaN where no hour of that kind)."""
    zone = ZoneInfo(timezone)
    out = {k: np.full(24, np.nan) for k in ("weekday", "weekend")}
    sums = {k: np.zeros(24) for k in out}
    counts = {k: np.zeros(24) for k in out}
    for t, e in zip(hours.tolist(), kwh.tolist(), strict=True):
        local = datetime.fromtimestamp(t, zone)
        kind = "weekend" if local.weekday() >= 5 else "weekday"
        sums[kind][local.hour] += e * 1000.0  # kWh in one hour -> mean W
        counts[kind][local.hour] += 1
    for k in out:
        seen = counts[k] > 0
        out[k][seen] = sums[k][seen] / counts[k][seen]
    return out


def duration_curve(readings: Sequence[Reading], resolution_kwh: float, gap_s: float,
                   points: int = 500) -> tuple[np.ndarray, np.ndarray, str]:
    """Load-duration curve: (% of time, W exceeded that long, source). Sensor samples when the series has
    any (each holds until the next, at most ``gap_s``), else derived power between register steps."""
    timed, source = power_holds(readings, resolution_kwh, gap_s)
    secs = np.array([(b - a).total_seconds() for a, b, _ in timed])
    watts = np.array([w for _, _, w in timed], dtype=np.float64)
    if not secs.size or secs.sum() <= 0:
        return np.zeros(0), np.zeros(0), "none"
    order = np.argsort(-watts, kind="stable")
    pct = np.cumsum(secs[order]) / secs.sum() * 100.0
    w = watts[order]
    if pct.size > points:  # the curve is monotone: sampling keeps its shape
        idx = np.unique(np.searchsorted(pct, np.linspace(0, 100, points), side="left").clip(0, pct.size - 1))
        pct, w = pct[idx], w[idx]
    return pct, w, source


def top_hours(hours: np.ndarray, kwh: np.ndarray, n: int = 10, timezone: str = "UTC") -> list[tuple[str, float]]:
    """The ``n`` hours with the highest mean power: (local hour start text, mean W), highest first."""
    zone = ZoneInfo(timezone)
    order = np.argsort(-kwh, kind="stable")[:n]
    return [(f"{datetime.fromtimestamp(float(hours[i]), zone):%Y-%m-%d %H:%M %a}", float(kwh[i] * 1000.0))
            for i in order]


def html_table(headers: Sequence[str], rows: Sequence[Sequence[object]], css_class: str) -> str:
    """A small HTML table (escaped); ``css_class`` names it so tests and readers can find it."""
    def cell(v: object) -> str:
        return html.escape(f"{v:,.3f}" if isinstance(v, float) else str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>\n" for row in rows)
    return f'<table class="{html.escape(css_class)}">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody></table>'


# ---- capture health --------------------------------------------------------------------------------------------
def hourly_counts(epoch_s: np.ndarray, start_s: float | None = None,
                  end_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(UTC hour starts, events per hour) for every hour from the one holding ``start_s`` (default: the first
    event) to the one holding ``end_s`` (exclusive; default: up to the last event)."""
    if not epoch_s.size and (start_s is None or end_s is None):
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    h0 = int(np.floor((epoch_s.min() if start_s is None else start_s) / 3600.0))
    h1 = int(np.floor(epoch_s.max() / 3600.0)) + 1 if end_s is None else int(np.ceil(end_s / 3600.0))
    h = np.floor(epoch_s / 3600.0).astype(np.int64) - h0
    h = h[(h >= 0) & (h < h1 - h0)]
    counts = np.bincount(h, minlength=max(h1 - h0, 0))
    return (h0 + np.arange(counts.size)) * 3600.0, counts.astype(np.int64)


def capture_gaps(epoch_s: np.ndarray, interval_s: float, min_gap_s: float) -> list[tuple[datetime, datetime, int]]:
    """Times between consecutive photos longer than ``min_gap_s``: (start, end, photos missed at ``interval_s``)."""
    t = np.sort(epoch_s)
    out = []
    for a, b in zip(t[:-1].tolist(), t[1:].tolist(), strict=True):
        if b - a > min_gap_s:
            out.append((datetime.fromtimestamp(a, UTC), datetime.fromtimestamp(b, UTC),
                        max(int(round((b - a) / interval_s)) - 1, 0)))
    return out


def db_tables(db: Database) -> set[str]:
    """Every table in the database (SQLite or PostgreSQL)."""
    if db.dialect == "sqlite":
        rows = db.query("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        rows = db.query("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
    return {str(r[0]) for r in rows}


def camera_meters(db: Database) -> list[str]:
    """Meters with photos in the worker's ``photos`` table or readings from photos (source ``image:...``)."""
    ids = readings_repo.meters_with_source(db, "image:")
    if "photos" in db_tables(db):
        ids |= photos_repo.meters(db)
    return sorted(ids)


@dataclass
class PhotoArrays:
    """The worker's record of one meter's photos (table ``photos``), capture-time order."""

    epoch_s: np.ndarray
    status: np.ndarray  # str: published | held | suspect | rejected | failed | duplicate | corrected | ...
    confidence: np.ndarray  # OCR confidence (0 when nothing was read)
    has_value: np.ndarray  # bool: the reader produced a value

    def __len__(self) -> int:
        return int(self.epoch_s.shape[0])


def load_photos(db: Database, meter_id: str, start: datetime | None = None,
                end: datetime | None = None) -> PhotoArrays:
    """Photos of ``meter_id`` with ``start <= capture time < end``; empty without the worker's tables."""
    rows = photos_repo.health_rows(db, meter_id, start, end) if "photos" in db_tables(db) else []
    return PhotoArrays(np.array([r[0] / 1000.0 for r in rows], dtype=np.float64),
                       np.array([r[1] for r in rows], dtype=object),
                       np.array([r[2] for r in rows], dtype=np.float64),
                       np.array([r[3] is not None for r in rows], dtype=bool))


OUTCOMES = ("published", "corrected", "reviewed", "held", "rejected", "unreadable", "duplicate")


def photo_outcomes(photos: PhotoArrays) -> dict[str, int]:
    """Photos per final outcome (exclusive): ``unreadable`` = failed or rejected without a value read;
    ``rejected`` = read but rejected; ``held`` = still held or suspect; ``corrected`` = value replaced or
    withdrawn after publishing; ``reviewed`` = value set by a person."""
    out = dict.fromkeys(OUTCOMES, 0)
    for status, has_value in zip(photos.status.tolist(), photos.has_value.tolist(), strict=True):
        if status in ("failed", "rejected") and not has_value:
            kind = "unreadable"
        elif status in ("held", "suspect"):
            kind = "held"
        elif status in ("corrected", "withdrawn"):
            kind = "corrected"
        else:
            kind = status if status in out else "rejected"
        out[kind] += 1
    return out


def review_queue(db: Database, meter_id: str | None = None) -> int | None:
    """Open items in the review queue (of one meter); None without the worker's tables."""
    if "review_queue" not in db_tables(db):
        return None
    return review_repo.count_open(db, meter_id)




def figure_png(fig: Any) -> bytes:
    """A matplotlib figure as PNG bytes (shown with ``IPython.display.Image``: works with the Agg backend)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def plot(draw: Any, size: tuple[float, float] = (8, 3.5)) -> Any:
    """An IPython image of one matplotlib axes that ``draw(ax)`` fills (Agg backend: runs headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from IPython.display import Image

    fig, ax = plt.subplots(figsize=size)
    draw(ax)
    png = figure_png(fig)
    plt.close(fig)
    return Image(png)


def repo_root(cwd: Path) -> Path:
    """The folder relative settings paths mean (``var/...``): the repo root when run from ``notebooks/``."""
    return cwd.parent if cwd.name == "notebooks" and (cwd.parent / "server").is_dir() else cwd
