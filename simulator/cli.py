"""``smartmeter simulate``: synthetic household datasets and simulated meter photos.

    smartmeter simulate household --profile day-worker --days 30 --out data.csv [--step 60] [--seed 1]
    smartmeter simulate photos --csv data.csv --out DIR --every 300 [--meter sim1]
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import click
import numpy as np

from smartmeter.errors import InputError
from smartmeter.progress import Progress
from smartmeter.simulator.dataset import Series, read_csv, write_csv
from smartmeter.simulator.events import PLANNED, Event, load_events, plan_events, write_events
from smartmeter.simulator.household import COMPONENTS, check_days, generate
from smartmeter.simulator.meter_render import STYLES, TRUTH_HEADER, MeterRenderer, Truth
from smartmeter.simulator.schedule import PROFILES
from smartmeter.store.base import ImageStore
from smartmeter.store.local import LocalStore
from smartmeter.types import parse_timestamp, photo_name

log = logging.getLogger(__name__)


def write_components_csv(hh_components: dict[str, np.ndarray], start: datetime, path: Path, step: int) -> None:
    """Mean power (W) per component over each step: ``timestamp,<component>,...``."""
    names = [c for c in hh_components]
    n = next(iter(hh_components.values())).shape[0]
    k = n // step
    means = {c: hh_components[c][:k * step].reshape(k, step).mean(axis=1, dtype=np.float64) for c in names}
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", *names])
        for i in range(k):
            ts = start + timedelta(seconds=i * step)
            w.writerow([f"{ts:%Y-%m-%dT%H:%M:%SZ}", *(f"{means[c][i]:.1f}" for c in names)])


@dataclass
class PhotoRun:
    photos: int = 0
    skipped_stale: int = 0
    seconds: float = 0.0


def render_photos(series: Series, store: ImageStore, renderer: MeterRenderer, every_s: float, truth_path: Path, *,
                  events: list[Event] | None = None, start: datetime | None = None, end: datetime | None = None,
                  progress: bool = True) -> PhotoRun:
    """Photograph the simulated meter every ``every_s`` seconds of the series (none while the camera is stale)
    and put each photo into ``store`` under its contract name; the truth of every photo goes to ``truth_path``."""
    if every_s <= 0:
        raise InputError(f"--every must be > 0 s, got {every_s}")
    first, last = start or series.start, end or series.end
    stale = [e for e in (events or []) if e.kind == "stale_camera"]
    count = int((last - first).total_seconds() // every_s) + 1
    run, t0 = PhotoRun(), time.monotonic()
    truth_path.parent.mkdir(parents=True, exist_ok=True)
    with truth_path.open("w", newline="", encoding="utf-8") as fh, \
            Progress("photos", count, enabled=progress) as prog:
        w = csv.writer(fh)
        w.writerow(["photo", *TRUTH_HEADER])
        for i in range(count):
            ts = first + timedelta(seconds=i * every_s)
            prog.advance()
            if any(e.covers(ts) for e in stale):
                run.skipped_stale += 1
                continue
            jpeg, truth = renderer.render(series.register_at(ts), ts)
            key = photo_name(renderer.meter_id, ts)
            store.put(key, jpeg)
            w.writerow([key, *truth.row()])
            run.photos += 1
    run.seconds = time.monotonic() - t0
    return run


def read_truth(path: Path) -> dict[str, Truth]:
    """truth.csv back as {photo key: Truth}."""
    out: dict[str, Truth] = {}
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                sx, sy = (int(v) for v in row["shift"].split())
                out[row["photo"]] = Truth(parse_timestamp(row["timestamp"]), float(row["register_kwh"]),
                                          tuple(float(p) for p in row["positions"].split()), row["reading"],
                                          float(row["reading"]), (sx, sy), float(row["brightness"]),
                                          row["blurred"] == "1", row["glare"] == "1")
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"cannot read truth file {path}: {exc}") from exc
    return out


@click.group("simulate")
def simulate_group() -> None:
    """Synthetic households and simulated meter photos."""


@simulate_group.command("household")
@click.option("--profile", type=click.Choice(PROFILES), default="day-worker", show_default=True)
@click.option("--days", type=float, default=30.0, show_default=True, help="Length of the simulation, days.")
@click.option("--start", "start_text", default="2024-01-01T00:00:00Z", show_default=True, help="Start, ISO UTC.")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="Dataset CSV to write.")
@click.option("--step", type=click.IntRange(min=1), default=60, show_default=True, help="Seconds between rows.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--start-kwh", type=click.FloatRange(min=0), default=1000.0, show_default=True)
@click.option("--noise/--no-noise", default=True, show_default=True, help="Per-second meter-like ripple.")
@click.option("--components", is_flag=True, help="Also write <out>.components.csv: mean W per appliance.")
@click.option("--events/--no-events", default=True, show_default=True,
              help="Inject " + ", ".join(PLANNED) + "; ground truth in events.json/events.csv beside --out.")
def household_cmd(profile: str, days: float, start_text: str, out: Path, step: int, seed: int, start_kwh: float,
                  noise: bool, components: bool, events: bool) -> None:
    """Generate one household at 1 s resolution and write timestamp,contatore,potenza."""
    start = parse_timestamp(start_text)
    check_days(days)
    ctx = click.get_current_context()
    threshold = ctx.obj.settings.analysis.power_threshold_w if ctx.obj is not None else 6000.0
    evs = plan_events(start, int(days * 86400), seed, power_threshold_w=threshold) if events else []
    hh = generate(profile, days, start, seed, noise=noise, components=components, start_kwh=start_kwh, events=evs)
    rows = write_csv(hh, out, step)
    if events:
        write_events(evs, out.parent)
    if components:
        write_components_csv(hh.components, hh.start, out.with_suffix(".components.csv"), step)
    used = float(hh.register_kwh[-1] - start_kwh)
    click.echo(f"{out}: {rows} rows, {profile}, {days:g} days, {used:.1f} kWh "
               f"({used / days:.1f} kWh/day), peak {float(hh.power_w.max()):.0f} W"
               + (f"; {len(evs)} events in {out.parent / 'events.json'}" if events else ""))
    log.debug("components: %s", ", ".join(COMPONENTS))


@simulate_group.command("photos")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), required=True, help="Dataset CSV (household).")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True,
              help="Folder: images/ (a local image store), profile.yaml, reference.png, truth.csv.")
@click.option("--every", type=click.FloatRange(min=1), default=300.0, show_default=True,
              help="Seconds between photos.")
@click.option("--meter", default="sim1", show_default=True, help="Meter id in the photo names.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--style", type=click.Choice(STYLES), default=None, help="Which real digit crops the drums show.")
@click.option("--events", "events_path", type=click.Path(path_type=Path), default=None,
              help="events.json (default: beside --csv when present); no photos while the camera is stale.")
def photos_cmd(csv_path: Path, out: Path, every: float, meter: str, seed: int, style: str | None,
               events_path: Path | None) -> None:
    """Render photos of the simulated meter showing the dataset's register, named as a camera names them."""
    series = read_csv(csv_path)
    default_events = csv_path.parent / "events.json"
    evs = load_events(events_path or default_events) if events_path or default_events.exists() else []
    renderer = MeterRenderer(seed, meter_id=meter, style=style)
    renderer.write_profile(out)
    run = render_photos(series, LocalStore(out / "images"), renderer, every, out / "truth.csv", events=evs)
    rate = run.photos / max(run.seconds, 1e-9)
    click.echo(f"{out}: {run.photos} photos ({rate:.0f}/s), {run.skipped_stale} skipped while the camera was stale;"
               f" profile {out / 'profile.yaml'}, truth {out / 'truth.csv'}")
