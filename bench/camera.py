"""Benchmark: the Pi camera daemon's memory and CPU, and its heartbeat with a big backlog, before and after.

``smartmeter camera run`` runs as its own process against the TLS Dropbox fake (tests/fake_dropbox.py, the real
Dropbox SDK), one photo a second, for ``--seconds``; peak resident memory (VmHWM), CPU and photos uploaded are
read from /proc. Each backend runs twice: with the code of ``--before`` (default: the commit before the Pi-path
rework, extracted with ``git archive``) and with this working tree. picamera2 is the stand-in of
tests/standins (real call signatures; it imports numpy and PIL as the real one does). Then CPU between shots
(one photo an hour: nothing due) and the CPU of one heartbeat with 10,000 photos waiting in the spool.

Usage: ``python bench/camera.py [--seconds 15] [--before 039ac59^]``. Targets: resident memory <= 80 MB with
picamera2 + Dropbox; ~0 % CPU between shots; a heartbeat must not list the spool (old: 250-310 ms on a Pi).
"""

from __future__ import annotations

import argparse
import os
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


def settings(work: Path, fake: FakeDropbox, backend: str, interval_s: float, new: bool) -> Path:
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
          spool_dir: {work}/spool-{backend}-{int(new)}
          health_file: {work}/health-{backend}-{int(new)}.json
          width: 1640
          height: 1232
        """)
    if new:  # the spool and health settings are sections since the split (issue 11)
        text = text.replace("  spool_dir:", "  spool:\n    dir:")
        text = text.replace("  health_file:", "  health:\n    port: null\n    file:")
        text += NEW_KEYS + f"  replay_dir: {replay}\n  replay_loop: true\n"
    text += f"store:\n  backend: dropbox\n  dropbox:\n    app_key: {fake.app_key}\n    ca_certs: {fake.ca_file}\n"
    path = work / f"settings-{backend}-{int(new)}.yaml"
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
    env = dict(os.environ, PYTHONPATH=f"{tree}:{STANDINS}", DROPBOX_API_HOST=fake.api_host,
               DROPBOX_API_CONTENT_HOST=fake.api_host, SMARTMETER_DROPBOX_REFRESH_TOKEN=fake.refresh_token)
    before = len(fake.files())
    proc = subprocess.Popen([sys.executable, "-c", "from smartmeter.cli import main; main()", "-c", str(cfg),
                             "camera", "run"], env=env, cwd=cfg.parent, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(seconds - idle_window)
        cpu0 = cpu_s(proc.pid)
        time.sleep(idle_window)
        cpu1 = cpu_s(proc.pid)
        status = proc_status(proc.pid)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    if proc.returncode not in (0, -15):
        raise SystemExit(f"camera run failed ({proc.returncode}): {err[-2000:]}")
    return {"hwm_mb": status["VmHWM"] / 1024, "rss_mb": status["VmRSS"] / 1024, "cpu_s": cpu1,
            "idle_cpu_pct": 100 * (cpu1 - cpu0) / idle_window if idle_window else float("nan"),
            "uploaded": len(fake.files()) - before}


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
        fake = FakeDropbox(work).start()
        try:
            print(f"camera run, one photo a second for {args.seconds:.0f} s, Dropbox store (TLS fake, real SDK):")
            print(f"{'backend':<11}{'code':<8}{'peak RSS MB':>12}{'RSS MB':>8}{'CPU s':>7}{'uploaded':>9}")
            runs = [("sim", old, False), ("sim", REPO, True), ("picamera2", old, False), ("picamera2", REPO, True),
                    ("replay", REPO, True)]
            for backend, tree, new in runs:
                r = run_daemon(tree, settings(work, fake, backend, 1, new), fake, args.seconds)
                print(f"{backend:<11}{'after' if new else 'before':<8}{r['hwm_mb']:>12.1f}{r['rss_mb']:>8.1f}"
                      f"{r['cpu_s']:>7.2f}{r['uploaded']:>9.0f}")
            print("\nCPU between shots (picamera2, one photo an hour: none due), over the last 10 s:")
            for tree, new in ((old, False), (REPO, True)):
                r = run_daemon(tree, settings(work, fake, "picamera2", 3600, new), fake, 14, idle_window=10)
                print(f"  {'after' if new else 'before':<8}{r['idle_cpu_pct']:.2f} % CPU")
        finally:
            fake.stop()
        backlog = work / "backlog"
        (backlog / "spool").mkdir(parents=True)
        for i in range(args.backlog):
            (backlog / "spool" / f"2025{1 + i // 40000 % 12:02d}01T{i // 3600 % 24:02d}{i // 60 % 60:02d}"
                                 f"{i % 60:02d}Z_bench.jpg").write_bytes(b"x" * 100)
        print(f"\nheartbeat with {args.backlog:,} photos waiting in the spool (CPU per heartbeat):")
        for tree, label in ((old, "before"), (REPO, "after")):
            ms, n = heartbeat_ms(tree, backlog)
            print(f"  {label:<8}{ms:8.2f} ms  ({n} photos counted)")


if __name__ == "__main__":
    main()
