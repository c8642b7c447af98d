"""Events injected into a simulated household, and the ground truth written beside the data.

Kinds:

- ``blackout``: no supply; power 0 and the register frozen.
- ``heater_left_on``: a portable heater (``details.watts``) runs for hours, night included.
- ``threshold_exceedance``: an extra load pushes the total above ``details.threshold_w`` for a while.
- ``stale_camera``: the camera takes no photos (the power data is unaffected).
- ``fridge_failure``: the fridge's compressor stops (its on/off cycling disappears from the base load); planned
  only when asked (``kinds``), so the default plans keep their times.

Events are placed in disjoint slots of the span, so one never hides another. ``events.json`` holds the list;
``events.csv`` the same as ``kind,start,end,details`` (details as JSON).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from smartmeter.errors import InputError, NotFoundError
from smartmeter.types import parse_timestamp, utc

if TYPE_CHECKING:
    from smartmeter.simulator.household import Household

log = logging.getLogger(__name__)

KINDS = ("blackout", "heater_left_on", "threshold_exceedance", "stale_camera", "fridge_failure")
PLANNED = KINDS[:4]  # what plan_events places by default


@dataclass(frozen=True)
class Event:
    kind: str
    start: datetime
    end: datetime
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"unknown event kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        object.__setattr__(self, "start", utc(self.start))
        object.__setattr__(self, "end", utc(self.end))
        if self.end <= self.start:
            raise InputError(f"event {self.kind} ends ({self.end}) before it starts ({self.start})")

    def covers(self, ts: datetime) -> bool:
        return self.start <= utc(ts) < self.end

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "start": _iso(self.start), "end": _iso(self.end), "details": self.details}


def _iso(ts: datetime) -> str:
    return utc(ts).strftime("%Y-%m-%dT%H:%M:%SZ")


def plan_events(start: datetime, seconds: int, seed: int = 1, *, kinds: Sequence[str] = PLANNED,
                power_threshold_w: float = 6000.0) -> list[Event]:
    """One event of each kind at seeded random times, in disjoint slots of ``[start, start + seconds)``."""
    if seconds < 600:
        raise InputError(f"a span of {seconds} s is too short to place events in")
    rng = np.random.default_rng(seed + 7919)
    start = utc(start)
    slots = rng.permutation(len(kinds))
    slot_len = seconds / len(kinds)
    wanted = {"blackout": 45 * 60, "heater_left_on": 6 * 3600, "threshold_exceedance": 30 * 60,
              "stale_camera": 2 * 3600, "fridge_failure": 24 * 3600}
    out = []
    for kind, slot in zip(kinds, slots, strict=True):
        length = int(min(wanted[kind], slot_len * 0.6))
        lo = int(slot * slot_len + 0.1 * slot_len)
        hi = int((slot + 1) * slot_len - length - 0.1 * slot_len)
        s = int(rng.integers(lo, max(hi, lo + 1)))
        details: dict[str, Any] = {}
        if kind == "heater_left_on":
            details = {"watts": 2000.0}
        elif kind == "threshold_exceedance":
            details = {"threshold_w": power_threshold_w, "extra_w": power_threshold_w + 500.0}
        out.append(Event(kind, start + timedelta(seconds=s), start + timedelta(seconds=s + length), details))
    return sorted(out, key=lambda e: e.start)


def _index(hh: Household, ts: datetime) -> int:
    return int(np.clip((utc(ts) - hh.start).total_seconds(), 0, hh.seconds))


def apply_events(hh: Household, events: Iterable[Event]) -> None:
    """Add the events' loads to the components, then blank the blackouts (the register freezes there)."""
    evs = list(events)
    n = hh.seconds
    for ev in evs:
        s, e = _index(hh, ev.start), _index(hh, ev.end)
        if ev.kind == "heater_left_on":
            hh.components.setdefault("portable_heater", np.zeros(n, dtype=np.float32))[s:e] += ev.details["watts"]
        elif ev.kind == "threshold_exceedance":
            hh.components.setdefault("extra_load", np.zeros(n, dtype=np.float32))[s:e] += ev.details["extra_w"]
    for ev in evs:
        if ev.kind == "blackout":
            s, e = _index(hh, ev.start), _index(hh, ev.end)
            for v in hh.components.values():
                v[s:e] = 0.0


def stop_fridge(fridge: np.ndarray, start: datetime, events: Iterable[Event]) -> np.ndarray:
    """The fridge component (1 s, from ``start``) with its compressor off during each ``fridge_failure``."""
    t0 = utc(start)
    for ev in events:
        if ev.kind == "fridge_failure":
            s = int(np.clip((ev.start - t0).total_seconds(), 0, fridge.size))
            e = int(np.clip((ev.end - t0).total_seconds(), 0, fridge.size))
            fridge[s:e] = 0.0
    return fridge


def write_events(events: Sequence[Event], folder: Path) -> tuple[Path, Path]:
    """Write ``events.json`` and ``events.csv`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    js, cs = folder / "events.json", folder / "events.csv"
    js.write_text(json.dumps([e.to_json() for e in events], indent=2) + "\n", encoding="utf-8")
    with cs.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["kind", "start", "end", "details"])
        for e in events:
            w.writerow([e.kind, _iso(e.start), _iso(e.end), json.dumps(e.details, sort_keys=True)])
    return js, cs


def load_events(path: Path) -> list[Event]:
    """Read ``events.json``; InputError names what is wrong."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise NotFoundError(f"no events file {path}") from exc
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable events JSON file: {exc}") from exc
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of events")
    try:
        return [Event(d["kind"], parse_timestamp(d["start"]), parse_timestamp(d["end"]), dict(d.get("details", {})))
                for d in data]
    except (KeyError, TypeError) as exc:
        raise InputError(f"{path}: an event lacks kind/start/end: {exc}") from exc
