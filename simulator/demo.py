"""``smartmeter demo``: the whole loop on a simulated meter, with embedded defaults, in a fresh folder.

Steps (``STEPS``, small functions over one ``Demo`` context, so more parts plug in as further steps):

1. household   generate a few days of one household at 1 s, inject events, write data.csv + events.json
2. camera      photograph the simulated meter into the local image store on an accelerated clock
3. import      import data.csv into the readings database (server.csv_import), meter ``house1``
4. worker      the server worker reads the photos (OCR), validates across frames, stores meter ``sim1``
5. accuracy    OCR readings against the simulator's ground truth
6. report      power and anomalies of both meters (server.report), beside the injected events

A step whose module is missing prints that it is skipped; the others still run. Then the dashboard is served on
the demo's data (``serve_dashboard``: its URL printed, viewing open to loopback, until Ctrl-C); ``--no-serve``
stops after the steps.
"""

from __future__ import annotations

import importlib
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from smartmeter.errors import InputError
from smartmeter.settings import (
    CnnReaderSettings,
    DatabaseSettings,
    LocalStoreSettings,
    MeterSettings,
    OcrSettings,
    Settings,
    StoreSettings,
)
from smartmeter.simulator.dataset import read_csv, write_csv
from smartmeter.simulator.events import Event, plan_events, write_events
from smartmeter.simulator.household import Household, generate
from smartmeter.simulator.meter_render import MeterRenderer, Truth

log = logging.getLogger(__name__)

MARKER = ".smartmeter-demo"
CSV_METER, CAMERA_METER = "house1", "sim1"


class StepSkipped(Exception):
    """A part the step needs is not installed or not written yet."""


@dataclass
class Demo:
    out: Path
    settings: Settings
    days: float = 3.0
    every_s: float = 300.0
    profile: str = "day-worker"
    seed: int = 1
    start: datetime = datetime(2024, 7, 1, tzinfo=UTC)
    echo: Callable[[str], None] = click.echo
    household: Household | None = None
    events: list[Event] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def csv_path(self) -> Path:
        return self.out / "data.csv"

    @property
    def images(self) -> Path:
        return self.settings.store.local.root

    def db(self) -> Any:
        try:
            from smartmeter.server.database import open_database
        except ImportError as exc:
            raise StepSkipped(f"server.database is not available ({exc})") from exc
        return open_database(self.settings.database.url)


def demo_settings(out: Path) -> Settings:
    """Embedded defaults, pointed into the demo folder; the camera meter reads with the simulator's profile.

    The simulated meter is drawn from digit crops of meters the shipped production model was trained on, so the
    demo reads with the hold-out model (same recipe, never saw those meters): its accuracy figure stays honest.
    """
    from smartmeter.ocr.readers.cnn import HOLDOUT_MODEL

    return Settings(store=StoreSettings(local=LocalStoreSettings(root=out / "images")),
                    ocr=OcrSettings(reader=CnnReaderSettings(model=HOLDOUT_MODEL)),
                    database=DatabaseSettings(url=f"sqlite:///{out / 'smartmeter.db'}"),
                    meters=[MeterSettings(id=CAMERA_METER, profile=out / "profile" / "profile.yaml"),
                            MeterSettings(id=CSV_METER)])


def fresh_folder(out: Path) -> None:
    """Empty ``out`` for a new run; refuses a non-empty folder that an earlier demo did not create."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise InputError(f"{out} exists and is not a demo folder; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("created by smartmeter demo; deleted by the next run\n")


# -- steps ---------------------------------------------------------------------------------------------------
def step_household(d: Demo) -> None:
    evs = plan_events(d.start, int(d.days * 86400), d.seed,
                      power_threshold_w=d.settings.analysis.power_threshold_w)
    d.household = generate(d.profile, d.days, d.start, d.seed, events=evs, components=False)
    d.events = evs
    rows = write_csv(d.household, d.csv_path, step=60)
    write_events(evs, d.out)
    used = float(d.household.register_kwh[-1] - d.household.start_kwh)
    d.echo(f"  {d.profile}, {d.days:g} days from {d.start:%Y-%m-%d}: {used:.1f} kWh, peak "
           f"{float(d.household.power_w.max()):.0f} W; {rows} rows -> {d.csv_path}")
    for e in evs:
        d.echo(f"  injected {e.kind:<21} {e.start:%m-%d %H:%M} .. {e.end:%m-%d %H:%M} {e.details or ''}")


def step_camera(d: Demo) -> None:
    from smartmeter.simulator.cli import render_photos
    from smartmeter.store import open_store

    renderer = MeterRenderer(d.seed, meter_id=CAMERA_METER)
    renderer.write_profile(d.out / "profile")
    run = render_photos(read_csv(d.csv_path), open_store(d.settings.store), renderer, d.every_s,
                        d.out / "truth.csv", events=d.events, progress=False)
    speedup = d.days * 86400 / max(run.seconds, 1e-9)
    d.echo(f"  {run.photos} photos every {d.every_s:g} s into {d.images} ({run.skipped_stale} missed while the "
           f"camera was stale); {run.seconds:.1f} s wall = {speedup:,.0f}x the real clock")


def step_import(d: Demo) -> None:
    try:
        from smartmeter.server.csv_import import import_csv
    except ImportError as exc:
        raise StepSkipped(f"server.csv_import is not available ({exc})") from exc
    with d.db() as db:
        res = import_csv(db, d.settings, d.csv_path, CSV_METER, progress=False)
    rej = res.ingest.rejected_count
    d.echo(f"  {res.rows} rows -> meter {CSV_METER}: {res.ingest.accepted} accepted, {res.ingest.duplicates} "
           f"duplicates, {rej} rejected ({res.rate:,.0f} rows/s)")


def step_worker(d: Demo) -> None:
    worker = optional("smartmeter.server.worker")
    from smartmeter.store import open_store

    with d.db() as db:
        w = worker.Worker(d.settings, db, open_store(d.settings.store))
        t0 = time.perf_counter()
        stats = w.run_once()
        dt = time.perf_counter() - t0
        d.echo(f"  {stats.summary()} ({stats.read / max(dt, 1e-9):.0f} photos/s)")
        stored = db.count_readings(CAMERA_METER)
    d.echo(f"  {stored} readings stored for meter {CAMERA_METER}")


def photo_outcomes(d: Demo) -> list[tuple[str, float | None, float | None, str]]:
    """(photo key, value read, value published, status) of every camera photo, from the worker's book."""
    from smartmeter.server import photos_repo

    with d.db() as db:
        return photos_repo.outcomes(db, CAMERA_METER)


def accuracy_lines(outcomes: list[tuple[str, float | None, float | None, str]], truth: dict[str, Truth],
                   resolution: float) -> list[str]:
    """OCR and published readings against the simulator's ground truth (the careful human reading)."""
    eps = resolution * 1e-3
    n = read = exact = near = gross = published = pub_exact = pub_gross = 0
    statuses: dict[str, int] = {}
    for key, value, pub, status in outcomes:
        t = truth.get(key)
        if t is None:
            continue
        n += 1
        statuses[status] = statuses.get(status, 0) + 1
        if value is not None:
            read += 1
            err = abs(value - t.value)
            exact += err < eps
            near += eps <= err <= resolution + eps
            gross += err > resolution + eps
        if pub is not None:
            published += 1
            pub_exact += abs(pub - t.value) < eps
            pub_gross += abs(pub - t.value) > resolution + eps
    if not n:
        return ["no photo of the simulated meter was processed"]

    def pct(a: int, b: int) -> str:
        return f"{a}/{b} ({100 * a / b:.1f}%)" if b else f"{a}/0"

    return [f"photos with ground truth: {n}; status: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())),
            f"OCR read a value: {pct(read, n)}; exact: {pct(exact, n)}; off by one last-digit step: "
            f"{pct(near, n)}; wrong by more: {pct(gross, n)}",
            f"published after validation: {pct(published, n)}; exact: {pct(pub_exact, published)}; "
            f"wrong by more than one step: {pct(pub_gross, published)}"]


def step_accuracy(d: Demo) -> None:
    from smartmeter.simulator.cli import read_truth

    optional("smartmeter.server.database")
    truth = read_truth(d.out / "truth.csv")
    outcomes = photo_outcomes(d)
    lines = accuracy_lines(outcomes, truth, d.settings.meter(CAMERA_METER).resolution_kwh)
    d.results["accuracy"] = lines
    for line in lines:
        d.echo("  " + line)


def step_report(d: Demo) -> None:
    try:
        from smartmeter.server.report import build_report, render_text
    except ImportError as exc:
        raise StepSkipped(f"server.report is not available ({exc})") from exc
    with d.db() as db:
        report = build_report(db, d.settings, now=d.start + timedelta(days=d.days))
    for line in render_text(report).splitlines():
        d.echo("  " + line)
    d.echo("  injected events vs anomalies found:")
    for line in match_events(d.events, report):
        d.echo("    " + line)


DETECTED_AS = {"blackout": ("blackout",), "threshold_exceedance": ("power_high",), "stale_camera": ("camera_stale",),
               "heater_left_on": ("long_load",)}  # power_high would be luck


def match_events(events: list[Event], report: dict[str, Any]) -> list[str]:
    """For each injected event: which meters' anomalies of a matching kind overlap it."""
    from smartmeter.types import parse_timestamp

    lines = []
    for e in events:
        hits = []
        for m in report.get("meters", []):
            for a in m.get("events", []):
                if a["kind"] in DETECTED_AS[e.kind] and a["start"] and a["end"] and \
                        parse_timestamp(a["start"]) < e.end and parse_timestamp(a["end"]) > e.start:
                    hits.append(f"{m['meter']}:{a['kind']}")
        found = ", ".join(sorted(set(hits))) or "NOT FOUND"
        lines.append(f"{e.kind:<21} {e.start:%m-%d %H:%M} .. {e.end:%m-%d %H:%M}  -> {found}")
    return lines


Step = tuple[str, str, Callable[[Demo], None]]
STEPS: list[Step] = [
    ("household", "generate a simulated household", step_household),
    ("camera", "photograph the simulated meter (accelerated clock)", step_camera),
    ("import", "import the household CSV", step_import),
    ("worker", "read, validate and store the photos", step_worker),
    ("accuracy", "OCR against the simulator's ground truth", step_accuracy),
    ("report", "power and anomaly summary", step_report),
]


def run_demo(d: Demo, steps: list[Step] | None = None) -> dict[str, str]:
    """Run the steps in order; returns {step: "ok" | "skipped: why"}. Errors other than a skip propagate."""
    fresh_folder(d.out)
    status: dict[str, str] = {}
    for i, (name, title, fn) in enumerate(steps or STEPS, start=1):
        d.echo(f"[{i}] {name}: {title}")
        t0 = time.perf_counter()
        try:
            fn(d)
            status[name] = "ok"
        except StepSkipped as exc:
            status[name] = f"skipped: {exc}"
            d.echo(f"  SKIPPED: {exc}")
        d.echo(f"  ({time.perf_counter() - t0:.1f} s)")
    return status


DEMO_TARIFF = {"name": "demo flat 0.25/kWh", "start": "2000-01-01", "energy": [{"tiers": [{"price": 0.25}]}]}


def serve_dashboard(settings: Settings, host: str = "127.0.0.1", port: int = 8080,
                    stop: threading.Event | None = None, echo: Callable[[str], None] = click.echo) -> None:
    """Serve the dashboard on the demo's data until ``stop`` is set (Ctrl-C / SIGTERM when None): viewing open
    to loopback clients (no login; writes still need one), the invoice page priced at a demo flat tariff."""
    import uvicorn

    from smartmeter.lifecycle import stop_on_signals
    from smartmeter.server.api import create_app
    from smartmeter.server.database import open_database

    served = settings.model_copy(update={
        "auth": settings.auth.model_copy(update={"open_read_networks": ["127.0.0.0/8", "::1/128"]}),
        "billing": settings.billing if settings.billing.tariffs else
        settings.billing.model_validate({**settings.billing.model_dump(), "tariffs": [DEMO_TARIFF]})})
    url = served.database.url
    server = uvicorn.Server(uvicorn.Config(create_app(served, lambda: open_database(url)), host=host, port=port,
                                           log_level="warning", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, name="demo-dashboard", daemon=True)
    with stop_on_signals(stop, "stopping the dashboard") as event:
        thread.start()
        while not server.started and thread.is_alive() and not event.is_set():
            time.sleep(0.05)
        if not server.started:
            server.should_exit = True
            thread.join(5)
            if event.is_set():
                return
            raise InputError(f"the dashboard cannot listen on {host}:{port}", hint="another port: --port N")
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        echo(f"dashboard: http://{shown}:{port}/  (the demo's meters {CAMERA_METER} and {CSV_METER}; setup page "
             f"/meters/{CAMERA_METER}/setup, invoices /meters/{CSV_METER}/invoice?period=YYYY-MM); Ctrl-C stops it")
        event.wait()
        server.should_exit = True
        thread.join(10)


@click.command("demo")
@click.option("--out", type=click.Path(path_type=Path), default=Path("var/demo"), show_default=True,
              help="Fresh output folder (emptied if an earlier demo made it).")
@click.option("--days", type=click.FloatRange(min=0.05, max=60), default=3.0, show_default=True)
@click.option("--every", type=click.FloatRange(min=10), default=300.0, show_default=True,
              help="Simulated seconds between photos.")
@click.option("--profile", type=click.Choice(["day-worker", "office", "shift-worker"]), default="day-worker",
              show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--serve/--no-serve", default=True, show_default=True,
              help="End by serving the dashboard on the demo's data until Ctrl-C.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Dashboard listen address.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="Dashboard port.")
def demo_cmd(out: Path, days: float, every: float, profile: str, seed: int, serve: bool, host: str,
             port: int) -> None:
    """Run the whole loop on a simulated meter (embedded defaults, output in a fresh folder), then serve the
    dashboard on its data until Ctrl-C (``--no-serve``: stop after the run)."""
    out = out.resolve()
    t0 = time.perf_counter()
    d = Demo(out, demo_settings(out), days=days, every_s=every, profile=profile, seed=seed)
    status = run_demo(d)
    skipped = [f"{k} ({v})" for k, v in status.items() if v != "ok"]
    click.echo(f"demo finished in {time.perf_counter() - t0:.1f} s; output in {out}"
               + (f"; skipped: {'; '.join(skipped)}" if skipped else ""))
    env = f"SMARTMETER_NOTEBOOK_DATABASE={d.settings.database.url}"
    click.echo("the notebooks on the demo's data (from the repo root; executed copies in /tmp):\n"
               + "".join(f"  {env} .venv/bin/jupyter execute notebooks/{n}.ipynb --output=/tmp/demo-{n}\n"
                         for n in ("consumption_report", "capture_health")), nl=False)


def optional(module: str) -> Any:
    """Import ``module`` or raise StepSkipped naming it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise StepSkipped(f"{module} is not available ({exc})") from exc
