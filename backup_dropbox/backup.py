"""Incremental, verified archive of every photo in the image store into a local folder.

``run_backup(store, dest)`` copies each photo to ``dest/<same key>``: downloaded through the store interface
(verified there), written to a temp file, fsynced, re-hashed on disk, then renamed into place. Photos
already present with the same content hash are not copied again. Progress is resumable: the store's listing
cursor is saved in ``dest/.smartmeter-backup.json`` (atomic write) after each fully archived page, so a run
that dies mid-page redoes at most that page, and the copies it already made are recognised by hash.

``dest/.smartmeter-manifest.jsonl`` records, one JSON object a line, every archived (key, hash) and every
source deletion. With ``delete_after`` a photo is removed from the source only once its local copy is on
disk and verified. A photo that fails verification is remembered in the state file and retried first on
the next run, so the cursor can move on without losing it. ``dest`` itself is a valid local image store.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator
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
        if (event, key, digest) in self.recorded:
            return
        row = {"event": event, "key": key, "content_hash": digest, "size": size, "source": source,
               "at": datetime.now(UTC).isoformat(timespec="seconds")}
        with self.manifest_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.recorded.add((event, key, digest))

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


def _archive_one(store: ImageStore, archive: Archive, key: str, listed_hash: str | None,
                 delete_after: bool, stats: BackupStats) -> None:
    """Copy one photo (or recognise it as already archived), then optionally delete it from the source."""
    key = check_key(key)
    local = archive.local_hash(key)
    if local is not None and local == listed_hash:
        stats.skipped += 1
        digest, size = local, (archive.dest / key).stat().st_size
    else:
        data = store.get(key)  # verified by the store against its own content hash
        digest, size = content_hash(data), len(data)
        if local == digest:
            stats.skipped += 1
        else:
            target = archive.dest / key
            if local is not None:  # same name, other bytes: keep the archived version beside it
                kept = target.with_name(f"{target.name}.replaced-{local[:12]}")
                os.replace(target, kept)
                log.warning("%s changed at the source: archived version kept as %s", key, kept.name)
            atomic_write(target, data, digest)
            stats.copied += 1
            stats.bytes_copied += size
    archive.record("archived", key, digest, size, store.name)
    if not delete_after:
        return
    if listed_hash and listed_hash != digest:
        log.warning("%s changed at the source while being archived: not deleting it", key)
        return
    try:
        store.delete(key)
    except NotFoundError:
        log.info("%s already gone from the source", key)
    archive.record("source_deleted", key, digest, size, store.name)
    stats.deleted += 1


def _try_one(store: ImageStore, archive: Archive, key: str, listed_hash: str | None, delete_after: bool,
             stats: BackupStats) -> None:
    """Per-photo faults (corrupt, vanished) are recorded and the run goes on; store outages abort the run."""
    try:
        _archive_one(store, archive, key, listed_hash, delete_after, stats)
    except NotFoundError:
        stats.vanished += 1
        log.warning("%s was listed but is gone from the source: nothing to archive", key)
    except IntegrityError as exc:
        stats.failed.append(key)
        log.error("%s not archived, will retry next run: %s", key, exc)
    except OSError as exc:  # the backup disk, not the photo: stop here, the next run resumes
        raise StoreError(f"cannot write {archive.dest / key}: {exc.strerror or exc}") from exc


def run_backup(store: ImageStore, dest: Path, *, delete_after: bool = False, page_size: int = 500,
               progress: bool = True) -> BackupStats:
    """Archive every photo of ``store`` not yet in ``dest``; resumable; see the module doc."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create backup folder {dest}: {exc.strerror}") from exc
    archive = Archive(dest)
    stats = BackupStats()
    with archive.locked(), Progress(f"backup {store.name} -> {dest}", enabled=progress) as bar:
        archive.load_manifest()
        state = archive.load_state()
        cursor = state.get("cursor") or None
        if state and state.get("backend") != store.name:
            log.warning("backup state is for store %r, not %r: listing from the beginning (copies are "
                        "deduplicated by hash)", state.get("backend"), store.name)
            cursor = None
        retry = [k for k in state.get("failed", []) if isinstance(k, str)]
        if retry:
            log.info("retrying %d photo(s) that failed last run", len(retry))
        for key in retry:
            _try_one(store, archive, key, None, delete_after, stats)
            bar.advance()
        state = {"backend": store.name, "cursor": cursor, "failed": stats.failed}
        archive.save_state(state)
        while True:
            page = store.list_new(cursor, limit=page_size)
            for ref in page.refs:
                stats.listed += 1
                _try_one(store, archive, ref.key, ref.content_hash or None, delete_after, stats)
                bar.advance()
            cursor = page.cursor
            archive.save_state({"backend": store.name, "cursor": cursor, "failed": stats.failed,
                                "updated": datetime.now(UTC).isoformat(timespec="seconds")})
            if not page.has_more:
                break
    log.info("backup done: %d listed, %d copied (%d bytes), %d already there, %d deleted at source, %d failed",
             stats.listed, stats.copied, stats.bytes_copied, stats.skipped, stats.deleted, len(stats.failed))
    return stats
