"""``smartmeter backup``: archive the image store into a local folder; ``smartmeter backup auth``: get a token."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import click

from smartmeter.backup_dropbox.backup import BackupStats, run_backup
from smartmeter.backup_dropbox.keep import KeepPolicy
from smartmeter.errors import InputError, StoreError
from smartmeter.secrets import env_name, get_secret
from smartmeter.settings import Settings
from smartmeter.store import open_store

DEFAULT_TOKEN_FILE = Path("~/.config/smartmeter/dropbox_refresh_token")


def backup(settings: Settings, dest: Path, *, delete_after: bool = False, progress: bool = True,
           dry_run: bool = False, jobs: int = 4) -> BackupStats:
    """Archive the configured image store into ``dest``. With ``delete_after`` a photo leaves the store only once
    archived and processed by the worker (the readings database says so; else only photos older than
    ``backup.keep_days``)."""
    policy = KeepPolicy.open(settings.database.url, settings.backup.keep_days) if delete_after else None
    try:
        return run_backup(open_store(settings.store), dest, delete_after=delete_after, progress=progress,
                          policy=policy, dry_run=dry_run, jobs=jobs)
    finally:
        if policy is not None:
            policy.close()


def _summary(stats: BackupStats, dest: Path) -> str:
    if stats.dry_run:
        return (f"dry run: {stats.copied} would be copied ({stats.bytes_copied:,} bytes), {stats.skipped} already "
                f"archived, {stats.deleted} would be deleted from the store, {len(stats.kept)} kept there; "
                f"nothing written to {dest}")
    return (f"{stats.copied} copied ({stats.bytes_copied:,} bytes), {stats.skipped} already archived, "
            f"{stats.deleted} deleted from the store, {len(stats.kept)} kept there, {stats.vanished} vanished; "
            f"archive: {dest}")


@click.group("backup", invoke_without_command=True)
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path),
              help="Folder receiving the photos (same keys as in the store).")
@click.option("--delete-after", is_flag=True,
              help="Remove each photo from the store once its local copy is written and verified and the worker "
                   "has processed it (photos the readings database does not confirm stay; see backup.keep_days).")
@click.option("--dry-run", is_flag=True, help="Only say what would be copied and deleted; write and delete nothing.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the result as one JSON object on stdout (counts, failed keys, each kept photo and why).")
@click.option("--jobs", type=click.IntRange(1, 32), default=4, show_default=True,
              help="Photos downloaded at the same time.")
@click.option("--no-progress", is_flag=True, help="No progress lines on stderr.")
@click.pass_context
def backup_cmd(ctx: click.Context, dest: Path | None, delete_after: bool, dry_run: bool, as_json: bool, jobs: int,
               no_progress: bool) -> None:
    """Archive photos from the image store to a local folder (incremental, verified, resumable)."""
    if ctx.invoked_subcommand is not None:
        return
    if dest is None:
        raise InputError("missing --dest DIR", hint="smartmeter backup --dest /mnt/archive/photos")
    stats = backup(ctx.obj.settings, dest, delete_after=delete_after, progress=not no_progress, dry_run=dry_run,
                   jobs=jobs)
    click.echo(json.dumps(stats.as_json(), indent=1) if as_json else _summary(stats, dest))
    if not as_json and stats.kept:
        reasons = Counter(why for _, why in stats.kept)
        for why, n in reasons.most_common():
            click.echo(f"  {n} photo(s) {why}")
    if stats.failed:
        raise StoreError(f"{len(stats.failed)} photo(s) could not be verified and were not archived "
                         f"(first: {stats.failed[0]})", hint="they are retried on the next run")


@backup_cmd.command("auth")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_TOKEN_FILE,
              show_default=True, help="Where to save the refresh token (mode 600).")
@click.pass_obj
def auth_cmd(obj: object, token_file: Path) -> None:
    """Authorize the Dropbox app (no-redirect OAuth flow) and save a refresh token; the token is never shown."""
    from smartmeter.backup_dropbox.auth import obtain_refresh_token, save_secret_file

    settings: Settings = obj.settings  # type: ignore[attr-defined]
    dbx = settings.store.dropbox
    secret = get_secret("dropbox_app_secret", required=False)

    def read_code(url: str) -> str:
        click.echo("1. Open this page and allow access (sign in as the account that should hold the photos):")
        click.echo(f"   {url}")
        return str(click.prompt("2. Paste the authorization code shown by Dropbox", hide_input=True))

    token = obtain_refresh_token(dbx.app_key, secret.get_secret_value() if secret else None, read_code,
                                 api_host=os.environ.get("DROPBOX_API_HOST") or "api.dropboxapi.com",
                                 ca_certs=dbx.ca_certs, timeout_s=dbx.timeout_s)
    path = token_file.expanduser()
    save_secret_file(path, token)
    var = env_name("dropbox_refresh_token")
    click.echo(f"Refresh token saved to {path} (readable only by you).")
    click.echo(f"Set {var}_FILE={path} for the camera and the server (or load the file into your secret store).")
