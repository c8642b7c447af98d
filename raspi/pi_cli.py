"""``smartmeter pi``: put the camera on a Raspberry Pi with no keyboard, and update it later over SSH.

``prepare-card BOOT`` writes onto the boot partition of a freshly flashed Raspberry Pi OS (Bookworm) card what
Raspberry Pi Imager writes for its OS customisation: a ``firstrun.sh`` run once by the kernel command line
(``systemd.run=``) that sets hostname, user, SSH key and Wi-Fi with Raspberry Pi OS's own ``imager_custom`` and
``userconf`` tools. It also unpacks the project, moves the settings and the Dropbox token into /etc/smartmeter
(root only; removed from the FAT partition) and installs a one-shot unit that runs ``raspi/install.sh`` as soon as
the network is up: the Pi comes up capturing.

``deploy USER@HOST`` sends the project over SSH, runs the installer there (idempotent: it restarts the service
only through systemd) and prints the daemon's status.
"""

from __future__ import annotations

import io
import shlex
import subprocess
import tarfile
from pathlib import Path

import click

from smartmeter.errors import ConfigError, ExternalToolError, InputError

SOURCE = Path(__file__).resolve().parent.parent  # the project root (raspi/ is a top-level folder)
SKIP = {".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".import_linter_cache", "var",
        "notebooks", "build", "dist", "tests", "bench", "shared"}  # the Pi needs the package, not the workbench
CMDLINE_RUN = ("systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot "
               "systemd.unit=kernel-command-line.target")
REMOTE_DIR = "/opt/smartmeter/src"


def pack_source(root: Path = SOURCE) -> bytes:
    """The project as a .tar.gz (links kept: smartmeter/ocr -> ../ocr ...), without venvs, caches and data."""
    buf = io.BytesIO()

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(info.name).parts
        if any(p in SKIP or p.endswith(".egg-info") for p in parts):
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for child in sorted(root.iterdir()):
            tar.add(child, arcname=child.name, filter=keep)
    return buf.getvalue()


def firstrun_script(hostname: str, user: str, password_hash: str, ssh_key: str,
                    wifi: tuple[str, str, str] | None) -> str:
    q = shlex.quote
    lines = [
        "#!/bin/bash",
        "# Written by `smartmeter pi prepare-card`; run once at first boot (cmdline.txt systemd.run=), then removed.",
        "set +e",
        "BOOT=/boot/firmware; [ -d $BOOT/smartmeter ] || BOOT=/boot",
        "IMAGER=/usr/lib/raspberrypi-sys-mods/imager_custom",
        f"$IMAGER set_hostname {q(hostname)}",
        f"/usr/lib/userconf-pi/userconf {q(user)} {q(password_hash)}",
        f"$IMAGER enable_ssh -k {q(ssh_key)}",
    ]
    if wifi:
        lines.append(f"$IMAGER set_wlan {q(wifi[0])} {q(wifi[1])} {q(wifi[2])}")
    lines += [
        "# SmartMeter: the code, the settings and the secret now; the install once the network is up",
        "mkdir -p /opt/smartmeter/src /etc/smartmeter",
        "tar -xzf $BOOT/smartmeter/smartmeter-src.tar.gz -C /opt/smartmeter/src",
        "install -m 640 $BOOT/smartmeter/smartmeter.yaml /etc/smartmeter/smartmeter.yaml",
        "[ -f $BOOT/smartmeter/dropbox_refresh_token ] && install -m 600 $BOOT/smartmeter/dropbox_refresh_token "
        "/etc/smartmeter/dropbox_refresh_token",
        "shred -u $BOOT/smartmeter/dropbox_refresh_token 2>/dev/null || rm -f $BOOT/smartmeter/dropbox_refresh_token",
        "cat > /etc/systemd/system/smartmeter-firstboot.service <<'UNIT'",
        "[Unit]",
        "Description=SmartMeter: install the camera daemon once the network is up (written by prepare-card)",
        "Wants=network-online.target",
        "After=network-online.target",
        "ConditionPathExists=!/var/lib/smartmeter/.installed",
        "[Service]",
        "Type=oneshot",
        "ExecStart=/opt/smartmeter/src/raspi/install.sh --config /etc/smartmeter/smartmeter.yaml",
        "ExecStartPost=/usr/bin/touch /var/lib/smartmeter/.installed",
        "Restart=on-failure",
        "RestartSec=60",
        "[Install]",
        "WantedBy=multi-user.target",
        "UNIT",
        "ln -sf /etc/systemd/system/smartmeter-firstboot.service "
        "/etc/systemd/system/multi-user.target.wants/smartmeter-firstboot.service",
        "rm -f $BOOT/firstrun.sh",
        "sed -i 's| systemd.run[^ ]*||g; s| systemd.unit=kernel-command-line.target||g' $BOOT/cmdline.txt",
        "exit 0",
        "",
    ]
    return "\n".join(lines)


def prepare_card(boot: Path, *, hostname: str, user: str, password_hash: str, ssh_key: str, settings: Path,
                 token: Path | None, wifi: tuple[str, str, str] | None, source: Path = SOURCE) -> list[Path]:
    """Write the first-boot files onto ``boot``; returns what was written. Running it twice is harmless."""
    cmdline = boot / "cmdline.txt"
    if not cmdline.is_file():
        raise InputError(f"{boot} has no cmdline.txt: is it the boot partition of a Raspberry Pi OS card?")
    if not password_hash.startswith("$"):
        raise InputError("--password-hash must be a crypt hash (openssl passwd -6), never the password")
    from smartmeter.settings import load_settings

    load_settings(settings)  # a bad settings file fails here, not on the Pi
    folder = boot / "smartmeter"
    folder.mkdir(exist_ok=True)
    written = [folder / "smartmeter-src.tar.gz", folder / "smartmeter.yaml", boot / "firstrun.sh", cmdline]
    written[0].write_bytes(pack_source(source))
    written[1].write_bytes(settings.read_bytes())
    if token is not None:
        secret = folder / "dropbox_refresh_token"
        secret.write_bytes(token.read_bytes())
        secret.chmod(0o600)
        written.insert(2, secret)
    written[-2].write_text(firstrun_script(hostname, user, password_hash, ssh_key, wifi))
    line = cmdline.read_text().strip()
    if "systemd.run=" not in line:
        cmdline.write_text(f"{line} {CMDLINE_RUN}\n")
    return written


def ssh(ssh_cmd: str, host: str, remote: str, stdin: bytes | None = None, timeout_s: float = 900) -> str:
    argv = [*shlex.split(ssh_cmd), host, remote]
    try:
        res = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout_s)
    except FileNotFoundError as exc:
        raise ExternalToolError(f"cannot run {argv[0]}", hint="install openssh-client") from exc
    except subprocess.TimeoutExpired as exc:
        raise ExternalToolError(f"{host}: {remote!r} did not finish in {timeout_s:.0f} s") from exc
    if res.returncode != 0:
        err = res.stderr.decode(errors="replace").strip().splitlines()
        raise ExternalToolError(f"{host}: {remote!r} failed ({res.returncode}): {err[-1] if err else ''}")
    return res.stdout.decode(errors="replace")


def deploy(host: str, *, ssh_cmd: str = "ssh", settings: Path | None = None, remote_dir: str = REMOTE_DIR,
           source: Path = SOURCE) -> str:
    """Send the project to ``host``, run its installer, return the daemon's status."""
    d = shlex.quote(remote_dir)
    ssh(ssh_cmd, host, f"sudo mkdir -p {d} && sudo tar -xzf - -C {d}", stdin=pack_source(source))
    args = ""
    if settings is not None:
        ssh(ssh_cmd, host, "cat > /tmp/smartmeter.yaml.new", stdin=settings.read_bytes())
        args = " --config /tmp/smartmeter.yaml.new"
    ssh(ssh_cmd, host, f"sudo {d}/raspi/install.sh{args}")
    return ssh(ssh_cmd, host, "/opt/smartmeter/.venv/bin/smartmeter -c /etc/smartmeter/smartmeter.yaml camera status")


@click.group("pi")
def pi_group() -> None:
    """Prepare a Raspberry Pi OS card; deploy to a running Pi over SSH."""


@pi_group.command("prepare-card")
@click.argument("boot", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--hostname", default="smartmeter", show_default=True)
@click.option("--user", default="pi", show_default=True, help="The login user to create.")
@click.option("--password-hash", required=True, help="Its password as a crypt hash: openssl passwd -6.")
@click.option("--ssh-key", "ssh_key_file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              required=True, help="Public key allowed to log in (e.g. ~/.ssh/id_ed25519.pub).")
@click.option("--settings", type=click.Path(path_type=Path, dir_okay=False, exists=True), required=True,
              help="The Pi's smartmeter.yaml.")
@click.option("--token-file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Dropbox refresh token (moved to /etc/smartmeter at first boot, removed from the card).")
@click.option("--wifi-ssid")
@click.option("--wifi-password-file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--wifi-country", default="IT", show_default=True)
def prepare_card_cmd(boot: Path, hostname: str, user: str, password_hash: str, ssh_key_file: Path, settings: Path,
                     token_file: Path | None, wifi_ssid: str | None, wifi_password_file: Path | None,
                     wifi_country: str) -> None:
    """Write a first-boot configuration onto BOOT, a freshly flashed card's boot partition."""
    wifi = None
    if wifi_ssid:
        if wifi_password_file is None:
            raise ConfigError("--wifi-ssid needs --wifi-password-file")
        wifi = (wifi_ssid, wifi_password_file.read_text().strip(), wifi_country)
    key = ssh_key_file.read_text().strip()
    for path in prepare_card(boot, hostname=hostname, user=user, password_hash=password_hash, ssh_key=key,
                             settings=settings, token=token_file, wifi=wifi):
        click.echo(f"wrote {path}")
    click.echo("eject the card, put it in the Pi and power it: it installs itself once on the network "
               f"(ssh {user}@{hostname}.local, then smartmeter camera status)")


@pi_group.command("deploy")
@click.argument("host")
@click.option("--settings", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Replace the Pi's smartmeter.yaml with this one.")
@click.option("--ssh", "ssh_cmd", default="ssh", show_default=True, envvar="SMARTMETER_SSH",
              help="SSH command (e.g. 'ssh -p 2222').")
def deploy_cmd(host: str, settings: Path | None, ssh_cmd: str) -> None:
    """Update the camera on a running Pi (USER@HOST) over SSH and restart it."""
    click.echo(deploy(host, ssh_cmd=ssh_cmd, settings=settings))
