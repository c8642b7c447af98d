"""Incremental, verified archive of every photo in the image store into a local folder.

``run_backup(store, dest)`` copies each photo to ``dest/<same key>``: downloaded through the store interface
(verified there), written to a temp file, fsynced, re-hashed on disk, then renamed into place. Photos
already present with the same content hash are not copied again. Progress is resumable: the store's listing
cursor is saved in ``dest/.smartmeter-backup.json`` (atomic write) after each fully archived page, so a run
that dies mid-page redoes at most that page, and the copies it already made are recognised by hash.

``dest/.smartmeter-manifest.jsonl`` records, one JSON object a line, every archived (key, hash) and every
source deletion. With ``delete_after`` a photo is removed from the source only once its local copy is on
disk and verified, and only if the worker has processed it (``keep.KeepPolicy``: asks the readings database, or
keeps the photos of the last ``backup.keep_days`` days); every photo kept is listed with the reason. A photo that
fails verification is remembered in the state file and retried first on the next run, so the cursor can move on
without losing it. ``dest`` itself is a valid local image store.

Downloads of one page run on ``jobs`` threads (each photo is held in memory only while it is written); the
manifest, the stats and the deletions stay in listing order on the calling thread. ``dry_run`` lists and
compares with the archive but downloads, writes and deletes nothing (the state is read, not saved).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smartmeter.errors import IntegrityError, NotFoundError, StoreError
from smartmeter.fileio import atomic_write
from smartmeter.hashing import content_hash, file_content_hash
from smartmeter.progress import Progress
from smartmeter.store.base import ImageStore, check_key
from smartmeter.types import ImageRef

from .keep import KeepPolicy, Verdict

log = logging.getLogger(__name__)

STATE_NAME = ".smartmeter-backup.json"
MANIFEST_NAME = ".smartmeter-manifest.jsonl"
LOCK_NAME = ".smartmeter-backup.lock"


@dataclass
class BackupStats:
    listed: int = 0
    copied: int = 0
    skipped: int = 0  # already archived with the same hash
    deleted: int = 0  # removed from the source after a verified copy
    vanished: int = 0  # listed, then gone from the source before it could be read
    failed: list[str] = field(default_factory=list)  # keys that will be retried next run
    bytes_copied: int = 0
    kept: list[tuple[str, str]] = field(default_factory=list)  # (key, why) archived but left in the source
    dry_run: bool = False  # copied/deleted then count what a real run would do

    def as_json(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "listed": self.listed, "copied": self.copied,
                "bytes_copied": self.bytes_copied, "skipped": self.skipped, "deleted": self.deleted,
                "vanished": self.vanished, "failed": self.failed,
                "kept": [{"key": k, "reason": why} for k, why in self.kept]}


class Archive:
    """The destination folder: state file, manifest, and the photos themselves."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.state_path = dest / STATE_NAME
        self.manifest_path = dest / MANIFEST_NAME
        self.recorded: set[tuple[str, str, str]] = set()  # (event, key, hash) already in the manifest

    def load_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read backup state {self.state_path}: {exc}",
                             hint="remove it to start a full (deduplicated) pass again") from exc
        return state if isinstance(state, dict) else {}

    def save_state(self, state: dict[str, Any]) -> None:
        atomic_write(self.state_path, json.dumps(state, indent=1).encode())

    def load_manifest(self) -> None:
        if not self.manifest_path.exists():
            return
        with self.manifest_path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                try:
                    row = json.loads(line)
                    self.recorded.add((row["event"], row["key"], row["content_hash"]))
                except (ValueError, KeyError, TypeError):
                    log.warning("%s:%d: unreadable manifest line skipped (a run was cut mid-write?)",
                                self.manifest_path, n)

    def record(self, event: str, key: str, digest: str, size: int, source: str) -> None:
        self.record_many([(event, key, digest, size)], source)

    def record_many(self, rows: Sequence[tuple[str, str, str, int]], source: str) -> None:
        """Append (event, key, hash, size) rows not yet recorded, with one fsync for all of them."""
        new = [r for r in rows if (r[0], r[1], r[2]) not in self.recorded]
        if not new:
            return
        at = datetime.now(UTC).isoformat(timespec="seconds")
        text = "".join(json.dumps({"event": e, "key": k, "content_hash": h, "size": n, "source": source,
                                   "at": at}) + "\n" for e, k, h, n in new)
        with self.manifest_path.open("a", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        self.recorded.update((e, k, h) for e, k, h, _ in new)

    def local_hash(self, key: str) -> str | None:
        path = self.dest / key
        return file_content_hash(path) if path.is_file() else None

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One backup per folder at a time (the lock goes with the process, even if it dies)."""
        with (self.dest / LOCK_NAME).open("w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise StoreError(f"another backup is running into {self.dest}") from exc
            yield


@dataclass
class _Copied:
    key: str
    digest: str
    size: int
    copied: bool  # False: already archived with this hash


def _copy_one(store: ImageStore, archive: Archive, key: str, listed_hash: str | None, dry_run: bool) -> _Copied:
    """Copy one photo into the archive (or recognise it as already there). Thread-safe: one file per key."""
    key = check_key(key)
    local = archive.local_hash(key)
    if local is not None and local == listed_hash:
        return _Copied(key, local, (archive.dest / key).stat().st_size, False)
    if dry_run:
        return _Copied(key, listed_hash or "", 0, True)
    data = store.get(key)  # verified by the store against its own content hash
    digest, size = content_hash(data), len(data)
    if local == digest:
        return _Copied(key, digest, size, False)
    target = archive.dest / key
    if local is not None:  # same name, other bytes: keep the archived version beside it
        kept = target.with_name(f"{target.name}.replaced-{local[:12]}")
        os.replace(target, kept)
        log.warning("%s changed at the source: archived version kept as %s", key, kept.name)
    atomic_write(target, data, digest)
    return _Copied(key, digest, size, True)


class _Run:
    """One backup run: copies pages of photos, records them, then deletes what the policy allows."""

    def __init__(self, store: ImageStore, archive: Archive, policy: KeepPolicy | None, dry_run: bool,
                 jobs: int, bar: Progress) -> None:
        self.store, self.archive, self.policy, self.dry_run, self.bar = store, archive, policy, dry_run, bar
        self.stats = BackupStats(dry_run=dry_run)
        self.waiting: list[list[str | None]] = []  # [key, hash, modified] archived, kept in the source: asked again
        self._waiting_keys: set[str] = set()
        self.pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="backup") if jobs > 1 else None

    def _try_copy(self, key: str, listed_hash: str | None) -> _Copied | str:
        """Per-photo faults give "vanished" or "failed" and the run goes on; store outages abort the run.
        Runs on the pool's threads: it touches only its own file, never the stats."""
        try:
            return _copy_one(self.store, self.archive, key, listed_hash, self.dry_run)
        except NotFoundError:
            log.warning("%s was listed but is gone from the source: nothing to archive", key)
            return "vanished"
        except IntegrityError as exc:
            log.error("%s not archived, will retry next run: %s", key, exc)
            return "failed"
        except OSError as exc:  # the backup disk, not the photo: stop here, the next run resumes
            raise StoreError(f"cannot write {self.archive.dest / key}: {exc.strerror or exc}") from exc

    def page(self, items: Sequence[tuple[str, str | None, ImageRef | None]], count: bool = True) -> None:
        """Archive ``(key, listed hash, ref)`` in order; then delete the archived ones the policy lets go.
        ``count=False``: photos archived on an earlier run and kept in the source, asked about again."""
        def work(item: tuple[str, str | None, ImageRef | None]) -> _Copied | str:
            return self._try_copy(item[0], item[1])

        results = self.pool.map(work, items) if self.pool else map(work, items)
        done: list[tuple[_Copied, str | None, ImageRef | None]] = []
        for (key, listed_hash, ref), outcome in zip(items, results, strict=True):  # stops at the first outage
            got = outcome if isinstance(outcome, _Copied) else None
            if outcome == "vanished":
                self.stats.vanished += 1
            elif outcome == "failed":
                self.stats.failed.append(key)
            if got is not None and count:
                if got.copied:
                    self.stats.copied += 1
                    self.stats.bytes_copied += got.size if not self.dry_run else (ref.size if ref else 0)
                else:
                    self.stats.skipped += 1
            if got is not None:
                done.append((got, listed_hash, ref))
            self.bar.advance(nbytes=got.size if got and got.copied else 0)
        if not self.dry_run:  # one fsync for the page's manifest lines (before any deletion)
            self.archive.record_many([("archived", c.key, c.digest, c.size) for c, _, _ in done], self.store.name)
        if self.policy is not None:
            self._delete(done)

    def _delete(self, done: list[tuple[_Copied, str | None, ImageRef | None]]) -> None:
        assert self.policy is not None
        verdicts = self.policy.judge([(c.key, c.digest, ref.modified if ref else None) for c, _, ref in done])
        deleted: list[tuple[str, str, str, int]] = []
        try:
            self._delete_judged(done, verdicts, deleted)
        finally:  # what was deleted is recorded, also when the store fails half way
            if deleted:
                self.archive.record_many(deleted, self.store.name)

    def _delete_judged(self, done: list[tuple[_Copied, str | None, ImageRef | None]],
                       verdicts: dict[str, Verdict], deleted: list[tuple[str, str, str, int]]) -> None:
        for c, listed_hash, ref in done:
            verdict = verdicts[c.key]
            if listed_hash and listed_hash != c.digest:
                verdict = Verdict(False, "kept: it changed at the source while being archived")
            if not verdict.delete:
                if c.key in self._waiting_keys:  # listed again while it was waiting: said once
                    continue
                self._waiting_keys.add(c.key)
                self.stats.kept.append((c.key, verdict.reason))
                modified = ref.modified.isoformat() if ref is not None and ref.modified else None
                self.waiting.append([c.key, c.digest, modified])
                log.info("%s %s", c.key, verdict.reason)
                continue
            if not self.dry_run:
                try:
                    self.store.delete(c.key)
                except NotFoundError:
                    log.info("%s already gone from the source", c.key)
                deleted.append(("source_deleted", c.key, c.digest, c.size))
            self.stats.deleted += 1

    def recheck(self, waiting: object) -> None:
        """Photos kept in the source on earlier runs: deleted now if the policy lets them go (else kept again)."""
        entries = [w for w in waiting if isinstance(w, list) and len(w) == 3 and isinstance(w[0], str)
                   and isinstance(w[1], str)] if isinstance(waiting, list) else []
        if self.policy is None:  # no --delete-after this time: remember them for a later run
            self.waiting = entries
            return
        if entries:
            log.info("asking again about %d archived photo(s) kept in the source last time", len(entries))
        for i in range(0, len(entries), 500):
            self.page([(k, h, ImageRef(k, 0, h, _time(m))) for k, h, m in entries[i:i + 500]], count=False)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def run_backup(store: ImageStore, dest: Path, *, delete_after: bool = False, page_size: int = 500,
               progress: bool = True, policy: KeepPolicy | None = None, dry_run: bool = False,
               jobs: int = 4) -> BackupStats:
    """Archive every photo of ``store`` not yet in ``dest``; resumable; see the module doc.

    ``delete_after`` needs ``policy`` (which processed photos may go); without one, the age rule of
    ``KeepPolicy(None, 7)`` applies: nothing newer than a week is deleted.
    """
    if delete_after and policy is None:
        policy = KeepPolicy(None, 7.0, db_problem="no readings database given")
    if not dry_run:
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create backup folder {dest}: {exc.strerror}") from exc
    archive = Archive(dest)
    label = f"backup {store.name} -> {dest}" + (" (dry run)" if dry_run else "")
    with _locked_unless(archive, dry_run), Progress(label, enabled=progress, unit="photos") as bar:
        run = _Run(store, archive, policy if delete_after else None, dry_run, jobs, bar)
        try:
            _run_pages(run, page_size)
        finally:
            run.close()
    stats = run.stats
    what = "would be " if dry_run else ""
    log.info("backup %sdone: %d listed, %d %scopied (%d bytes), %d already there, %d %sdeleted at source, %d kept "
             "there, %d failed", "(dry run) " if dry_run else "", stats.listed, stats.copied, what,
             stats.bytes_copied, stats.skipped, stats.deleted, what, len(stats.kept), len(stats.failed))
    return stats


@contextmanager
def _locked_unless(archive: Archive, dry_run: bool) -> Iterator[None]:
    if dry_run:
        yield
        return
    with archive.locked():
        yield


def _time(text: object) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None


def _run_pages(run: _Run, page_size: int) -> None:
    store, archive, stats = run.store, run.archive, run.stats
    if archive.dest.is_dir():
        archive.load_manifest()
    state = archive.load_state()
    cursor = state.get("cursor") or None
    if state and state.get("backend") != store.name:
        log.warning("backup state is for store %r, not %r: listing from the beginning (copies are "
                    "deduplicated by hash)", state.get("backend"), store.name)
        cursor = None
    run.recheck(state.get("waiting_delete", []))
    retry = [k for k in state.get("failed", []) if isinstance(k, str)]
    if retry:
        log.info("retrying %d photo(s) that failed last run", len(retry))
        run.page([(k, None, None) for k in retry])
    if not run.dry_run:
        archive.save_state({"backend": store.name, "cursor": cursor, "failed": stats.failed,
                            "waiting_delete": run.waiting})
    while True:
        page = store.list_new(cursor, limit=page_size)
        stats.listed += len(page.refs)
        run.page([(ref.key, ref.content_hash or None, ref) for ref in page.refs])
        cursor = page.cursor
        if not run.dry_run:
            archive.save_state({"backend": store.name, "cursor": cursor, "failed": stats.failed,
                                "waiting_delete": run.waiting,
                                "updated": datetime.now(UTC).isoformat(timespec="seconds")})
        if not page.has_more:
            break
