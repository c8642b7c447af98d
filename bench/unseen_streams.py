"""Benchmark: a month of photos of meters the digit model never saw, through the real worker.

For each meter held out of the hold-out model's training (``smartmeter.ocr.digit_data.HELD_OUT_METERS``), a
simulated household drives a simulated meter whose drums are that meter's real digit crops; the virtual camera
photographs it every 15 minutes (jitter, light, blur and glare as the renderer does them). The photos go through
``Worker.run_once`` (decode, align, CNN, cross-frame validation, SQLite) with the hold-out model — the honest
stand-in for a user's meter that no model has seen — and every stored reading is compared with what the register
showed (``Truth.value``, the careful reading).

Printed per meter: photos, readings stored (share), wrong values stored (>= 1 register step off; >= 2 steps), and the
share stored on day 1, on day 7 and from day 3 on (with the wrong values from day 3 on). The shipped assets hold two
meters (``powermeter-emeter1``, ``watermeter-techem``); with ``--digits ../shared/data/digits`` the other held-out
meters are rendered too. ``--adapter on|off``: the per-meter adapter (docs/adapter.md) learns from the validated
photos page by page (``--batch`` photos a page: a live worker reads a few at a time).

``--compare REV`` runs the same streams three times in one go and prints them side by side: the code of git
revision REV (``git archive``, adapter off: it had none), this tree with the adapter off, and with it on
(``--now REV2``: revision REV2 instead of the working tree, e.g. ``HEAD`` while others have edits in progress);
``--confirm`` adds a fourth: the adapter on, and the user confirms the register on the first photo.

Usage: ``python bench/unseen_streams.py [--days 30] [--every 900] [--digits DIR] [--meters a,b] [--adapter on|off]
[--compare REV]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, os.environ.get("SMARTMETER_BENCH_TREE", str(REPO)))

from smartmeter.ocr.digit_data import HELD_OUT_METERS  # noqa: E402
from smartmeter.ocr.readers.cnn import HOLDOUT_MODEL  # noqa: E402
from smartmeter.server.database import open_database  # noqa: E402
from smartmeter.server.worker import Worker  # noqa: E402
from smartmeter.settings import Settings, parse_settings  # noqa: E402
from smartmeter.simulator.dataset import Series, sample  # noqa: E402
from smartmeter.simulator.household import generate  # noqa: E402
from smartmeter.simulator.meter_render import STYLES, MeterRenderer, Truth  # noqa: E402
from smartmeter.store.local import LocalStore  # noqa: E402
from smartmeter.types import photo_name  # noqa: E402

START = datetime(2025, 3, 3, tzinfo=UTC)


@dataclass
class StreamResult:
    meter: str
    photos: int = 0
    stored: int = 0
    wrong: int = 0
    wrong2: int = 0
    careless: int = 0
    day1_photos: int = 0
    day1_stored: int = 0
    day7_photos: int = 0
    day7_stored: int = 0
    late_photos: int = 0
    late_stored: int = 0
    late_wrong: int = 0
    seconds: float = 0.0

    def row(self) -> str:
        share = 100 * self.stored / max(self.photos, 1)
        d1 = 100 * self.day1_stored / max(self.day1_photos, 1)
        d7 = 100 * self.day7_stored / max(self.day7_photos, 1)
        late = 100 * self.late_stored / max(self.late_photos, 1)
        return (f"{self.meter:<22} {self.photos:>6} {share:>7.1f} % {self.wrong:>6} {self.wrong2:>6} "
                f"{self.careless:>8}   "
                f"{d1:>6.1f} % {d7:>6.1f} % {late:>8.1f} % {self.late_wrong:>6}   {self.seconds:>6.0f} s")


def run_stream(style: str, days: float, every_s: int, seed: int, digits: Path | None, adapter: bool = False,
               batch: int = 256, confirm: bool = False) -> StreamResult:
    """One meter's stream through the worker; ``confirm``: the user confirms the register on the first photo
    (``smartmeter meter confirm``) after the worker has read it."""
    res = StreamResult(style)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="smartmeter-unseen-") as tmp:
        root = Path(tmp)
        meter = f"m-{style}"
        renderer = MeterRenderer(seed, meter_id=meter, style=style,
                                 digits_root=None if style in STYLES else digits)
        profile = renderer.write_profile(root / "profile")
        rng = np.random.default_rng(seed)
        hh = generate("day-worker", days + 1 / 24, START, seed, components=False,
                      start_kwh=float(rng.uniform(1000, 90000)))
        idx, reg, _ = sample(hh, 60)
        series = Series(START.timestamp() + idx.astype(np.float64), reg)
        store = LocalStore(root / "images")
        truth: dict[str, Truth] = {}
        photos: list[tuple[str, bytes]] = []
        for i in range(int(days * 86400 // every_s)):
            ts = START + timedelta(seconds=i * every_s)
            jpeg, t = renderer.render(series.register_at(ts), ts)
            key = photo_name(meter, ts)
            photos.append((key, jpeg))
            truth[key] = t
        adapt = (f"adapter: {{enabled: {str(adapter).lower()}}}"
                 if "adapter" in Settings.model_fields else "")  # the code before the adapter has no such section
        settings = parse_settings(f"""
store: {{local: {{root: {root / 'images'}}}}}
database: {{url: "sqlite:///{root / 'db.sqlite'}"}}
meters: [{{id: {meter}, profile: {profile}}}]
ocr: {{reader: {{engine: cnn, model: {HOLDOUT_MODEL}}}}}
worker: {{batch_size: {batch}}}
{adapt}
""")
        with open_database(settings.database.url) as db:
            if confirm:  # the setup: the first photo is read, the user confirms what the meter shows
                try:
                    from smartmeter.server.setup_reading import confirm as confirm_reading
                except ImportError:  # a revision from before it moved there (--compare, --now)
                    from smartmeter.server.cli_meter import confirm as confirm_reading  # type: ignore[attr-defined,no-redef]

                store.put(*photos[0])
                Worker(settings, db, store).run_once()
                confirm_reading(db, settings, meter, truth[photos[0][0]].reading, photos[0][0])
            for key, jpeg in photos[1 if confirm else 0:]:
                store.put(key, jpeg)
            Worker(settings, db, store).run_once()
            rows = db.query("SELECT source, value_kwh FROM readings WHERE meter_id = ? AND status IN "
                            "('accepted', 'corrected')", [meter])
            read_digits = dict(db.query("SELECT photo_key, digits FROM photos WHERE meter_id = ?", [meter]))
            frames = {k: row for k, *row in db.query(
                "SELECT photo_key, status, reading, published_kwh, confidence, reason FROM photos WHERE "
                "meter_id = ?", [meter])}
    step = 10.0 ** -renderer.decimals
    stored = {src.split(":", 1)[1]: float(v) for src, v in rows if src.startswith(("image:", "review:"))}
    order = sorted(stored)
    for key, t in truth.items():
        day = (t.timestamp - START).total_seconds() / 86400
        res.photos += 1
        res.day1_photos += day < 1
        res.day7_photos += 6 <= day < 7
        res.late_photos += day >= 2
        if key not in stored:
            continue
        # Wrong: a step or more from what the register held (reading .3 while the tenths drum rolls from 2 to 3
        # is right; .3 while it rests on 2 is wrong). ``careless`` counts values other than the careful reading.
        off = int(abs(stored[key] - t.register_kwh) / step + 1e-9)
        res.careless += round(abs(stored[key] - t.value) / step) >= 1
        res.stored += 1
        res.day1_stored += day < 1
        res.day7_stored += 6 <= day < 7
        res.late_stored += day >= 2
        res.wrong += off >= 1
        res.wrong2 += off >= 2
        res.late_wrong += day >= 2 and off >= 1
        if off >= 1:
            i = order.index(key)
            near = ", ".join(f"{k[9:13]} {stored[k]:g}" for k in order[max(0, i - 2):i + 3])
            logging.getLogger("bench").info("%s: stored %s, register showed %s (%.3f), %d steps off; drums %s, "
                                            "read %s; stored around it (HHMM value): %s", key, stored[key],
                                            t.reading, t.register_kwh, off, t.positions, read_digits.get(key), near)
            keys = sorted(truth)
            j = keys.index(key)
            for k in keys[max(0, j - 6):j + 5]:  # every photo around it: what was read, what validation did
                status, reading, published, conf, reason = frames.get(k, ("-", None, None, 0.0, ""))
                logging.getLogger("bench").info("  %s %s truth %.3f read %s (%.2f) %s %s: %s; last drum %s",
                                                "*" if k == key else " ", k[9:13], truth[k].register_kwh,
                                                reading, conf, status, published, reason,
                                                (read_digits.get(k) or "[]")[-18:])
    why: dict[str, int] = {}  # why photos from day 3 on were not stored (reason, digit numbers and values left out)
    for key, t in truth.items():
        if key not in stored and (t.timestamp - START).total_seconds() >= 2 * 86400:
            status, _, _, _, reason = frames.get(key, ("-", None, None, 0.0, "not recorded"))
            kind = re.sub(r"[-+]?\d[\d.]*", "N", re.sub(r" \(.*", "", (reason or status).split(":")[0]))
            why[f"{status}: {kind}"] = why.get(f"{status}: {kind}", 0) + 1
    for kind, n in sorted(why.items(), key=lambda p: -p[1])[:8]:
        logging.getLogger("bench").info("  not stored from day 3 on: %5d  %s", n, kind)
    res.seconds = time.perf_counter() - t0
    return res


HEADER = (f"{'meter':<22} {'photos':>6} {'stored':>9} {'wrong':>6} {'>=2':>6} {'!=read':>8}   {'day 1':>8} "
          f"{'day 7':>8} {'day 3+':>10} {'wrong':>6}   {'time':>8}")


def compare(args: argparse.Namespace, passed: list[str]) -> None:
    """The streams through the code of ``args.compare`` and this tree (adapter off, on), side by side."""
    with tempfile.TemporaryDirectory(prefix="smartmeter-before-") as old, \
            tempfile.TemporaryDirectory(prefix="smartmeter-now-") as new:
        for rev, tree in ((args.compare, old), (args.now, new)):
            if rev is not None:
                archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True,
                                         capture_output=True).stdout
                subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
        now = new if args.now else str(REPO)
        label = f" ({args.now})" if args.now else ""
        runs = [(f"before ({args.compare})", old, "off"), (f"now{label}, adapter off", now, "off"),
                (f"now{label}, adapter on", now, "on")]
        if args.confirm:
            runs.append((f"now{label}, on + confirm", now, "confirm"))
        results: list[list[StreamResult]] = []
        for _, tree, adapter in runs:
            env = {**os.environ, "SMARTMETER_BENCH_TREE": tree, "PYTHONPATH": tree}
            flags = ["--adapter", "on", "--confirm"] if adapter == "confirm" else ["--adapter", adapter]
            out = subprocess.run([sys.executable, __file__, *passed, *flags, "--json"], env=env,
                                 check=True, capture_output=True, text=True).stdout
            results.append([StreamResult(**r) for r in json.loads(out.strip().splitlines()[-1])])
    print(f"{args.days:g} days, a photo every {args.every} s, hold-out model, {args.batch} photos a page")
    for i, meter_rows in enumerate(zip(*results, strict=True)):
        if i == 0:
            print(f"{'':<28}{HEADER[22:]}")
        print(meter_rows[0].meter)
        for (label, _, _), r in zip(runs, meter_rows, strict=True):
            print(f"  {label:<26}" + r.row()[22:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--every", type=int, default=900, help="seconds between photos")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--digits", type=Path, default=None, help="the digit data set (labels.csv), for more meters")
    ap.add_argument("--meters", default=None, help="comma-separated meter folders (default: the held-out ones)")
    ap.add_argument("--adapter", choices=("on", "off"), default="on", help="the per-meter adapter")
    ap.add_argument("--batch", type=int, default=32, help="photos per worker page (the adapter learns per page)")
    ap.add_argument("--compare", default=None, metavar="REV", help="side by side: REV's code, adapter off, on")
    ap.add_argument("--now", default=None, metavar="REV", help="with --compare: this revision's code as 'now' "
                                                               "(default: the working tree)")
    ap.add_argument("--confirm", action="store_true", help="the user confirms the register on the first photo "
                                                           "(meter confirm); with --compare: a fourth run")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--verbose", action="store_true", help="log every wrong value stored")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if args.compare:
        passed = [f"--days={args.days}", f"--every={args.every}", f"--seed={args.seed}", f"--batch={args.batch}"]
        passed += [f"--digits={args.digits}"] if args.digits else []
        passed += [f"--meters={args.meters}"] if args.meters else []
        compare(args, passed)
        return
    meters = args.meters.split(",") if args.meters else [m for m in HELD_OUT_METERS
                                                         if m in STYLES or args.digits is not None]
    if args.json:
        rows = [run_stream(m, args.days, args.every, args.seed + i, args.digits, args.adapter == "on", args.batch,
                           args.confirm) for i, m in enumerate(meters)]
        print(json.dumps([asdict(r) for r in rows]))
        return
    print(f"{args.days:g} days, a photo every {args.every} s, hold-out model, adapter {args.adapter}")
    print(HEADER)
    print("  wrong: >= 1 step from the register; >=2: two steps or more; !=read: not the careful reading")
    for i, m in enumerate(meters):
        print(run_stream(m, args.days, args.every, args.seed + i, args.digits, args.adapter == "on",
                         args.batch, args.confirm).row(), flush=True)


if __name__ == "__main__":
    main()
