"""Running an install script from systemd/ for real into a scratch root, and seeing what it changed."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from tests.harness import REPO


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every path under root with its mode, owner and content hash."""
    found: dict[str, tuple[int, int, str]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else ""
        found[str(path.relative_to(root))] = (info.st_mode, info.st_uid, digest)
    return found


def run_install(script: str, root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`systemd/<script> --skip-packages` with ROOT=root: apt-get and systemctl are the only steps left out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    return subprocess.run(
        ["bash", str(REPO / "systemd" / script), "--skip-packages", *extra],
        env={**env, "ROOT": str(root)}, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def scratch_root(base: Path, groups: str = "") -> Path:
    """A root with just the account files useradd --prefix edits."""
    root = base / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc" / "group").write_text("root:x:0:\n" + groups)
    return root


def check_a_broken_setting_stops_it(script: str, root: Path, name: str, good: str, bad: str) -> None:
    """With line `good` of the installed /etc/telehealth/`name` made `bad`, the script fails naming file and line,
    and starts nothing; the file is put back after."""
    config = root / "etc/telehealth" / name
    text = config.read_text()
    try:
        config.write_text(text.replace(good, bad))
        broken = run_install(script, root)
        assert broken.returncode != 0
        line = 1 + text.splitlines().index(good)
        assert f"{config}:{line}:" in broken.stderr, broken.stderr
        assert "not started" not in broken.stdout
    finally:
        config.write_text(text)
