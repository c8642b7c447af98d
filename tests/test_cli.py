from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from smartmeter import __version__
from smartmeter.cli import SUBCOMMANDS, cli


def test_help_lists_subcommands() -> None:
    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0
    for name in ("config", "ocr", "read", "worker", "import", "demo", "simulate", "backup", "camera"):
        assert name in res.output


def test_version() -> None:
    res = CliRunner().invoke(cli, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output


def test_every_subcommand_loads() -> None:
    for name in SUBCOMMANDS:
        res = CliRunner().invoke(cli, [name, "--help"])
        assert res.exit_code == 0, (name, res.output)
        assert "not available" not in res.output, name


def test_console_script_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "smartmeter.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout
