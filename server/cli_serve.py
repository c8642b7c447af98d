"""``smartmeter serve`` (the HTTP API and dashboard with uvicorn, stopping cleanly on SIGTERM and Ctrl-C) and
``smartmeter user`` (the dashboard's logins). ``serve(settings)`` does the work and can be called from Python.
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
    """Logins for the dashboard (passwords kept as argon2 hashes in the readings database)."""


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
