from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from smartmeter.cli import cli
from smartmeter.errors import ExternalToolError
from smartmeter.raspi.pi_cli import CMDLINE_RUN, deploy, pack_source

REPO = Path(__file__).resolve().parent.parent
HASH = "$6$salt$Xx9N0dNlYmVqY1JrF3o1"


def card(tmp_path: Path) -> Path:
    boot = tmp_path / "bootfs"
    boot.mkdir()
    (boot / "cmdline.txt").write_text("console=serial0,115200 console=tty1 root=PARTUUID=abcd-02 rootfstype=ext4 "
                                      "fsck.repair=yes rootwait quiet\n")
    return boot


def test_pack_source_keeps_the_links_and_leaves_out_venvs() -> None:
    with tarfile.open(fileobj=io.BytesIO(pack_source()), mode="r:gz") as tar:
        names = set(tar.getnames())
        link = tar.getmember("smartmeter/raspi")
    assert "raspi/install.sh" in names and "pyproject.toml" in names and "simulator/assets/digits/index.csv" in names
    assert link.issym() and link.linkname == "../raspi"
    assert not [n for n in names if n.startswith((".venv", ".git/")) or "__pycache__" in n]


def test_prepare_card_writes_the_first_boot_files(tmp_path: Path) -> None:
    boot = card(tmp_path)
    key, token, wifi = tmp_path / "id.pub", tmp_path / "token", tmp_path / "wifi"
    key.write_text("ssh-ed25519 AAAAC3Nza test@laptop\n")
    token.write_text("refresh-123\n")
    wifi.write_text("wifi pass 'quoted'\n")
    args = ["pi", "prepare-card", str(boot), "--hostname", "meter-pi", "--password-hash", HASH, "--ssh-key",
            str(key), "--settings", str(REPO / "raspi/smartmeter.example.yaml"), "--token-file", str(token),
            "--wifi-ssid", "Home Net", "--wifi-password-file", str(wifi), "--wifi-country", "DE"]
    for _ in range(2):  # twice: harmless
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 0, res.output
    cmdline = (boot / "cmdline.txt").read_text()
    assert cmdline.count("systemd.run=") == 1 and cmdline.strip().endswith(CMDLINE_RUN) and cmdline.count("\n") == 1
    script = (boot / "firstrun.sh").read_text()
    assert subprocess.run(["bash", "-n", str(boot / "firstrun.sh")]).returncode == 0
    assert "$IMAGER set_hostname meter-pi" in script and "IMAGER=/usr/lib/raspberrypi-sys-mods/imager_custom" in script
    assert "enable_ssh -k 'ssh-ed25519 AAAAC3Nza test@laptop'" in script
    assert "set_wlan 'Home Net' 'wifi pass '\"'\"'quoted'\"'\"'' DE" in script
    assert f"userconf pi '{HASH}'" in script and "raspi/install.sh --config /etc/smartmeter/smartmeter.yaml" in script
    assert "refresh-123" not in script and "shred -u" in script  # the secret is moved, never copied into scripts
    secret = boot / "smartmeter" / "dropbox_refresh_token"
    assert secret.read_text() == "refresh-123\n" and stat.S_IMODE(secret.stat().st_mode) == 0o600
    with tarfile.open(boot / "smartmeter" / "smartmeter-src.tar.gz") as tar:
        assert "raspi/install.sh" in tar.getnames()


def test_prepare_card_refuses_a_non_boot_folder_and_a_plain_password(tmp_path: Path) -> None:
    key = tmp_path / "id.pub"
    key.write_text("ssh-ed25519 AAAA x\n")
    base = ["pi", "prepare-card", "--ssh-key", str(key), "--settings", str(REPO / "raspi/smartmeter.example.yaml")]
    res = CliRunner().invoke(cli, [*base, str(tmp_path), "--password-hash", HASH])
    assert res.exit_code == 65 and "cmdline.txt" in res.output
    res = CliRunner().invoke(cli, [*base, str(card(tmp_path)), "--password-hash", "hunter2"])
    assert res.exit_code == 65 and "crypt hash" in res.output


def fake_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """An SSH stand-in: runs the remote command here, in a shell where sudo runs its arguments, except the
    installer, which is only recorded (it would install on this machine)."""
    log = tmp_path / "ssh.log"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "sudo").write_text('#!/bin/sh\ncase "$1" in */install.sh) echo "INSTALL $*" >> "$SSH_LOG"; exit 0;; '
                                 'esac\nexec "$@"\n')
    (bindir / "fake-ssh").write_text('#!/bin/sh\nhost="$1"; shift\necho "$host :: $*" >> "$SSH_LOG"\n'
                                     'case "$*" in *"camera status"*) echo \'{"state": "capturing"}\'; exit 0;; esac\n'
                                     'exec sh -c "$*"\n')
    for f in bindir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("SSH_LOG", str(log))
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return str(bindir / "fake-ssh"), log


def test_deploy_sends_the_source_runs_the_installer_and_shows_status(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    ssh_cmd, log = fake_ssh(tmp_path, monkeypatch)
    remote = tmp_path / "remote-src"
    settings = tmp_path / "new.yaml"
    settings.write_text("camera:\n  meter_id: kitchen\n")
    out = deploy("pi@meter-pi", ssh_cmd=ssh_cmd, settings=settings, remote_dir=str(remote))
    assert '"capturing"' in out
    assert (remote / "raspi" / "install.sh").is_file() and (remote / "smartmeter" / "raspi").is_symlink()
    lines = log.read_text().splitlines()
    assert lines[0].startswith("pi@meter-pi :: sudo mkdir -p") and "tar -xzf -" in lines[0]
    assert any(f"INSTALL {remote}/raspi/install.sh --config /tmp/smartmeter.yaml.new" in line for line in lines)
    assert lines[-1].endswith("camera status")


def test_deploy_reports_a_failing_host(tmp_path: Path) -> None:
    with pytest.raises(ExternalToolError, match="failed"):
        deploy("pi@nowhere", ssh_cmd="false", remote_dir=str(tmp_path))
