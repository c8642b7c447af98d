"""The dataset shape ``timestamp,contatore,potenza`` (ISO UTC, register kWh, power kW): write and read back.

``potenza`` of a row is the mean power over the step that ends at the row's timestamp (the first row: the power of
the first second), so register differences and power agree. ``smartmeter import`` reads the same shape.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from smartmeter.errors import InputError, NotFoundError, StoreError
from smartmeter.simulator.household import Household
from smartmeter.types import parse_timestamp

log = logging.getLogger(__name__)

HEADER = "timestamp,contatore,potenza"


def sample(hh: Household, step: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(seconds from start, register kWh, mean power kW) every ``step`` seconds, ends included."""
    if step < 1:
        raise InputError(f"step must be >= 1 s, got {step}")
    idx = np.arange(0, hh.seconds, step, dtype=np.int64)
    reg = hh.register_kwh[idx]
    power = np.empty(idx.shape[0], dtype=np.float64)
    power[0] = hh.power_w[0] / 1000.0
    power[1:] = np.diff(reg) * 3600.0 / (step / 1.0)  # kWh per step -> kW
    return idx, reg, power


def write_csv(hh: Household, path: Path, step: int = 60) -> int:
    """Write the dataset; returns the number of rows. Written to a temp file and renamed (no half files)."""
    idx, reg, power = sample(hh, step)
    t0 = np.datetime64(hh.start.replace(tzinfo=None), "s")
    stamps = np.datetime_as_string(t0 + idx.astype("timedelta64[s]"), unit="s")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            fh.write(HEADER + "\n")
            chunk = 65536
            for a in range(0, idx.shape[0], chunk):
                b = a + chunk
                fh.write("".join(f"{s}Z,{r:.4f},{p:.3f}\n" for s, r, p in
                                 zip(stamps[a:b].tolist(), reg[a:b].tolist(), power[a:b].tolist(), strict=True)))
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write {path}: {exc.strerror}") from exc
    log.info("wrote %d rows to %s", idx.shape[0], path)
    return int(idx.shape[0])


@dataclass
class Series:
    """Register samples read back from a dataset CSV (seconds since the epoch, kWh)."""

    epoch_s: np.ndarray
    register_kwh: np.ndarray

    @property
    def start(self) -> datetime:
        return datetime.fromtimestamp(float(self.epoch_s[0]), UTC)

    @property
    def end(self) -> datetime:
        return datetime.fromtimestamp(float(self.epoch_s[-1]), UTC)

    def register_at(self, ts: datetime) -> float:
        """Linear interpolation between samples."""
        return float(np.interp(ts.timestamp(), self.epoch_s, self.register_kwh))


def read_csv(path: Path) -> Series:
    """Read ``timestamp,contatore[,potenza]``; InputError names the first bad line."""
    times: list[float] = []
    regs: list[float] = []
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            cols = [c.strip().lower() for c in reader.fieldnames or []]
            if "timestamp" not in cols or "contatore" not in cols:
                raise InputError(f"{path}: header must name timestamp and contatore, got {cols}")
            reader.fieldnames = cols
            for line, row in enumerate(reader, start=2):
                try:
                    times.append(parse_timestamp(row["timestamp"]).timestamp())
                    regs.append(float(row["contatore"]))
                except (InputError, ValueError, TypeError) as exc:
                    raise InputError(f"{path}:{line}: bad row {row!r}: {exc}") from exc
    except FileNotFoundError as exc:
        raise NotFoundError(f"no dataset {path}") from exc
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}") from exc
    if len(times) < 2:
        raise InputError(f"{path}: needs at least two rows")
    t = np.array(times)
    if np.any(np.diff(t) <= 0):
        raise InputError(f"{path}: timestamps must increase")
    return Series(t, np.array(regs))
