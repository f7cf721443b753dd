#!/usr/bin/env bash
# Install or update the hub on Debian 12 or later, from this checkout. Idempotent: run it again after pulling an
# update, or to repair; a second run with nothing new changes nothing.
#
#   sudo systemd/install-hub.sh [--no-start] [--skip-packages]
#
#   --no-start        install and check, but do not enable or start the service
#   --skip-packages   do not call apt-get (an image with the packages already in it)
#
# What it does, each step only when needed:
#   1. Debian packages: python3-venv and mosquitto. Debian's own mosquitto.service is disabled and stopped: the
#      hub runs Mosquitto as its child, with the configuration it writes (TLS, passwords, ACLs, the CRL).
#   2. The system user telehealth-hub (no groups, no login, no home).
#   3. The venv /opt/telehealth/venv with the hub's dependencies at the versions in requirements.lock.
#   4. /etc/telehealth/hub.yaml from systemd/hub.yaml, only if absent: your edits are never overwritten.
#   5. hub.service into /etc/systemd/system (rewritten only when it differs), then daemon-reload.
#   6. /etc/credstore/telehealth-hub, root-only, for the secrets hub.yaml names as `credential:NAME` (the HTTPS key,
#      coturn's secret): put them there and uncomment their LoadCredential= lines in hub.service.
#   7. `hub config check`: a problem in the configuration is printed as file:line and stops the script with
#      nothing started.
#   8. enable --now hub.service (restarted when step 3 or 5 changed something).
#
# Then: a provider account (`hub users add`) and each kiosk's identity (`hub kiosks add`); see the README.
# ROOT=/some/dir installs under that directory instead of / (the tests do this; systemctl is then not called).
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=${ROOT:-}
PREFIX=$ROOT/opt/telehealth
VENV=$PREFIX/venv
CREDSTORE=/etc/credstore/telehealth-hub
UNIT_DIR=$ROOT/etc/systemd/system
# The C toolchain and Mosquitto's plugin headers: the hub builds its broker plugin (hub/fleet/kiosk_guard.c) once.
PACKAGES=(python3-venv python3-pip mosquitto gcc libc6-dev mosquitto-dev libmosquitto-dev libssl-dev)

start=1 packages=1
while [ $# -gt 0 ]; do
    case $1 in
        --no-start) start=0; shift ;;
        --skip-packages) packages=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "install-hub: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "install-hub: run as root (sudo)" >&2; exit 2; }

NAME=install-hub changed=0
# shellcheck source=systemd/install-lib.sh
. "$SRC/systemd/install-lib.sh"

# 1. Packages; Debian's broker service off (the hub's child Mosquitto needs its ports and its own configuration)
[ "$packages" = 0 ] || ensure_packages "${PACKAGES[@]}"
if [ -z "$ROOT" ] && systemctl is-enabled --quiet mosquitto.service 2>/dev/null; then
    say "disabling Debian's mosquitto.service (the hub runs its own)"
    systemctl disable --now --quiet mosquitto.service
fi

# 2. User
ensure_user telehealth-hub ""

# 3. The venv
ensure_venv hub

# 4. Configuration: created once, never overwritten
ensure_config hub.yaml "edit it: the names and addresses kiosks reach the hub by, HTTPS, retention"

# 5. Unit
ensure_units hub.service

# 6. Root-only secrets for LoadCredential= (the hub's own secrets it makes and keeps in its StateDirectory)
install -d -m 0700 "$ROOT$CREDSTORE"

# 7. Check before starting
"$VENV/bin/hub" config check "$ROOT/etc/telehealth/hub.yaml"

# 8. Service
start_units hub.service
