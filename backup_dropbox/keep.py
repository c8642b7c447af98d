"""Which archived photos ``backup --delete-after`` may remove from the image store, and why it keeps the others.

A photo the worker has not read yet must stay where the worker looks for it. The readings database knows: the
worker records every photo it has processed (read, failed, duplicate...) in its ``photos`` table, with the content
hash it saw. So, when that database can be asked, a photo is deleted only if a row with its key and the same content
hash is there; otherwise it is kept, with the reason. When the database cannot be asked (not reachable, no
``photos`` table, the file does not exist), nothing can prove a photo was read: every photo stored in the last
``backup.keep_days`` days stays, and only older ones go (their age is the later of the store's modified time and the
capture time in the name; a photo of unknown age stays). Should the database fail mid-run, the same fallback is used
from then on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from smartmeter.errors import ConfigError, DatabaseError, InputError
from smartmeter.server import photos_repo
from smartmeter.server.database import Database, open_database
from smartmeter.types import ImageRef, parse_photo_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    delete: bool
    reason: str


class KeepPolicy:
    """``judge(refs)`` says, per key, whether the photo may be deleted from the source and why (or why not)."""

    def __init__(self, db: Database | None, keep_days: float, *, db_problem: str = "",
                 now: datetime | None = None) -> None:
        self.db, self.keep_days, self.db_problem = db, keep_days, db_problem
        self.now = now or datetime.now(UTC)

    @classmethod
    def open(cls, database_url: str, keep_days: float) -> KeepPolicy:
        """Ask the database at ``database_url`` when it answers; the age rule when it does not (never creates it)."""
        problem = ""
        db: Database | None = None
        path = None  # the SQLite file, named as open_database reads the URL
        if database_url.startswith("sqlite://"):
            path = database_url[len("sqlite:///" if database_url.startswith("sqlite:///") else "sqlite://"):]
        if path is not None and (path in ("", ":memory:") or not os.path.exists(path)):
            problem = f"database {Path(path or ':memory:')} does not exist"
        else:
            try:
                db = open_database(database_url, migrate=False)
                photos_repo.known(db, [""], "photo_key")  # the worker's table is there and answers
            except (DatabaseError, ConfigError) as exc:
                problem = str(exc)
                if db is not None:
                    db.close()
                db = None
        if db is None:
            log.warning("backup: cannot ask the readings database which photos were processed (%s): photos of the "
                        "last %g days stay in the store", problem, keep_days)
        return cls(db, keep_days, db_problem=problem)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    def _processed(self, keys: Sequence[str]) -> dict[str, str] | None:
        """key -> content hash the worker recorded; None when the database cannot be asked (any more)."""
        if self.db is None:
            return None
        try:
            out = photos_repo.known(self.db, keys, "photo_key")
        except DatabaseError as exc:
            self.db_problem = str(exc)
            log.warning("backup: the readings database stopped answering (%s): photos of the last %g days stay in "
                        "the store from now on", exc, self.keep_days)
            self.close()
            return None
        return out

    def _by_age(self, key: str, modified: datetime | None) -> Verdict:
        times = [t for t in (modified, _name_time(key)) if t is not None]
        why = f"the readings database cannot be asked ({self.db_problem})"
        if not times:
            return Verdict(False, f"kept: {why} and its age is unknown")
        age = self.now - max(times)
        if age < timedelta(days=self.keep_days):
            return Verdict(False, f"kept: {why} and it is newer than backup.keep_days = {self.keep_days:g} days")
        return Verdict(True, f"deleted: {why}, but it is older than backup.keep_days = {self.keep_days:g} days")

    def judge(self, refs: Sequence[tuple[str, str, datetime | None]]) -> dict[str, Verdict]:
        """``refs``: (key, archived content hash, store modified time or None) -> key: verdict."""
        processed = self._processed([k for k, _, _ in refs])
        out: dict[str, Verdict] = {}
        for key, digest, modified in refs:
            if processed is None:
                out[key] = self._by_age(key, modified)
            elif key not in processed:
                out[key] = Verdict(False, "kept: the worker has not processed it yet")
            elif processed[key] != digest:
                out[key] = Verdict(False, "kept: its content changed after the worker processed it "
                                          "(smartmeter reprocess)")
            else:
                out[key] = Verdict(True, "deleted: archived and processed by the worker")
        return out

    def judge_one(self, ref: ImageRef | None, key: str, digest: str) -> Verdict:
        return self.judge([(key, digest, ref.modified if ref else None)])[key]

    def __enter__(self) -> KeepPolicy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _name_time(key: str) -> datetime | None:
    try:
        return parse_photo_name(key)[1]
    except InputError:
        return None
