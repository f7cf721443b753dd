"""Writing a file so that a crash leaves the old one or the new one, never half of each, and never readable by others
when it should not be: secrets and certificates (kiosk identity, the hub's CA and broker files) and applied settings."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """`mode` applies from the first byte (no window where the file is world-readable); replaced by rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # an older leftover tmp file keeps its mode through O_CREAT
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
