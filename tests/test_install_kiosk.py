"""systemd/install-kiosk.sh run for real into a scratch root: what a Pi gets, and that a second run changes nothing.

Real useradd (with --prefix, on the scratch root's /etc/passwd), a real venv built by pip from the lock, the real
`kiosk provision` and `kiosk config check`. Left out here, and only these: apt-get (--skip-packages; the packages
are Debian's own business) and systemctl (no systemd as PID 1 on this machine; with ROOT set the script never
calls it). The units themselves are checked by tests/test_systemd_units.py.
"""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from hub.cli import main as hub_main
from tests.harness import REPO
from tests.installing import check_a_broken_setting_stops_it, run_install, scratch_root, snapshot

CREDSTORE = "etc/credstore/telehealth-kiosk"
STATE = "var/lib/telehealth-kiosk"


def install(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_install("install-kiosk.sh", root, *extra)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str], Path]:
    """One install with a bundle, for every test here (building the venv takes about a minute)."""
    base = tmp_path_factory.mktemp("install")
    root = scratch_root(base, "video:x:44:\nbluetooth:x:112:\n")
    # The configuration as a clinic's IT would have edited it, already in place: the script must keep it.
    (root / "etc" / "telehealth").mkdir()
    shipped = (REPO / "systemd" / "kiosk.yaml").read_text()
    (root / "etc" / "telehealth" / "kiosk.yaml").write_text(
        shipped.replace("/opt/telehealth", f"{root}/opt/telehealth") + "# edited by the clinic\n"
    )
    bundle = base / "lobby-1.bundle"
    argv = ["kiosks", "add", "lobby-1", "--data", str(base / "hub"), "--broker-url", "mqtts://hub.example:8883"]
    assert hub_main([*argv, "--hub-url", "https://hub.example", "--out", str(bundle)]) == 0
    first = install(root, "--bundle", str(bundle))
    return root, first, bundle


def test_the_first_run_installs_everything_and_checks_it(
    installed: tuple[Path, subprocess.CompletedProcess[str], Path],
) -> None:
    root, first, _ = installed
    assert first.returncode == 0, first.stderr + first.stdout
    assert "kiosk lobby-1 -> mqtts://hub.example:8883" in first.stdout, "the config check ran, with the identity"
    passwd = (root / "etc" / "passwd").read_text()
    assert passwd.count("telehealth-kiosk:") == 1 and passwd.count("telehealth-screen:") == 1
    assert "telehealth-kiosk:!:" in passwd and ":/usr/sbin/nologin" in passwd
    groups = {line.split(":")[0]: line.split(":")[3].split(",") for line in (root / "etc/group").read_text().split()}
    assert "telehealth-kiosk" in groups["video"] and "telehealth-kiosk" in groups["bluetooth"]
    assert "telehealth-screen" not in groups["video"] + groups["bluetooth"]
    for unit in ("kiosk-agent.service", "kiosk-browser.service", "kiosk-renew.service", "kiosk-renew.timer"):
        assert (root / "etc/systemd/system" / unit).read_bytes() == (REPO / "systemd" / unit).read_bytes()
    assert (root / "opt/telehealth/venv/bin/kiosk").is_file()
    assert (root / "opt/telehealth/firmware_configs/ble").is_dir()
    assert (root / "etc/telehealth/kiosk.yaml").read_text().endswith("# edited by the clinic\n")


def test_secrets_are_root_only_credentials_and_the_bundle_is_gone(
    installed: tuple[Path, subprocess.CompletedProcess[str], Path],
) -> None:
    root, _, bundle = installed
    assert not bundle.exists(), "the bundle holds secrets: deleted once imported"
    store = root / CREDSTORE
    assert stat.S_IMODE(store.stat().st_mode) == 0o700 and store.stat().st_uid == 0
    for name in ("kiosk.key", "mqtt-password", "hub-credential"):
        secret = store / name
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and secret.stat().st_uid == 0, name
        assert not (root / STATE / "identity" / name).exists(), f"{name} must not be in the data folder"
    kiosk_uid = int(next(x for x in (root / "etc/passwd").read_text().split() if x.startswith("telehealth-kiosk:"))
                    .split(":")[2])  # fmt: skip
    data = root / STATE
    assert data.stat().st_uid == kiosk_uid and stat.S_IMODE(data.stat().st_mode) == 0o700
    assert (data / "identity" / "identity.json").stat().st_uid == kiosk_uid


def test_the_installed_renewal_finds_the_root_only_key_and_waits_for_the_last_30_days(
    installed: tuple[Path, subprocess.CompletedProcess[str], Path],
) -> None:
    """What kiosk-renew.service runs (as root), on what the script installed: a new certificate is not due."""
    root, first, _ = installed
    assert first.returncode == 0
    renew = subprocess.run(
        [str(root / "opt/telehealth/venv/bin/kiosk"), "renew", "--data", str(root / STATE), "--timeout", "1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert renew.returncode == 0, renew.stderr
    assert "kiosk lobby-1: not due: the certificate is valid until" in renew.stdout


def test_running_it_again_changes_nothing(installed: tuple[Path, subprocess.CompletedProcess[str], Path]) -> None:
    root, first, _ = installed
    assert first.returncode == 0
    before = snapshot(root)
    again = install(root)
    assert again.returncode == 0, again.stderr + again.stdout
    assert "installing" not in again.stdout and "creating" not in again.stdout, again.stdout
    after = snapshot(root)
    assert after == before, sorted(set(after.items()) ^ set(before.items()))[:10]


def test_a_broken_configuration_stops_it_with_file_and_line(
    installed: tuple[Path, subprocess.CompletedProcess[str], Path],
) -> None:
    root, first, _ = installed
    assert first.returncode == 0
    check_a_broken_setting_stops_it("install-kiosk.sh", root, "kiosk.yaml", "port: 8090", "port: 80900")
