"""``smartmeter config``: check and show settings."""

from __future__ import annotations

import json
from pathlib import Path

import click

from smartmeter.settings import Settings, load_settings


def check_config(path: Path) -> Settings:
    """Load and validate a settings file; raises ConfigError (exit 2) naming key and line."""
    return load_settings(path)


@click.group("config")
def config() -> None:
    """Check and show settings."""


@config.command("check")
@click.argument("file", type=click.Path(path_type=Path))
def check_cmd(file: Path) -> None:
    """Validate FILE; exit 2 with the key and line of the first problem."""
    check_config(file)
    click.echo(f"{file}: ok")


@config.command("show")
@click.option("--defaults", is_flag=True, help="Show the embedded defaults instead of the active settings.")
@click.pass_obj
def show_cmd(obj: object, defaults: bool) -> None:
    """Print the active settings as JSON (secrets are never part of settings)."""
    settings = Settings() if defaults else obj.settings  # type: ignore[attr-defined]
    click.echo(json.dumps(settings.model_dump(mode="json"), indent=2))


@config.command("schema")
def schema_cmd() -> None:
    """Print the JSON schema of the settings file, with every field described."""
    click.echo(json.dumps(Settings.model_json_schema(), indent=2))
