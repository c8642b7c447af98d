"""``smartmeter backup``: archive the image store into a local folder; ``smartmeter backup auth``: get a token."""

from __future__ import annotations

import os
from pathlib import Path

import click

from smartmeter.backup_dropbox.backup import BackupStats, run_backup
from smartmeter.errors import InputError, StoreError
from smartmeter.secrets import env_name, get_secret
from smartmeter.settings import Settings
from smartmeter.store import open_store

DEFAULT_TOKEN_FILE = Path("~/.config/smartmeter/dropbox_refresh_token")


def backup(settings: Settings, dest: Path, *, delete_after: bool = False, progress: bool = True) -> BackupStats:
    """Archive the configured image store into ``dest``; StoreError (exit 74) if any photo failed."""
    stats = run_backup(open_store(settings.store), dest, delete_after=delete_after, progress=progress)
    if stats.failed:
        raise StoreError(f"{len(stats.failed)} photo(s) could not be verified and were not archived "
                         f"(first: {stats.failed[0]})", hint="they are retried on the next run")
    return stats


@click.group("backup", invoke_without_command=True)
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path),
              help="Folder receiving the photos (same keys as in the store).")
@click.option("--delete-after", is_flag=True,
              help="Remove each photo from the store once its local copy is written and verified.")
@click.option("--no-progress", is_flag=True, help="No progress lines on stderr.")
@click.pass_context
def backup_cmd(ctx: click.Context, dest: Path | None, delete_after: bool, no_progress: bool) -> None:
    """Archive photos from the image store to a local folder (incremental, verified, resumable)."""
    if ctx.invoked_subcommand is not None:
        return
    if dest is None:
        raise InputError("missing --dest DIR", hint="smartmeter backup --dest /mnt/archive/photos")
    stats = backup(ctx.obj.settings, dest, delete_after=delete_after, progress=not no_progress)
    click.echo(f"{stats.copied} copied ({stats.bytes_copied:,} bytes), {stats.skipped} already archived, "
               f"{stats.deleted} deleted from the store, {stats.vanished} vanished; archive: {dest}")


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
