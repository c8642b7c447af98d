"""The one CLI, ``smartmeter``: a thin layer of subcommands over importable functions.

Subcommands live next to the code they drive and are loaded lazily, so ``smartmeter --help`` is fast and
the Pi never imports server code. This module is the boundary that turns our exceptions into exit codes.
"""

from __future__ import annotations

import importlib
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from smartmeter import __version__
from smartmeter.errors import SmartMeterError
from smartmeter.settings import Settings, load_settings

log = logging.getLogger(__name__)

# name -> (module:attribute, one-line help shown by --help without importing the module)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "config": ("smartmeter.cli_config:config", "Check and show settings."),
    "ocr": ("smartmeter.ocr.cli:ocr_group", "OCR tools: read digit crops, assemble readings, train the models."),
    "read": ("smartmeter.ocr.cli:read_cmd", "Read the register from meter photos."),
    "profile": ("smartmeter.ocr.cli_profile:profile_group", "Write and check meter profiles (new PHOTO, check ...)."),
    "worker": ("smartmeter.server.cli_worker:worker_cmd", "Pull photos from the image store, read, validate, store."),
    "import": ("smartmeter.server.cli_ingest:import_cmd", "Import readings from a CSV (timestamp,contatore,potenza)."),
    "reprocess": ("smartmeter.server.cli_worker:reprocess_cmd", "Re-read archived photos with the current reader."),
    "review": ("smartmeter.server.cli_worker:review_group", "List rejected photos and set their true values."),
    "meter": ("smartmeter.server.cli_meter:meter_group", "A meter's digit adapter and confirmed setup reading."),
    "readings": ("smartmeter.server.cli_readings:readings_group", "Delete or correct a stored reading (audited)."),
    "serve": ("smartmeter.server.cli_serve:serve_cmd", "Run the HTTP API (ingest, dashboard)."),
    "mqtt": ("smartmeter.server.cli_ingest:mqtt_cmd", "Subscribe to meter readings over MQTT."),
    "user": ("smartmeter.server.cli_serve:user_group", "Dashboard logins: add, list, remove."),
    "report": ("smartmeter.server.cli_analyse:report_cmd", "Consumption, events and plots of stored readings."),
    "analyse": ("smartmeter.server.cli_analyse:analyse_cmd", "Detect and store events (blackout, superamento, ...)."),
    "invoice": ("smartmeter.server.cli_invoice:invoice_cmd", "Invoice of a meter and billing period (text/json/pdf)."),
    "alerts": ("smartmeter.server.cli_alerts:alerts_group", "Alerts by MQTT, webhook, e-mail; Home Assistant."),
    "simulate": ("smartmeter.simulator.cli:simulate_group", "Synthetic households and simulated meter photos."),
    "camera": ("smartmeter.raspi.cli:camera_group", "Raspberry Pi camera daemon and uploader."),
    "pi": ("smartmeter.raspi.pi_cli:pi_group", "Prepare a Raspberry Pi OS card; deploy to a running Pi over SSH."),
    "backup": ("smartmeter.backup_dropbox.cli:backup_cmd", "Archive photos from the image store to a local folder."),
    "demo": ("smartmeter.simulator.demo:demo_cmd", "Run the whole loop on a simulated meter (embedded defaults)."),
}


@dataclass
class AppContext:
    """What every subcommand gets: the settings, loaded once here at the edge."""

    config_path: Path | None
    _settings: Settings | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            target = self.lazy[cmd_name][0]
            module, attr = target.split(":")
            try:
                return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
            except (ImportError, AttributeError) as exc:
                log.debug("subcommand %s unavailable: %s", cmd_name, exc)
                return _unavailable(cmd_name, self.lazy[cmd_name][1], exc)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, self.lazy[name][1]) for name in sorted(self.lazy)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SmartMeterError as exc:
            click.echo(f"error: {exc}", err=True)
            log.debug("error detail", exc_info=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


def _unavailable(name: str, help_text: str, exc: Exception) -> click.Command:
    @click.command(name, help=help_text, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def cmd(args: tuple[str, ...]) -> None:
        raise SmartMeterError(f"'{name}' is not available in this install: {exc}",
                              hint="install the matching extra, e.g. pip install 'smartmeter[server]'")

    return cmd


@click.group(cls=LazyGroup, lazy=SUBCOMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="smartmeter")
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path), envvar="SMARTMETER_CONFIG",
              help="Settings YAML (default: embedded defaults; env SMARTMETER_CONFIG).")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, verbose: int) -> None:
    """SmartMeter: read an electricity meter with a camera; turn photos into trustworthy energy data."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    ctx.obj = AppContext(config_path)


def main() -> None:
    cli(prog_name="smartmeter")


if __name__ == "__main__":
    main()
