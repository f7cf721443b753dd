"""systemd/install-hub.sh run for real into a scratch root: what a hub machine gets, and that a second run changes
nothing.

Real useradd (with --prefix), a real venv built by pip from the lock, the real `hub config check`. Left out, as
for the kiosk's script: apt-get (--skip-packages) and systemctl (no systemd as PID 1 here; with ROOT set the
script never calls it). The unit itself is checked by tests/test_systemd_units.py.
"""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from tests.harness import REPO
from tests.installing import check_a_broken_setting_stops_it, run_install, scratch_root, snapshot

Installed = tuple[Path, subprocess.CompletedProcess[str]]


def install(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_install("install-hub.sh", root, *extra)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """One first install on a bare machine, for every test here (building the venv takes about a minute)."""
    root = scratch_root(tmp_path_factory.mktemp("install-hub"), "video:x:44:\n")
    return root, install(root)


def test_the_first_run_installs_everything_and_checks_the_configuration(installed: Installed) -> None:
    root, first = installed
    assert first.returncode == 0, first.stderr + first.stdout
    config = root / "etc/telehealth/hub.yaml"
    assert f"{config}: ok;" in first.stdout, "the configuration was checked by the installed hub"
    assert "not started" in first.stdout
    accounts = [line.split(":") for line in (root / "etc/passwd").read_text().split("\n") if line]
    (hub,) = [a for a in accounts if a[0] == "telehealth-hub"]
    assert hub[6] == "/usr/sbin/nologin" and int(hub[2]) < 1000, "a system user that cannot log in"
    groups = [line.split(":") for line in (root / "etc/group").read_text().split("\n") if line]
    assert [g[0] for g in groups if "telehealth-hub" in g[3].split(",")] == [], "a member of no other group"
    assert ["telehealth-hub", hub[3]] in [[g[0], g[2]] for g in groups], "its own group"
    assert (root / "etc/systemd/system/hub.service").read_bytes() == (REPO / "systemd/hub.service").read_bytes()
    assert config.read_bytes() == (REPO / "systemd/hub.yaml").read_bytes()
    assert (root / "opt/telehealth/venv/bin/hub").is_file()
    store = root / "etc/credstore/telehealth-hub"
    assert stat.S_IMODE(store.stat().st_mode) == 0o700 and store.stat().st_uid == 0


def test_running_it_again_changes_nothing_and_keeps_the_clinics_edits(installed: Installed) -> None:
    root, first = installed
    assert first.returncode == 0
    config = root / "etc/telehealth/hub.yaml"
    config.write_text(config.read_text().replace("port: 8080", "port: 8443") + "# edited by the clinic\n")
    before = snapshot(root)
    again = install(root)
    assert again.returncode == 0, again.stderr + again.stdout
    assert "installing" not in again.stdout and "creating" not in again.stdout, again.stdout
    assert snapshot(root) == before
    assert "http://127.0.0.1:8443," in again.stdout, "the edited configuration is the one checked"


def test_a_broken_configuration_stops_it_with_file_and_line(installed: Installed) -> None:
    root, first = installed
    assert first.returncode == 0
    check_a_broken_setting_stops_it("install-hub.sh", root, "hub.yaml", "mqtt_port: 8883", "mqtt_port: 88830")
