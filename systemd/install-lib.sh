# Shared by install-kiosk.sh and install-hub.sh (sourced, not run): each step changes something only when it is
# needed, and says so. The caller sets SRC, ROOT, PREFIX, VENV, UNIT_DIR and NAME (for messages), and `changed`.

say() { printf '%s: %s\n' "$NAME" "$*"; }

ensure_packages() {  # Debian package names; apt-get runs only when one is missing
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
}

# useradd --prefix edits $ROOT/etc/passwd; with ROOT empty it is the system's.
ensure_user() {  # name, supplementary groups (comma-separated, may be empty)
    local name=$1 groups=$2
    if ! grep -q "^$name:" "$ROOT/etc/passwd"; then
        say "creating system user $name"
        useradd ${ROOT:+--prefix "$ROOT"} --system --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin --user-group ${groups:+--groups "$groups"} "$name"
    elif [ -n "$groups" ]; then
        local g
        for g in ${groups//,/ }; do
            grep -qE "^$g:[^:]*:[^:]*:(.*,)?$name(,|$)" "$ROOT/etc/group" \
                || { say "adding $name to $g"; usermod ${ROOT:+--prefix "$ROOT"} --append --groups "$g" "$name"; }
        done
    fi
}

owner_of() {  # uid:gid of a user, from the passwd file it was made in ($ROOT's, the system's when ROOT is empty)
    grep "^$1:" "$ROOT/etc/passwd" | cut -d: -f3,4
}

# The venv, rebuilt only when the source or the lock changed (a stamp of both).
ensure_venv() {  # the extra to install: kiosk or hub
    local extra=$1 stamp
    stamp=$( { cat "$SRC/requirements.lock" "$SRC/pyproject.toml";
               find "$SRC/device" "$SRC/hub" -type f -name '*.py' -o -type f -path '*/static/*' -o -type f -name '*.html' \
                    -o -type f -name '*.po' -o -type f -name '*.yaml' -o -type f -name '*.json' | LC_ALL=C sort | xargs cat; } \
             | sha256sum | cut -d' ' -f1)
    # One stamp per extra: a machine that is both hub and kiosk shares the venv without rebuilding it each time.
    if [ "$(cat "$PREFIX/.installed-$extra" 2>/dev/null)" != "$stamp" ]; then
        say "installing the $extra software into $VENV"
        [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-compile -c "$SRC/requirements.lock" "$SRC[$extra]"
        # Byte-compiled here, on every core (pip compiles on one: 25 s against 9 s here): the services cannot write
        # __pycache__ under ProtectSystem=strict, and would otherwise compile in memory at every start.
        "$VENV/bin/python" -m compileall -q -j 0 "$VENV/lib" >/dev/null \
            || say "some files could not be byte-compiled (as pip does, they are left to be compiled when imported)"
        install -d -m 0755 "$PREFIX"
        printf '%s\n' "$stamp" > "$PREFIX/.installed-$extra"
        changed=1
    fi
}

ensure_config() {  # file name in systemd/ and in /etc/telehealth: created once, never overwritten
    install -d -m 0755 "$ROOT/etc/telehealth"
    if [ ! -e "$ROOT/etc/telehealth/$1" ]; then
        say "creating $ROOT/etc/telehealth/$1 ($2)"
        install -m 0644 "$SRC/systemd/$1" "$ROOT/etc/telehealth/$1"
    fi
}

ensure_units() {  # unit file names in systemd/: rewritten only when they differ, then daemon-reload
    local unit
    install -d -m 0755 "$UNIT_DIR"
    for unit in "$@"; do
        if ! cmp -s "$SRC/systemd/$unit" "$UNIT_DIR/$unit"; then
            say "installing $unit"
            install -m 0644 "$SRC/systemd/$unit" "$UNIT_DIR/$unit"
            changed=1
        fi
    done
    [ -n "$ROOT" ] || [ "$changed" = 0 ] || systemctl daemon-reload
}

start_units() {  # enable and start (restart when something changed); never under ROOT or with --no-start
    if [ "$start" = 1 ] && [ -z "$ROOT" ]; then
        systemctl enable --quiet "$@"
        if [ "$changed" = 1 ]; then systemctl restart "$@"; else systemctl start "$@"; fi
        say "running: systemctl status $*"
    else
        say "installed and checked; not started"
    fi
}
