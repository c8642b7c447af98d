"""Benchmark: ``smartmeter backup`` of N photos of 100 KB from the local Dropbox fake, this code beside an older one.

The fake (tests/fake_dropbox.py: HTTPS on localhost, the real Dropbox SDK on the client side) runs in its own
process, filled with N distinct photos, so the peak RSS measured is the backup's alone. Each variant is a fresh
process archiving the whole store into an empty folder: the code before this change (``backup_dropbox/backup.py``
at ``--old-rev``, copied to a temp folder and imported from there) and the current one with 1 and with ``--jobs``
download threads. Printed side by side: seconds, photos/s, MB/s, peak RSS; and the peak RSS of the current code on
a fifth of the photos, to show memory does not grow with the number of photos (each photo is held only while it
is written). Target: 10,000 photos in <= 60 s.

Usage: ``python bench/backup.py [--photos 10000] [--size-kb 100] [--jobs 4] [--old-rev 3ff359b]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def serve(n: int, size: int, tmp: Path) -> None:
    """Child: fill a fake Dropbox with ``n`` photos of ``size`` bytes, print its address, serve until stdin ends."""
    from fake_dropbox import FakeDropbox

    from smartmeter.types import photo_name

    fake = FakeDropbox(tmp).start()
    block = os.urandom(size)
    for i in range(n):
        body = i.to_bytes(8, "big") + block[8:]  # distinct bytes (and content hash) per photo
        key = f"m{i % 3}/{photo_name(f'm{i % 3}', T0 + timedelta(minutes=i))}"
        fake.upload({"path": f"/smartmeter/{key}", "mode": "add"}, body, None)
    print(json.dumps({"api_host": fake.api_host, "ca_file": str(fake.ca_file), "refresh_token": fake.refresh_token,
                      "app_key": fake.app_key}), flush=True)
    sys.stdin.read()
    fake.stop()


def run_variant(spec: dict[str, object], variant: str, jobs: int, old_file: Path) -> None:
    """Child: one backup of the whole store into an empty folder; print its numbers as JSON."""
    from smartmeter.store.dropbox_store import DropboxStore

    store = DropboxStore(app_key=str(spec["app_key"]), refresh_token=str(spec["refresh_token"]),
                         api_host=str(spec["api_host"]), content_host=str(spec["api_host"]),
                         ca_certs=str(spec["ca_file"]), max_retries=2, backoff_s=0, timeout_s=30)
    with tempfile.TemporaryDirectory() as dest:
        t0 = time.perf_counter()
        if variant == "old":
            mod_spec = importlib.util.spec_from_file_location("backup_old", old_file)
            assert mod_spec is not None and mod_spec.loader is not None
            old = importlib.util.module_from_spec(mod_spec)
            sys.modules["backup_old"] = old  # dataclasses look their module up
            mod_spec.loader.exec_module(old)
            stats = old.run_backup(store, Path(dest), progress=False)
        else:
            from smartmeter.backup_dropbox.backup import run_backup

            stats = run_backup(store, Path(dest), progress=False, jobs=jobs)
        seconds = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"photos": stats.copied, "bytes": stats.bytes_copied, "seconds": seconds, "rss_mb": rss_mb}))


def measure(spec_line: str, variant: str, jobs: int, old_file: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child-run", variant, "--jobs", str(jobs),
                          "--old-file", str(old_file)], input=spec_line, stdout=subprocess.PIPE, text=True, check=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def with_store(n: int, size: int, tmp: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, __file__, "--child-serve", str(n), "--size", str(size),
                             "--tmp", str(tmp)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=10_000)
    ap.add_argument("--size-kb", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--old-rev", default="3ff359b", help="git revision of the code before this change")
    ap.add_argument("--child-serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child-run", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--old-file", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_serve is not None:
        serve(args.child_serve, args.size, args.tmp)
        return
    if args.child_run is not None:
        run_variant(json.loads(sys.stdin.readline()), args.child_run, args.jobs, args.old_file)
        return
    size = args.size_kb * 1000
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        old_file = tmp / "backup_old.py"
        old_file.write_text(subprocess.run(["git", "-C", str(ROOT), "show", f"{args.old_rev}:backup_dropbox/backup.py"],
                                           capture_output=True, text=True, check=True).stdout)
        rows: list[tuple[str, int, dict[str, float]]] = []
        for n in (args.photos, max(1, args.photos // 5)):
            proc, spec = with_store(n, size, tmp)
            try:
                variants = [("old", 1), ("new", 1), ("new", args.jobs)] if n == args.photos else [("new", args.jobs)]
                for variant, jobs in variants:
                    label = f"before ({args.old_rev})" if variant == "old" else f"now, --jobs {jobs}"
                    rows.append((label, n, measure(spec, variant, jobs, old_file)))
            finally:
                assert proc.stdin is not None
                proc.stdin.close()
                proc.wait(10)
    print(f"backup from the local Dropbox fake (HTTPS, real SDK), photos of {args.size_kb} KB, {os.cpu_count()} CPUs")
    print(f"{'code':<22} {'photos':>7} {'seconds':>8} {'photos/s':>9} {'MB/s':>7} {'peak RSS MB':>12}")
    for label, n, r in rows:
        print(f"{label:<22} {n:>7} {r['seconds']:>8.1f} {r['photos'] / r['seconds']:>9.0f} "
              f"{r['bytes'] / 1e6 / r['seconds']:>7.1f} {r['rss_mb']:>12.0f}")


if __name__ == "__main__":
    main()
