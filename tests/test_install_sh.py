"""raspi/install.sh run for real (as root) into a temporary root: user, folders with owners and modes, settings,
secret, unit; run twice, the second run changes nothing. The apt and venv steps need the Pi (or network) and are
left out here with --no-apt --no-venv."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "raspi" / "install.sh"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("useradd"),
                                reason="install.sh creates users and chowns files: needs root and useradd")


def make_root(tmp_path: Path, gpio: bool) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000::/home/pi:/bin/bash\n")
    (root / "etc" / "group").write_text("root:x:0:\nvideo:x:44:pi\npi:x:1000:\n" + ("gpio:x:997:pi\n" if gpio else ""))
    (root / "etc" / "shadow").write_text("root:*:19000:0:99999:7:::\npi:*:19000:0:99999:7:::\n")
    (root / "etc" / "gshadow").write_text("root:*::\nvideo:!::pi\npi:!::\n" + ("gpio:!::pi\n" if gpio else ""))
    for f in ("shadow", "gshadow"):
        (root / "etc" / f).chmod(0o640)
    if Path("/etc/login.defs").exists():
        shutil.copy("/etc/login.defs", root / "etc" / "login.defs")
    return root


def run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SMARTMETER_INSTALL_ROOT=str(root), SUDO_USER="pi")
    return subprocess.run(["bash", str(SCRIPT), "--no-apt", "--no-venv", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def tree(root: Path) -> dict[str, tuple[int, int, int, bytes | str]]:
    out: dict[str, tuple[int, int, int, bytes | str]] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        body: bytes | str = os.readlink(p) if p.is_symlink() else (p.read_bytes() if p.is_file() else "")
        out[str(p.relative_to(root))] = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, body)
    return out


def ids(root: Path, name: str) -> tuple[int, int]:
    user = next(line for line in (root / "etc/passwd").read_text().splitlines() if line.startswith(name + ":"))
    group = next(line for line in (root / "etc/group").read_text().splitlines() if line.startswith(name + ":"))
    return int(user.split(":")[2]), int(group.split(":")[2])


@pytest.mark.parametrize("gpio", [True, False], ids=["raspberry-pi-os", "no-gpio-group"])
def test_install_sh_sets_owners_and_modes_and_is_idempotent(tmp_path: Path, gpio: bool) -> None:
    root = make_root(tmp_path, gpio)
    token = tmp_path / "token"
    token.write_text("refresh-token-123\n")
    first = run(root, "--config", str(REPO / "raspi" / "smartmeter.example.yaml"), "--token-file", str(token))
    assert first.returncode == 0, first.stderr + first.stdout
    uid, gid = ids(root, "smartmeter")
    got = tree(root)
    assert got["etc/smartmeter"][:3] == (0o750, 0, gid)  # the service (group smartmeter) can enter ...
    assert got["etc/smartmeter/smartmeter.yaml"][:3] == (0o640, 0, gid)  # ... and read its settings
    assert got["etc/smartmeter/dropbox_refresh_token"][:3] == (0o600, 0, 0)  # root only: systemd hands it over
    assert got["var/lib/smartmeter"][:3] == (0o750, uid, gid)
    assert got["var/lib/smartmeter/spool"][:3] == (0o750, uid, gid)
    assert got["etc/systemd/system/smartmeter-camera.service"][0] == 0o644
    assert got["etc/systemd/system/multi-user.target.wants/smartmeter-camera.service"][3] == \
        "/etc/systemd/system/smartmeter-camera.service"
    unit = (root / "etc/systemd/system/smartmeter-camera.service").read_text()
    assert "Type=notify" in unit and "WatchdogSec=" in unit and "LoadCredential=dropbox_refresh_token" in unit
    assert ("SupplementaryGroups=video gpio" in unit) == gpio
    groups = (root / "etc/group").read_text()
    assert any(line.startswith("video:") and "smartmeter" in line for line in groups.splitlines())
    assert any(line.startswith("smartmeter:") and line.endswith("pi") for line in groups.splitlines())

    second = run(root, "--config", str(REPO / "raspi" / "smartmeter.example.yaml"), "--token-file", str(token))
    assert second.returncode == 0, second.stderr
    assert tree(root) == got
    assert [line for line in second.stdout.splitlines() if not line.startswith("install.sh: done")] == []


def test_install_sh_repairs_wrong_modes_and_keeps_edited_settings(tmp_path: Path) -> None:
    root = make_root(tmp_path, gpio=True)
    assert run(root).returncode == 0
    settings = root / "etc/smartmeter/smartmeter.yaml"
    settings.write_text("camera:\n  meter_id: edited\n")
    (root / "etc/smartmeter").chmod(0o700)  # what the old guide did: unreadable for User=smartmeter
    again = run(root)
    assert again.returncode == 0 and "chmod 750 /etc/smartmeter" in again.stdout
    assert settings.read_text() == "camera:\n  meter_id: edited\n"  # never overwritten without --config
    assert stat.S_IMODE((root / "etc/smartmeter").stat().st_mode) == 0o750


def _wheelhouse() -> str | None:
    """The [pi] wheels for an offline venv (``make test`` downloads them into var/test-fixtures/wheels)."""
    folder = os.environ.get("SMARTMETER_WHEELHOUSE")
    return folder if folder and any(Path(folder).glob("dropbox-*.whl")) else None


WHEELHOUSE = _wheelhouse()


def apt_numpy() -> bool:
    return subprocess.run(["/usr/bin/python3", "-c", "import numpy"], capture_output=True).returncode == 0


@pytest.mark.skipif(not WHEELHOUSE or not apt_numpy(),
                    reason="the venv step needs the [pi] wheels offline (SMARTMETER_WHEELHOUSE=DIR filled with `pip "
                           "download -d DIR dropbox setuptools>=77 pydantic pyyaml click wheel`, as `make test` does) "
                           "and Debian's "
                           "python3-numpy (apt-get install python3-numpy python3-pil)")
def test_install_sh_venv_keeps_apt_numpy_and_installs_no_opencv(tmp_path: Path) -> None:
    root = make_root(tmp_path, gpio=True)
    env = dict(os.environ, SMARTMETER_INSTALL_ROOT=str(root), SUDO_USER="pi", SMARTMETER_PYTHON="/usr/bin/python3")
    res = subprocess.run(["bash", str(SCRIPT), "--no-apt", "--pip-arg", "--no-index", "--pip-arg",
                          f"--find-links={WHEELHOUSE}"], env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    venv = root / "opt/smartmeter/.venv/bin"
    probe = ("import importlib.util as u, numpy, smartmeter.raspi.daemon as d; "
             "print(numpy.__file__); print(u.find_spec('cv2')); print(d.__file__)")
    out = subprocess.run([str(venv / "python"), "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0].startswith("/usr/lib/python3/dist-packages/numpy/")  # apt's numpy, not a second one
    assert out[1] == "None"  # no OpenCV on the Pi
    assert "site-packages/smartmeter/raspi/daemon.py" in out[2]  # a real (non-editable) install
    assert "numpy==" in (root / "opt/smartmeter/constraints.txt").read_text()


BOOKWORM = os.environ.get("SMARTMETER_BOOKWORM_ROOT")


@pytest.fixture
def bookworm(tmp_path: Path) -> Iterator[Path]:
    """A writable copy-on-write view (overlayfs) of a Debian Bookworm root made with debootstrap."""
    if not BOOKWORM or not (Path(BOOKWORM) / "usr/bin/python3").exists() or not WHEELHOUSE:
        pytest.skip("needs SMARTMETER_BOOKWORM_ROOT (`make test` makes one as root: sudo debootstrap "
                    "--variant=minbase --include=python3,"
                    "python3-venv,python3-numpy,python3-pil,systemd,passwd,login bookworm DIR) and "
                    "SMARTMETER_WHEELHOUSE (see above)")
    upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    for d in (upper, work, merged):
        d.mkdir()
    res = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={BOOKWORM},upperdir={upper},"
                          f"workdir={work}", str(merged)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount an overlay here: {res.stderr.strip()}")
    try:
        yield merged
    finally:
        subprocess.run(["umount", "-l", str(merged)], check=False)


def test_install_sh_in_a_debootstrapped_bookworm_chroot(bookworm: Path) -> None:
    from smartmeter.raspi.pi_cli import pack_source

    src = bookworm / "root/smartmeter"
    src.mkdir(parents=True)
    subprocess.run(["tar", "-xzf", "-", "-C", str(src)], input=pack_source(REPO), check=True)
    shutil.copytree(str(WHEELHOUSE), bookworm / "root/wheels")
    cmd = ["chroot", str(bookworm), "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "bash",
           "/root/smartmeter/raspi/install.sh", "--no-apt", "--no-start", "--config",
           "/root/smartmeter/raspi/smartmeter.example.yaml", "--pip-arg", "--no-index", "--pip-arg",
           "--find-links=/root/wheels"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr

    def inside(*args: str) -> str:
        return subprocess.run(["chroot", str(bookworm), *args], capture_output=True, text=True, check=True).stdout

    assert inside("stat", "-c", "%a %U %G", "/etc/smartmeter", "/etc/smartmeter/smartmeter.yaml",
                  "/var/lib/smartmeter/spool").split("\n")[:3] == ["750 root smartmeter", "640 root smartmeter",
                                                                   "750 smartmeter smartmeter"]
    assert "video" in inside("id", "-nG", "smartmeter")
    assert inside("systemctl", "is-enabled", "smartmeter-camera.service").strip() == "enabled"
    numpy = inside("/opt/smartmeter/.venv/bin/python", "-c", "import numpy; print(numpy.__file__)")
    assert numpy.startswith("/usr/lib/python3/dist-packages/numpy/")
    assert "camera" in inside("/opt/smartmeter/.venv/bin/smartmeter", "--help")
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr
    changes = [line for line in second.stdout.splitlines()
               if not line.startswith(("install.sh: pip install", "install.sh: done", "install.sh: systemd is not",
                                        "install.sh: no Dropbox refresh token"))]
    assert changes == []
