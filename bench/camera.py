"""Benchmark: the Pi camera daemon's memory and CPU, and its heartbeat with a big backlog, before and after.

``smartmeter camera run`` runs as its own process against the TLS Dropbox fake (tests/fake_dropbox.py; the real
Dropbox SDK, and this tree also with the standard-library client, ``store.dropbox.client: http``), one photo a
second, for ``--seconds``; peak resident memory (VmHWM), CPU and photos uploaded are
read from /proc: "steady" is the median resident memory over the second half of the run (between shots, sampled
every 0.1 s), "peak" the kernel's high-water mark. Each backend runs twice: with the code of ``--before``
(default: the commit before the Pi-path rework, extracted with ``git archive``; any revision works, its settings
layout is detected) and with this working tree, each under the ``Environment=`` lines of its own systemd unit
(raspi/systemd/smartmeter-camera.service, as deployed; not the SMARTMETER_* ones), with the health endpoint on
where the code has one (as deployed). picamera2 is the stand-in of tests/standins (real call signatures; it imports
numpy and PIL as the real one does). Then where the memory goes (one process, step by step, this tree), CPU
between shots (one photo an hour: nothing due) and the CPU of one heartbeat with 10,000 photos in the spool.

Usage: ``python bench/camera.py [--seconds 15] [--before 039ac59^]``. Targets: resident memory <= 80 MB with
picamera2 + Dropbox; ~0 % CPU between shots; a heartbeat must not list the spool (old: 250-310 ms on a Pi).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from fake_dropbox import FakeDropbox  # noqa: E402

STANDINS = REPO / "tests" / "standins"
NEW_KEYS = "  require_clock_sync: false\n  settle_s: 0\n"


def extract(rev: str, into: Path) -> Path:
    """The tree of ``rev`` as files (no checkout, no change to the repository)."""
    data = subprocess.run(["git", "-C", str(REPO), "archive", rev], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="tar")
    return into


def new_layout(tree: Path) -> bool:
    """Whether the tree's settings have the camera's spool/health sections (issue 11) rather than flat keys."""
    return "class SpoolSettings" in (tree / "smartmeter" / "settings.py").read_text()


def unit_env(tree: Path) -> dict[str, str]:
    """The ``Environment=`` lines of the tree's systemd unit, as the service gets them (paths and secrets aside)."""
    unit = tree / "raspi" / "systemd" / "smartmeter-camera.service"
    env = {}
    for line in unit.read_text().splitlines() if unit.exists() else []:
        if line.startswith("Environment="):
            key, _, value = line.removeprefix("Environment=").partition("=")
            if not key.startswith("SMARTMETER_"):
                env[key] = value
    return env


def settings(work: Path, fake: FakeDropbox, backend: str, interval_s: float, new: bool, tag: str = "",
             client: str = "") -> Path:
    replay = work / "replay"
    if not replay.exists():
        replay.mkdir()
        for i in range(5):
            (replay / f"{i:03d}.jpg").write_bytes((REPO / "tests/resources/photos/upright.jpg").read_bytes())
    text = textwrap.dedent(f"""\
        camera:
          backend: {backend}
          meter_id: bench
          interval_s: {interval_s}
          spool_dir: {work}/spool-{backend}-{tag}{interval_s:g}
          health_file: {work}/health-{backend}-{tag}{interval_s:g}.json
          width: 1640
          height: 1232
        """)
    if new:  # the spool and health settings are sections since the split (issue 11)
        text = text.replace("  spool_dir:", "  spool:\n    dir:")
        text = text.replace("  health_file:", "  health:\n    port: 0\n    file:")  # on, any free port
        text += NEW_KEYS + f"  replay_dir: {replay}\n  replay_loop: true\n"
    text += f"store:\n  backend: dropbox\n  dropbox:\n    app_key: {fake.app_key}\n    ca_certs: {fake.ca_file}\n"
    if client:  # store.dropbox.client: sdk | http (this tree only)
        text += f"    client: {client}\n"
    path = work / f"settings-{backend}-{tag}{client}{interval_s:g}.yaml"
    path.write_text(text)
    return path


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmHWM", "VmRSS")):
            key, value = line.split(":")
            out[key] = int(value.split()[0])  # kB
    return out


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_daemon(tree: Path, cfg: Path, fake: FakeDropbox, seconds: float, idle_window: float = 0.0) -> dict[str, float]:
    before = len(fake.files())
    proc = subprocess.Popen([sys.executable, "-c", "from smartmeter.cli import main; main()", "-c", str(cfg),
                             "camera", "run"], env=daemon_env(tree, fake), cwd=cfg.parent, stderr=subprocess.PIPE,
                            text=True)
    samples: list[int] = []
    try:
        start = time.monotonic()
        while (left := seconds - idle_window - (time.monotonic() - start)) > 0:
            time.sleep(min(0.1, left))
            if time.monotonic() - start > seconds / 2:
                samples.append(proc_status(proc.pid)["VmRSS"])
        cpu0 = cpu_s(proc.pid)
        time.sleep(idle_window)
        cpu1 = cpu_s(proc.pid)
        status = proc_status(proc.pid)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    if proc.returncode not in (0, -15):
        raise SystemExit(f"camera run failed ({proc.returncode}): {err[-2000:]}")
    steady = statistics.median(samples) if samples else status["VmRSS"]
    return {"hwm_mb": status["VmHWM"] / 1024, "rss_mb": steady / 1024, "cpu_s": cpu1,
            "idle_cpu_pct": 100 * (cpu1 - cpu0) / idle_window if idle_window else float("nan"),
            "uploaded": len(fake.files()) - before}


def daemon_env(tree: Path, fake: FakeDropbox) -> dict[str, str]:
    return dict(os.environ, **unit_env(tree), PYTHONPATH=f"{tree}:{STANDINS}", DROPBOX_API_HOST=fake.api_host,
                DROPBOX_API_CONTENT_HOST=fake.api_host, SMARTMETER_DROPBOX_REFRESH_TOKEN=fake.refresh_token)


STAGES = """
import sys
from datetime import UTC, datetime
from pathlib import Path
def mem():
    d = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            d[key] = int(value.split()[0]) / 1024
    return d
out = [("python started", mem())]
import smartmeter.cli
out.append(("smartmeter.cli (click, pydantic, settings models, yaml)", mem()))
from smartmeter.settings import load_settings
settings = load_settings(sys.argv[1])
import smartmeter.raspi.cli
from smartmeter.raspi.daemon import return_big_buffers_to_the_os
out.append(("settings loaded, raspi daemon modules", mem()))
from smartmeter.store import open_store
store = open_store(settings.store)
out.append(("Dropbox store opened (" + type(store).__name__ + ")", mem()))
from smartmeter.raspi.camera import open_camera
camera = open_camera(settings.camera)
out.append(("camera opened (picamera2: numpy, PIL)", mem()))
return_big_buffers_to_the_os()
jpeg = camera.capture(datetime.now(UTC))
out.append(("first shot", mem()))
store.put("bench/20250101T000000Z_bench.jpg", jpeg)
out.append(("first upload", mem()))
for name, m in out:
    print(name, m["VmRSS"], m["VmHWM"], m["RssAnon"], m["RssFile"], sep="|")
"""


def stages(tree: Path, cfg: Path, fake: FakeDropbox) -> list[tuple[str, list[float]]]:
    """Resident memory after each step of what ``camera run`` does at start, in one fresh process."""
    out = subprocess.run([sys.executable, "-c", STAGES, str(cfg)], env=daemon_env(tree, fake), cwd=cfg.parent,
                         capture_output=True, text=True, check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line.count("|") == 4]
    return [(r[0], [float(x) for x in r[1:]]) for r in rows]


HEARTBEAT = """
import sys, time
from pathlib import Path
from smartmeter.raspi.daemon import CameraDaemon, CaptureLoop
from smartmeter.raspi.camera import Camera
from smartmeter.raspi.spool import Spool
from smartmeter.raspi.uploader import Uploader
from smartmeter.store.local import LocalStore
class Cam(Camera):
    def capture(self, ts): return b""
root = Path(sys.argv[1])
spool = Spool(root / "spool", 10**12)
d = CameraDaemon(CaptureLoop(Cam(), spool, "bench", 60), Uploader(spool, LocalStore(root / "store")),
                 root / "health.json")
d.write_health()
t = time.process_time()
for _ in range(20):
    d.write_health()
print((time.process_time() - t) / 20 * 1000, d.health()["spool_photos"])
"""


def heartbeat_ms(tree: Path, work: Path) -> tuple[float, int]:
    out = subprocess.run([sys.executable, "-c", HEARTBEAT, str(work)], env=dict(os.environ, PYTHONPATH=str(tree)),
                         cwd=work, capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), int(out[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--before", default="039ac59^", help="git revision of the code to compare with")
    ap.add_argument("--backlog", type=int, default=10_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-camera-") as tmp:
        work = Path(tmp)
        old = extract(args.before, work / "before")
        trees = {"before": (old, new_layout(old)), "after": (REPO, True)}
        fake = FakeDropbox(work).start()
        try:
            for label, (tree, _) in trees.items():
                print(f"{label}: {args.before if label == 'before' else 'this working tree'}, unit environment "
                      f"{unit_env(tree) or 'none'}")
            print(f"\ncamera run, one photo a second for {args.seconds:.0f} s, Dropbox store (TLS fake); code 'before' "
                  "and 'sdk' use the Dropbox SDK, 'http' this tree with store.dropbox.client: http (the Pi's):")
            print(f"{'backend':<11}{'code':<8}{'peak RSS MB':>12}{'steady MB':>10}{'CPU s':>7}{'uploaded':>9}")
            runs = [("before", old, trees["before"][1], ""), ("sdk", REPO, True, "sdk"), ("http", REPO, True, "http")]
            for backend in ("sim", "picamera2", "replay"):
                for label, tree, new, client in runs:
                    if backend == "replay" and not new:
                        continue  # no replay backend before the split
                    r = run_daemon(tree, settings(work, fake, backend, 1, new, label, client), fake, args.seconds)
                    print(f"{backend:<11}{label:<8}{r['hwm_mb']:>12.1f}{r['rss_mb']:>10.1f}{r['cpu_s']:>7.2f}"
                          f"{r['uploaded']:>9.0f}")
            for client in ("sdk", "http"):
                print(f"\nwhere the memory goes (this tree, picamera2 + Dropbox {client} client, one process step by "
                      "step), MB:")
                print(f"{'step':<58}{'RSS':>7}{'+':>7}{'peak':>7}{'anon':>7}{'file':>7}")
                prev, cfg = 0.0, settings(work, fake, "picamera2", 3600, True, "stages", client)
                for name, (rss, hwm, anon, file) in stages(REPO, cfg, fake):
                    print(f"{name:<58}{rss:>7.1f}{rss - prev:>7.1f}{hwm:>7.1f}{anon:>7.1f}{file:>7.1f}")
                    prev = rss
            print("\nCPU between shots (picamera2, one photo an hour: none due), over the last 10 s:")
            for label, (tree, new) in trees.items():
                r = run_daemon(tree, settings(work, fake, "picamera2", 3600, new, label, "http" if new else ""), fake,
                               14, idle_window=10)
                print(f"  {label:<8}{r['idle_cpu_pct']:.2f} % CPU")
        finally:
            fake.stop()
        backlog = work / "backlog"
        (backlog / "spool").mkdir(parents=True)
        for i in range(args.backlog):
            (backlog / "spool" / f"2025{1 + i // 40000 % 12:02d}01T{i // 3600 % 24:02d}{i // 60 % 60:02d}"
                                 f"{i % 60:02d}Z_bench.jpg").write_bytes(b"x" * 100)
        print(f"\nheartbeat with {args.backlog:,} photos waiting in the spool (CPU per heartbeat):")
        for label, (tree, _) in trees.items():
            ms, n = heartbeat_ms(tree, backlog)
            print(f"  {label:<8}{ms:8.2f} ms  ({n} photos counted)")


if __name__ == "__main__":
    main()
