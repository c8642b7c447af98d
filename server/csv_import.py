"""Import register readings from a CSV file: ``timestamp,contatore,potenza``.

Format: a header line naming the columns (any case, any order; ``potenza`` optional), then one row per sample:
``timestamp`` ISO 8601 (``2014-12-12T00:32:00Z``, with offset, or naive), ``contatore`` the register in kWh,
``potenza`` the power in kW (stored as W in ``power_w``; empty = none). A file whose header uses ``;`` as the
separator may use decimal commas (``1234,5``). ``.csv.gz`` files are read transparently. Naive timestamps are
UTC unless a time zone is given (``--timezone Europe/Rome``). Local times at a DST change are an explicit choice:
an ambiguous one (clocks go back, 02:30 happens twice) takes ``ambiguous`` = ``earlier`` | ``later`` | ``reject``,
a non-existent one (clocks jump forward) ``nonexistent`` = ``shift`` (forward by the gap) | ``reject``; a rejected
one is a malformed row whose message names the option.

Policy for MALFORMED rows (cannot be parsed: wrong column count, bad time, bad or negative number): by default the
whole file is rejected — nothing is stored — and the error lists the bad lines by number; with ``skip_bad`` they
are skipped and reported. Rows that parse but fail plausibility checks (register backwards, impossible power,
conflicts, out-of-range values or times) are judged by ``smartmeter.server.ingest`` and reported as rejected
while the rest is stored; they are counted, the first ``MAX_LISTED`` kept for the message and every one written
to ``rejects`` (a CSV: the row and the reason) when given — memory stays flat however many are refused.

Streaming: rows are read and validated in chunks of ``chunk_size`` inside one transaction, so memory stays flat
and an interrupted or rejected import leaves the database as it was. Importing the same file twice stores nothing
new (rows count as duplicates).
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import math
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from smartmeter.domain import check_meter_id
from smartmeter.errors import InputError, NotFoundError
from smartmeter.progress import Progress
from smartmeter.server.database import Database
from smartmeter.server.ingest import IngestReport, ingest_readings
from smartmeter.settings import Settings
from smartmeter.types import AMBIGUOUS, NONEXISTENT, Reading, format_timestamp, localize

log = logging.getLogger(__name__)

COLUMNS = ("timestamp", "contatore", "potenza")
MAX_LISTED = 20


@dataclass
class ImportResult:
    """What an import did: rows read, the ingest outcome, malformed lines (line number, message), time."""

    path: Path
    meter_id: str
    rows: int = 0
    ingest: IngestReport = field(default_factory=lambda: IngestReport(keep=MAX_LISTED))
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    bad_count: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        skipped = f", {self.bad_count} malformed lines skipped" if self.bad_count else ""
        return (f"{self.path.name}: {self.rows} rows -> {self.ingest.summary()}{skipped} "
                f"for meter {self.meter_id} in {self.seconds:.2f} s ({self.rate:,.0f} rows/s)")


def _zone(name: str | None) -> tzinfo:
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InputError(f"unknown time zone {name!r}", hint="use an IANA name like Europe/Rome") from exc


def _open_text(path: Path) -> io.TextIOBase:
    try:
        if path.suffix == ".gz":
            return gzip.open(path, "rt", encoding="utf-8-sig", newline="")  # type: ignore[return-value]
        return open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - closed by the caller
    except FileNotFoundError as exc:
        raise NotFoundError(f"CSV file not found: {path}") from exc
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc


class _Rows:
    """Parse rows into readings; malformed rows become (line, message) entries."""

    def __init__(self, f: io.TextIOBase, name: str, meter_id: str, zone: tzinfo, ambiguous: str = "reject",
                 nonexistent: str = "reject") -> None:
        header = f.readline()
        if not header.strip():
            raise InputError(f"{name}:1: empty file, expected a header 'timestamp,contatore,potenza'")
        self.delimiter = ";" if header.count(";") > header.count(",") else ","
        self.decimal_comma = self.delimiter == ";"
        names = [h.strip().strip('"').lower() for h in header.rstrip("\r\n").split(self.delimiter)]
        missing = [c for c in COLUMNS[:2] if c not in names]
        if missing:
            raise InputError(f"{name}:1: header {header.strip()!r} lacks column(s) {', '.join(missing)}",
                             hint="expected timestamp,contatore,potenza (kWh register, kW power)")
        self.i_ts, self.i_kwh = names.index("timestamp"), names.index("contatore")
        self.i_kw = names.index("potenza") if "potenza" in names else None
        self.width = len(names)
        self.reader = csv.reader(f, delimiter=self.delimiter)
        self.name, self.meter_id, self.zone = name, meter_id, zone
        self.ambiguous, self.nonexistent = ambiguous, nonexistent
        self.source = f"csv:{name}"

    def _number(self, text: str, what: str) -> float:
        if self.decimal_comma:
            text = text.replace(",", ".")
        try:
            x = float(text)
        except ValueError:
            raise ValueError(f"{what} {text[:40]!r} is not a number") from None
        if not math.isfinite(x) or x < 0:
            raise ValueError(f"{what} {text[:40]!r} must be a finite number >= 0")
        return x

    def __iter__(self) -> Iterator[Reading | tuple[int, str]]:
        zone, meter_id, source = self.zone, self.meter_id, self.source
        i_ts, i_kwh, i_kw, width = self.i_ts, self.i_kwh, self.i_kw, self.width
        for row in self.reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            line = self.reader.line_num + 1  # the header was read before the csv reader
            if len(row) != width:
                yield line, f"expected {width} fields, got {len(row)}"
                continue
            try:
                text = row[i_ts].strip()
                try:
                    ts = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
                except ValueError:
                    raise ValueError(f"timestamp {text[:40]!r} is not ISO 8601") from None
                if ts.tzinfo is None:
                    ts = ts.replace(tzinfo=UTC) if zone is UTC else localize(ts, zone, self.ambiguous,
                                                                              self.nonexistent)
                kwh = self._number(row[i_kwh].strip(), "contatore")
                kw_text = row[i_kw].strip() if i_kw is not None else ""
                power = self._number(kw_text, "potenza") * 1000.0 if kw_text else None
                reading = Reading(meter_id, ts, kwh, source, 1.0, "", power)  # OverflowError: beyond years 1-9999
            except OverflowError:
                yield line, f"timestamp {row[i_ts].strip()[:40]!r} is out of range"
                continue
            except ValueError as exc:
                yield line, str(exc)
                continue
            yield reading


def default_meter(settings: Settings) -> str:
    """The meter an import goes to without --meter: the only configured meter, else the camera's meter id."""
    return settings.meters[0].id if len(settings.meters) == 1 else settings.camera.meter_id


def _reject_writer(out: TextIO) -> csv.DictWriter[str]:
    w = csv.DictWriter(out, ["timestamp", "contatore", "potenza", "reason"], lineterminator="\n")
    w.writeheader()
    return w


def import_csv(db: Database, settings: Settings, path: Path | str, meter_id: str | None = None, *,
               skip_bad: bool = False, timezone: str | None = None, chunk_size: int = 20_000,
               progress: bool = True, ambiguous: str = "reject", nonexistent: str = "reject",
               rejects: Path | None = None) -> ImportResult:
    """Stream ``path`` into the database; see the module docstring for the malformed-row policy.

    ``rejects``: a CSV file that receives every row refused by validation (with the reason)."""
    path = Path(path)
    meter_id = check_meter_id(meter_id or default_meter(settings))
    if ambiguous not in AMBIGUOUS or nonexistent not in NONEXISTENT:
        raise InputError(f"ambiguous must be one of {AMBIGUOUS}, nonexistent one of {NONEXISTENT}")
    result = ImportResult(path, meter_id)
    start = time.perf_counter()
    zone = _zone(timezone)
    with ExitStack() as stack:
        f = stack.enter_context(_open_text(path))
        if rejects is not None:
            try:
                out = stack.enter_context(open(rejects, "w", encoding="utf-8", newline=""))
            except OSError as exc:
                raise InputError(f"cannot write the rejects file {rejects}: {exc.strerror}") from exc
            writer = _reject_writer(out)
            result.ingest.on_reject = lambda r, why: writer.writerow({
                "timestamp": format_timestamp(r.timestamp), "contatore": repr(r.value_kwh),
                "potenza": "" if r.power_w is None else repr(r.power_w / 1000.0), "reason": why})
        bar = stack.enter_context(Progress(f"import {path.name}", enabled=progress))
        stack.enter_context(db.transaction())
        _stream(db, settings, f, path, meter_id, zone, ambiguous, nonexistent, skip_bad, chunk_size, bar, result)
    result.seconds = time.perf_counter() - start
    log.info("%s", result.summary())
    return result


def _stream(db: Database, settings: Settings, f: io.TextIOBase, path: Path, meter_id: str, zone: tzinfo,
            ambiguous: str, nonexistent: str, skip_bad: bool, chunk_size: int, bar: Progress,
            result: ImportResult) -> None:
    chunk: list[Reading] = []
    storing = True
    try:
        rows = _Rows(f, path.name, meter_id, zone, ambiguous, nonexistent)
        for item in rows:
            if isinstance(item, Reading):
                result.rows += 1
                if storing:
                    chunk.append(item)
                    if len(chunk) >= chunk_size:
                        ingest_readings(db, settings, chunk, report=result.ingest)
                        bar.advance(len(chunk))
                        chunk = []
                continue
            result.bad_count += 1
            if len(result.bad_lines) < MAX_LISTED:
                result.bad_lines.append(item)
            if not skip_bad:
                storing, chunk = False, []  # the file will be rejected: keep scanning only to list errors
    except csv.Error as exc:
        raise InputError(f"{path.name}:{rows.reader.line_num + 1}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path.name}: not UTF-8 text ({exc.reason})") from exc
    if storing and chunk:
        ingest_readings(db, settings, chunk, report=result.ingest)
        bar.advance(len(chunk))
    if result.bad_count and not skip_bad:
        listed = "; ".join(f"line {n}: {msg}" for n, msg in result.bad_lines)
        more = f" (and {result.bad_count - len(result.bad_lines)} more)" if result.bad_count > MAX_LISTED else ""
        raise InputError(f"{path.name}: {result.bad_count} malformed line(s), nothing imported: {listed}{more}",
                         hint="fix the lines or pass --skip-bad to import the rest")
