"""``smartmeter serve`` (the HTTP API and dashboard with uvicorn, stopping cleanly on SIGTERM and Ctrl-C) and
``smartmeter user`` (the dashboard's logins; ``user token``: per-meter machine tokens).
``serve(settings)`` does the work and can be called from Python.
"""

from __future__ import annotations

import logging
from typing import TextIO

import click
from fastapi import FastAPI

from smartmeter.server.api import create_app
from smartmeter.server.database import Database, open_database
from smartmeter.settings import Settings

log = logging.getLogger(__name__)


def database_factory(settings: Settings) -> Database:
    """Open the readings database of ``settings`` (creating and migrating it on first use)."""
    return open_database(settings.database.url)


def build_app(settings: Settings) -> FastAPI:
    """The API app wired to the configured database."""
    return create_app(settings, lambda: database_factory(settings))


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Run the HTTP API until SIGTERM/SIGINT. The database is opened once first, so a bad URL fails here."""
    import uvicorn

    database_factory(settings).close()  # fail fast (exit 74) instead of answering 503 forever
    host, port = host or settings.api.host, port or settings.api.port
    log.info("serving the API and dashboard on http://%s:%d/", host, port)
    uvicorn.run(build_app(settings), host=host, port=port, log_level="info", access_log=False,
                proxy_headers=True, forwarded_allow_ips="127.0.0.1")


@click.command("serve")
@click.option("--host", default=None, help="Listen address (default: api.host from the settings).")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port (default: api.port from the settings).")
@click.pass_obj
def serve_cmd(obj: object, host: str | None, port: int | None) -> None:
    """Run the HTTP API and the dashboard until SIGTERM (writes need SMARTMETER_API_TOKEN or a login)."""
    serve(obj.settings, host, port)  # type: ignore[attr-defined]


@click.group("user")
def user_group() -> None:
    """Logins for the dashboard (passwords kept as argon2 hashes in the readings database), and machine tokens."""


@user_group.command("add")
@click.argument("name")
@click.option("--meter", "meters", multiple=True, help="A meter this user may see and change (repeat); "
                                                       "none = every meter.")
@click.option("--password-file", type=click.File("r"), default=None,
              help="Read the password from this file ('-' = stdin) instead of asking.")
@click.pass_obj
def user_add(obj: object, name: str, meters: tuple[str, ...], password_file: TextIO | None) -> None:
    """Create a login NAME, or replace its password and meters (its sessions end)."""
    from smartmeter.server.auth import add_user

    if password_file is not None:
        password = password_file.readline().rstrip("\r\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True, err=True)
    with database_factory(obj.settings) as db:  # type: ignore[attr-defined]
        add_user(db, name, password, meters or None)
    click.echo(f"user {name} can log in ({', '.join(meters) if meters else 'every meter'})", err=True)


@user_group.command("list")
@click.pass_obj
def user_list(obj: object) -> None:
    """The logins and their meters."""
    from smartmeter.server.auth import users

    with database_factory(obj.settings) as db:  # type: ignore[attr-defined]
        for name, meters in users(db):
            click.echo(f"{name}\t{meters}")


@user_group.command("remove")
@click.argument("name")
@click.pass_obj
def user_remove(obj: object, name: str) -> None:
    """Delete the login NAME and end its sessions."""
    from smartmeter.server.auth import remove_user

    with database_factory(obj.settings) as db:  # type: ignore[attr-defined]
        remove_user(db, name)
    click.echo(f"user {name} removed", err=True)


@user_group.group("token")
def token_group() -> None:
    """Per-meter machine tokens: each reads and writes only its meters (the global SMARTMETER_API_TOKEN sees
    every meter)."""


@token_group.command("create")
@click.option("--meter", "meters", multiple=True, required=True,
              help="A meter this token may read and write (repeat for several).")
@click.option("--name", default=None, help="A name to recognise the token by (default: its first meter).")
@click.pass_obj
def token_create(obj: object, meters: tuple[str, ...], name: str | None) -> None:
    """Make a token and print it once (only its SHA-256 is kept): give it to the machine as its bearer token."""
    from smartmeter.server.auth import create_token

    with database_factory(obj.settings) as db:  # type: ignore[attr-defined]
        tid, token = create_token(db, meters, name)
        unknown = [m for m in sorted(set(meters)) if not db.meter_exists(m)]
    if unknown:
        click.echo(f"note: meter(s) {', '.join(unknown)} not registered yet (the token may register them: "
                   "POST /api/meters)", err=True)
    click.echo(f"token {tid} for {', '.join(sorted(set(meters)))}: shown this once, keep it secret", err=True)
    click.echo(token)


@token_group.command("list")
@click.pass_obj
def token_list(obj: object) -> None:
    """The tokens: id, name, meters, created, last used (hourly), revoked (never the tokens themselves)."""
    from smartmeter.server.auth import machine_tokens
    from smartmeter.server.database import iso_ms

    with database_factory(obj.settings) as db:  # type: ignore[attr-defined]
        rows = machine_tokens(db)
    for t in rows:
        used = "-" if t.used_ms is None else iso_ms(t.used_ms)
        state = "live" if t.revoked_ms is None else f"revoked {iso_ms(t.revoked_ms)}"
        click.echo(f"{t.id}\t{t.name}\t{t.meters}\t{iso_ms(t.created_ms)}\t{used}\t{state}")


@token_group.command("revoke")
@click.argument("which")
@click.pass_obj
def token_revoke(obj: object, which: str) -> None:
    """Revoke the token with id WHICH, or every live token named WHICH (refused at once from then on)."""
    from smartmeter.server.auth import revoke_token

    with database_factory(obj.settings) as db:  # type: ignore[attr-defined]
        ids = revoke_token(db, which)
    click.echo(f"revoked {', '.join(ids)}", err=True)
