"""The broker plugin (`kiosk_guard.c`) that binds a kiosk's certificate, login and client id, built once here.

Mosquitto 2.0's password and ACL files cannot say that the certificate must name the login, that a
client id belongs to one login, that a kiosk may not join a shared subscription or publish retained
uplinks, or that a revoked kiosk leaves with its last will (issue 18). The plugin says it in a hundred
lines of C against the broker's plugin API; this module compiles it with the system's C compiler into a
folder, once per version of its source (the file name carries the source's hash), so a start with
nothing changed writes nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("kiosk_guard.c")
# Where a compiled plugin is kept when the caller names no folder (tests share one across brokers).
CACHE_ENV = "TELEHEALTH_BROKER_PLUGIN_CACHE"
DEBIAN_PACKAGES = ("gcc", "libc6-dev", "mosquitto-dev", "libmosquitto-dev", "libssl-dev")


class BrokerPluginError(RuntimeError):
    """The plugin cannot be built; the message says what to install."""


def plugin_folder(default: Path) -> Path:
    return Path(os.environ.get(CACHE_ENV) or default)


def ensure_kiosk_guard(folder: Path) -> Path:
    """The compiled plugin in `folder`, built first if this version of the source has not been."""
    source = SOURCE.read_bytes()
    target = folder / f"kiosk_guard-{hashlib.sha256(source).hexdigest()[:16]}.so"
    if target.exists():
        return target
    compiler = shutil.which("cc") or shutil.which("gcc")
    hint = f"install Debian's {' '.join(DEBIAN_PACKAGES)} (`make broker` and systemd/install-hub.sh do)"
    if compiler is None:
        raise BrokerPluginError(f"no C compiler to build the broker plugin {SOURCE.name}: {hint}")
    folder.mkdir(parents=True, exist_ok=True)
    # Built beside the target and renamed: a broker never loads half a file, and two builders racing
    # (parallel test workers) each rename a whole one.
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".so.tmp", delete=False) as tmp:
        partial = Path(tmp.name)
    try:
        done = subprocess.run(
            [compiler, "-O2", "-Wall", "-shared", "-fPIC", "-o", str(partial), str(SOURCE), "-lcrypto"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise BrokerPluginError(f"could not build the broker plugin {SOURCE.name} ({hint}):\n{done.stderr}")
        partial.chmod(0o644)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target
