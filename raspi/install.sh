#!/usr/bin/env bash
# Install (or update) the SmartMeter camera daemon on a Raspberry Pi running Raspberry Pi OS Bookworm (32- or 64-bit).
# Idempotent: run it again after an update; it changes only what differs. Run from a copy of the project:
#
#   sudo raspi/install.sh [--config smartmeter.yaml] [--token-file dropbox_refresh_token] [--no-start]
#
# What it does:
#   1. apt: python3-picamera2 (brings numpy, PIL, libcamera), python3-venv (skipped with --no-apt)
#   2. the system user `smartmeter` (groups video, and gpio where it exists); the invoking user joins group smartmeter
#      so that `smartmeter camera status` and `camera snap` work without sudo
#   3. folders: /etc/smartmeter root:smartmeter 750 (settings 640), /var/lib/smartmeter smartmeter 750 (spool,
#      heartbeat); the Dropbox refresh token root:root 600, handed to the service by systemd (LoadCredential=)
#   4. a venv in /opt/smartmeter/.venv with --system-site-packages, so picamera2 and Bookworm's numpy are the apt
#      ones; pip is constrained to that numpy (never a second one) and installs the project non-editable with
#      the `pi` extra (no OpenCV)
#   5. the unit smartmeter-camera.service (Type=notify, watchdog), enabled and (re)started
#
# SMARTMETER_INSTALL_ROOT=DIR installs into DIR instead of / (tests, image building): users go into DIR/etc/passwd
# (useradd --root), units are enabled with systemctl --root, nothing is started.
set -euo pipefail

ROOT="${SMARTMETER_INSTALL_ROOT:-}"
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX=/opt/smartmeter
ETC=/etc/smartmeter
STATE=/var/lib/smartmeter
UNIT=smartmeter-camera.service
PYTHON="${SMARTMETER_PYTHON:-/usr/bin/python3}"
CONFIG="" TOKEN="" APT=1 START=1 VENV=1 EXTRA=pi
PIP_ARGS=()

usage() { sed -n '2,20p' "$0"; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --config) CONFIG="$2"; shift 2 ;;
        --token-file) TOKEN="$2"; shift 2 ;;
        --extra) EXTRA="$2"; shift 2 ;;          # pi-ocr: also the reader, to aim with `read --auto` on the Pi
        --pip-arg) PIP_ARGS+=("$2"); shift 2 ;;
        --no-apt) APT=0; shift ;;
        --no-venv) VENV=0; shift ;;
        --no-start) START=0; shift ;;
        -h|--help) usage 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage 2 ;;
    esac
done
[ -n "$ROOT" ] && START=0
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root (sudo)" >&2; exit 1; }

say() { echo "install.sh: $*"; }
changed() { say "$*"; }

# 1. packages
if [ "$APT" = 1 ]; then
    need=()
    for pkg in python3-picamera2 python3-venv; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
    done
    if [ ${#need[@]} -gt 0 ]; then
        changed "apt install ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
    fi
fi

# 2. user and groups
ROOTARG=()
[ -n "$ROOT" ] && ROOTARG=(--root "$ROOT")
passwd_file="$ROOT/etc/passwd"
group_file="$ROOT/etc/group"
has_group() { grep -q "^$1:" "$group_file"; }
if ! grep -q "^smartmeter:" "$passwd_file"; then
    changed "creating system user smartmeter"
    useradd "${ROOTARG[@]}" --system --user-group --home-dir "$STATE" --no-create-home \
        --shell /usr/sbin/nologin smartmeter
fi
for g in video gpio; do
    if has_group "$g" && ! grep -q "^$g:.*[:,]smartmeter\(,\|$\)" "$group_file"; then
        changed "adding smartmeter to group $g"
        usermod "${ROOTARG[@]}" -a -G "$g" smartmeter
    fi
done
admin="${SUDO_USER:-}"
if [ -n "$admin" ] && [ "$admin" != root ] && grep -q "^$admin:" "$passwd_file" \
        && ! grep -q "^smartmeter:.*[:,]$admin\(,\|$\)" "$group_file"; then
    changed "adding $admin to group smartmeter (status and snap without sudo; log in again)"
    usermod "${ROOTARG[@]}" -a -G smartmeter "$admin"
fi
uid="$(awk -F: '$1=="smartmeter"{print $3}' "$passwd_file")"
gid="$(awk -F: '$1=="smartmeter"{print $3}' "$group_file")"

# ensure_dir PATH OWNER:GROUP MODE / ensure_file SRC DEST OWNER:GROUP MODE: change only what differs
ensure_dir() {
    local d="$ROOT$1"
    [ -d "$d" ] || { changed "mkdir $1"; mkdir -p "$d"; }
    [ "$(stat -c %u:%g "$d")" = "$2" ] || { changed "chown $2 $1"; chown "$2" "$d"; }
    [ "$(stat -c %a "$d")" = "$3" ] || { changed "chmod $3 $1"; chmod "$3" "$d"; }
}
ensure_file() {
    local f="$ROOT$2"
    if [ ! -f "$f" ] || ! cmp -s "$1" "$f"; then changed "writing $2"; install -D -m "$4" "$1" "$f"; fi
    [ "$(stat -c %u:%g "$f")" = "$3" ] || { changed "chown $3 $2"; chown "$3" "$f"; }
    [ "$(stat -c %a "$f")" = "$4" ] || { changed "chmod $4 $2"; chmod "$4" "$f"; }
}

# 3. folders, settings, secret
ensure_dir "$ETC" "0:$gid" 750
ensure_dir "$STATE" "$uid:$gid" 750
ensure_dir "$STATE/spool" "$uid:$gid" 750
if [ -n "$CONFIG" ]; then
    ensure_file "$CONFIG" "$ETC/smartmeter.yaml" "0:$gid" 640
elif [ ! -f "$ROOT$ETC/smartmeter.yaml" ]; then
    ensure_file "$SRC/raspi/smartmeter.example.yaml" "$ETC/smartmeter.yaml" "0:$gid" 640
    say "edit $ETC/smartmeter.yaml (meter_id, Dropbox app key), then run this again"
fi
if [ -n "$TOKEN" ]; then
    ensure_file "$TOKEN" "$ETC/dropbox_refresh_token" "0:0" 600
elif [ ! -f "$ROOT$ETC/dropbox_refresh_token" ]; then
    say "no Dropbox refresh token yet: sudo install -m 600 /dev/stdin $ETC/dropbox_refresh_token (paste, Ctrl-D)"
fi

# 4. code and venv
ensure_dir "$PREFIX" "0:0" 755
if [ "$VENV" = 1 ]; then
    venv="$ROOT$PREFIX/.venv"
    if [ ! -x "$venv/bin/python" ]; then
        changed "creating $PREFIX/.venv (--system-site-packages: apt's picamera2 and numpy)"
        "$PYTHON" -m venv --system-site-packages "$venv"
    fi
    constraints="$ROOT$PREFIX/constraints.txt"
    # pin what apt provides, so pip never installs a second numpy over the one picamera2 is built against
    "$venv/bin/python" - > "$constraints.new" <<'PY'
import importlib.metadata as md
for name in ("numpy", "pillow", "simplejpeg", "picamera2"):
    try:
        print(f"{name}=={md.version(name)}")
    except md.PackageNotFoundError:
        pass
PY
    mv "$constraints.new" "$constraints"
    changed "pip install $SRC[$EXTRA] (constraints: $(tr '\n' ' ' < "$constraints"))"
    "$venv/bin/pip" install -q --disable-pip-version-check --constraint "$constraints" "${PIP_ARGS[@]}" \
        "$SRC[$EXTRA]"
    "$venv/bin/python" - <<'PY'
import importlib.util, sys
spec = importlib.util.find_spec("numpy")
if spec is not None and "/dist-packages/" not in (spec.origin or "") and sys.prefix in (spec.origin or ""):
    sys.exit(f"install.sh: a second numpy landed in the venv ({spec.origin}); picamera2 needs apt's")
if importlib.util.find_spec("cv2") is not None and "/dist-packages/" not in importlib.util.find_spec("cv2").origin:
    print("install.sh: note: OpenCV is installed in the venv (only the opencv backend needs it)")
PY
fi

# 5. the unit (without the gpio group where the system has none: systemd would refuse to start it)
unit_src="$SRC/raspi/systemd/$UNIT"
if ! has_group gpio; then
    unit_src="$(mktemp)"
    trap 'rm -f "$unit_src"' EXIT
    sed 's/^SupplementaryGroups=video gpio$/SupplementaryGroups=video/' "$SRC/raspi/systemd/$UNIT" > "$unit_src"
fi
ensure_file "$unit_src" "/etc/systemd/system/$UNIT" "0:0" 644
if [ -n "$ROOT" ]; then
    systemctl --root="$ROOT" enable "$UNIT" >/dev/null 2>&1 || mkdir -p "$ROOT/etc/systemd/system/multi-user.target.wants" \
        && ln -sf "/etc/systemd/system/$UNIT" "$ROOT/etc/systemd/system/multi-user.target.wants/$UNIT"
elif [ ! -d /run/systemd/system ]; then  # a chroot or image build: no systemd running, enable only
    systemctl enable "$UNIT" >/dev/null 2>&1
    say "systemd is not running here: $UNIT enabled, it starts at the next boot"
else
    systemctl daemon-reload
    systemctl enable "$UNIT" >/dev/null
    if [ "$START" = 1 ]; then
        if [ -f "$ETC/dropbox_refresh_token" ] || ! grep -q "backend: dropbox" "$ETC/smartmeter.yaml"; then
            changed "restarting $UNIT"
            systemctl restart "$UNIT"
        else
            say "not starting $UNIT: the Dropbox refresh token is missing"
        fi
    fi
fi
say "done. Check: systemctl status $UNIT; $PREFIX/.venv/bin/smartmeter -c $ETC/smartmeter.yaml camera status"
