"""Transitions: today's assembler and the previous one, side by side, in one run.

    .venv/bin/python bench/transitions.py [--old REV] [--photos 400] [--days 365] [--seed 7]

1. The case table (tests/resources/transitions/cases.yaml: other readers' bug reports, the issue, the simulator's
   renders): right / wrong / refused for each assembler. A refusal is right where the case expects one.
2. Rendered photos (``simulator.meter_render``, the held-out CNN), half of them caught in a transition, read once;
   the digit positions go through both assemblers, with the full profile and with the decimal drum left out of it
   (the integer part is then what a careful person reads). "1 step": the last digit one step off (a drum near
   x.95, where a drum about to arrive and one that has arrived read alike). For refusals with two readings: how
   often the true one is among them (the worker's history can choose).
3. The validation year (``simulator.validation_sim``: a household meter every 10 minutes, injected misreads, the
   cross-frame validator) with each assembler: wrong values stored, yield.
4. Noisy dials: random counters of 1-4 drums and 1-4 pointers (drums read within 0.1, pointers within 0.3, 0.4,
   0.5): right / wrong / refused for the previous assembler, today's, and today's with the needle's side of a mark
   trusted six times as much (crossing cost 3, which would read issue 13's 35.82).

The previous assembler is ``ocr/assemble.py`` as of ``--old`` (default: the commit before the couplings), read
from git.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
import types
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smartmeter.ocr import assemble as new_module  # noqa: E402
from smartmeter.ocr.profile import Coupling  # noqa: E402

CASES = ROOT / "tests" / "resources" / "transitions" / "cases.yaml"
OLD_REV = "ef00374^"
Assembler = Callable[..., Any]


def load_old(rev: str) -> types.ModuleType:
    """``ocr/assemble.py`` as of ``rev``, imported as a module of its own."""
    try:
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:ocr/assemble.py"], check=True,
                                capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        sys.exit(f"cannot read the previous assembler ({rev}) from git: {exc}")
    module = types.ModuleType("assemble_old")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:ocr/assemble.py", "exec"), module.__dict__)  # noqa: S102 - our own history
    return module


def outcome(reading: str | None, expected: str | None, truth: str | None = None) -> str:
    """right / wrong / refused / "as due" (refused where no reading is due); where a refusal is expected, a reading
    of the known truth is right too."""
    if reading is None:
        return "as due" if expected is None else "refused"
    return "right" if reading == (expected or truth) else "wrong"


def bench_cases(old: Assembler) -> None:
    cases = yaml.safe_load(CASES.read_text(encoding="utf-8"))
    counts: dict[str, Counter[str]] = {"previous": Counter(), "today": Counter()}
    changed = []
    for c in cases:
        before = old(c["digits"], c.get("pointers", []), c.get("decimals")).reading
        now = new_module.assemble(c["digits"], c.get("pointers", []), c.get("decimals"),
                                  coupling=Coupling.model_validate(c.get("coupling", {})),
                                  last_resting=c.get("last_resting"))
        a, b = outcome(before, c["expect"], c.get("truth")), outcome(now.reading, c["expect"], c.get("truth"))
        counts["previous"][a] += 1
        counts["today"][b] += 1
        if a != b or before != now.reading:
            changed.append(f"  {c['id']:<48} {str(before):>12} ({a:<7}) -> {str(now.reading or now.candidates):>24} "
                           f"({b})")
    print(f"1. case table ({len(cases)} cases: {CASES.relative_to(ROOT)})")
    print(f"   {'':10} {'right':>6} {'wrong':>6} {'refused':>8}   (+ refused where the case expects a refusal)")
    for name, k in counts.items():
        print(f"   {name:10} {k['right']:>6} {k['wrong']:>6} {k['refused']:>8}   (+ {k['as due']})")
    print("   cases whose result changed (previous -> today):")
    print("\n".join(changed))


def render_positions(n: int, seed: int) -> list[tuple[list[float], str]]:
    """Rendered photos read by the held-out CNN: (digit positions, what a careful person reads)."""
    from smartmeter.ocr.pipeline import MeterReader
    from smartmeter.ocr.profile import load_profile
    from smartmeter.ocr.readers.cnn import HOLDOUT_MODEL, CnnReader
    from smartmeter.simulator.meter_render import MeterRenderer

    reader = CnnReader(HOLDOUT_MODEL)
    rng = np.random.default_rng(seed)
    out = []
    t = datetime(2025, 1, 1, 12, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        for s in (1, 2):
            r = MeterRenderer(seed=seed + s, integer_digits=4, decimals=1)
            meter = MeterReader(load_profile(r.write_profile(Path(tmp) / str(s))), reader)
            for k in range(n // 2):
                units = int(rng.integers(0, 10000))
                frac = rng.uniform(0.85, 1.0) if k % 2 else rng.uniform(0.0, 1.0)  # half caught in a roll
                register = (units + frac) if k % 4 else (units // 10 * 10 + 9 + frac)
                jpeg, truth = r.render(register % 10000, t)
                values = [d.value for d in meter.read(jpeg).digits]
                if all(v is not None for v in values):
                    out.append(([round(float(v), 2) for v in values if v is not None], truth.reading))
    return out


def bench_renders(old: Assembler, n: int, seed: int) -> None:
    start = time.perf_counter()
    photos = render_positions(n, seed)
    print(f"\n2. rendered photos: {len(photos)} read by the CNN ({time.perf_counter() - start:.0f} s), half in a roll")
    print(f"   {'':34} {'right':>6} {'1 step':>7} {'wrong':>6} {'refused':>8} {'truth among 2 candidates':>26}")
    for label, cut, decimals in (("full profile (decimals 1)", 0, 1), ("decimal drum left out", 1, 0)):
        for name in ("previous", "today"):
            k: Counter[str] = Counter()
            among = 0
            for values, reading in photos:
                truth = reading.split(".")[0] if cut else reading
                pos = values[:len(values) - cut]
                got = (old(pos, [], decimals) if name == "previous"
                       else new_module.assemble(pos, [], decimals))
                result = outcome(got.reading, truth)
                if result == "wrong" and abs(float(got.reading) - float(truth)) <= 1.001 * 10.0 ** -decimals:
                    result = "1 step"  # the last digit one step off (an x.95 read as the next digit)
                k[result] += 1
                among += truth in getattr(got, "candidates", [])
            print(f"   {label + ', ' + name:34} {k['right']:>6} {k['1 step']:>7} {k['wrong']:>6} {k['refused']:>8} "
                  f"{among:>26}")


def bench_validation(old: Assembler, days: float, seed: int) -> None:
    from smartmeter.server.frames import Rules
    from smartmeter.simulator import validation_sim

    print(f"\n3. validation year: {days:g} days, a frame every 10 minutes, injected misreads (seed {seed})")
    print(f"   {'':10} {'frames':>7} {'stored':>7} {'yield %':>8} {'wrong stored':>13} {'wrong published':>16}")
    for name, fn in (("previous", old), ("today", new_module.assemble)):
        validation_sim.assemble = fn  # type: ignore[attr-defined]
        try:
            stats, _ = validation_sim.run_validation(validation_sim.simulate_frames(days=days, seed=seed), Rules())
        finally:
            validation_sim.assemble = new_module.assemble  # type: ignore[attr-defined]
        print(f"   {name:10} {stats.frames:>7} {stats.stored:>7} {100 * stats.yield_ratio:>8.2f} "
              f"{stats.wrong_stored:>13} {stats.wrong_published_ever:>16}")


def render_counter(total: float, n_drums: int, n_pointers: int, last_drum: str) -> list[float]:
    """Exact positions: pointers geared continuously, drums rolling while their neighbour passes 9 -> 0, the last
    drum rolling or creeping with the first pointer."""
    n = n_drums + n_pointers
    pos = [0.0] * n
    for i in range(n - 1, -1, -1):
        place = 10.0 ** (n - 1 - i)
        if i >= n_drums or i == n - 1 or (i == n_drums - 1 and last_drum == "continuous"):
            pos[i] = (total / place) % 10.0
        else:
            pos[i] = math.floor(total / place) % 10 + min(max(pos[i + 1] - 9.0, 0.0), 1.0)
    return pos


def bench_noise(old: Assembler, n: int, seed: int) -> None:
    print(f"\n4. noisy dials: {n} random counters per noise level (drums +-0.1, last position +-0.04)")
    print(f"   {'pointer noise':>14} {'assembler':<28} {'right':>6} {'wrong':>6} {'refused':>8}")
    trusting = new_module.CROSSING_COST * 6
    for noise in (0.3, 0.4, 0.5):
        for name in ("previous", "today", f"today, crossing cost {trusting:g}"):
            rng = np.random.default_rng(seed)
            k: Counter[str] = Counter()
            saved = new_module.CROSSING_COST
            new_module.CROSSING_COST = trusting if "crossing" in name else saved  # type: ignore[misc]
            try:
                for _ in range(n):
                    nd, npt = int(rng.integers(1, 5)), int(rng.integers(1, 5))
                    count, frac = int(rng.integers(0, 10 ** (nd + npt))), float(rng.uniform(0, 0.9))
                    exact = render_counter(count + frac, nd, npt, str(rng.choice(["roll", "continuous"])))
                    err = [rng.uniform(-0.1, 0.1) if i < nd else rng.uniform(-noise, noise) for i in range(len(exact))]
                    err[-1] = rng.uniform(-0.04, 0.04)
                    pos = [float((p + e) % 10.0) for p, e in zip(exact, err, strict=True)]
                    pos = [0.0 if x >= 9.9995 else x for x in pos]
                    got = (old if name == "previous" else new_module.assemble)(pos[:nd], pos[nd:]).reading
                    k["refused" if got is None else "right" if int(got.replace(".", "")) == count else "wrong"] += 1
            finally:
                new_module.CROSSING_COST = saved  # type: ignore[misc]
            print(f"   {noise:>14g} {name:<28} {k['right']:>6} {k['wrong']:>6} {k['refused']:>8}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", default=OLD_REV, help="git revision of the previous assembler")
    ap.add_argument("--photos", type=int, default=400)
    ap.add_argument("--days", type=float, default=365)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--counters", type=int, default=20000, help="random counters per noise level (section 4)")
    args = ap.parse_args()
    old = load_old(args.old).assemble
    bench_cases(old)
    if args.photos:
        bench_renders(old, args.photos, args.seed)
    if args.days:
        bench_validation(old, args.days, args.seed)
    if args.counters:
        bench_noise(old, args.counters, args.seed)


if __name__ == "__main__":
    main()
