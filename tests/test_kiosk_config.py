"""`kiosk config check` and `kiosk serve --config`: every problem with its file and line, before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from device import kiosk_config
from device.cli import build_parser
from device.cli import main as kiosk_main

REPO = Path(__file__).resolve().parents[1]
GOOD = f"""\
port: 8091
ble: virtual
profiles: {REPO / "firmware_configs" / "ble"}
camera_profile: {REPO / "firmware_configs" / "kiosk" / "video-file.yaml"}
idle_timeout: 90
idle_warning: 20
clinic_name: North clinic
"""


def test_a_good_file_is_summarised(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "kiosk.yaml"
    path.write_text(GOOD)
    assert kiosk_main(["config", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{path}: ok; screen on 127.0.0.1:8091, Bluetooth virtual" in out and "device profile(s)" in out


def test_every_problem_is_reported_with_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken_profiles = tmp_path / "ble"
    broken_profiles.mkdir()
    (broken_profiles / "cuff.yaml").write_text("id: cuff\nkind: not-a-kind\n")
    path = tmp_path / "kiosk.yaml"
    path.write_text(
        "port: 70000\n"  # line 1
        "ble: bleak\n"
        "profiles: ble\n"  # relative to the file: the broken folder above
        "camera_profile: nowhere.yaml\n"  # line 4
        "idle_timeout: 60\n"
        "colour: blue\n"  # line 6
    )
    assert kiosk_main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:1: " in err and "port" in err
    assert f"{path}:6: " in err and "colour" in err
    # The model's errors come first; the files it names are checked once the file itself is valid.
    fixed = path.read_text().replace("port: 70000", "port: 8090").replace("colour: blue\n", "")
    path.write_text(fixed)
    assert kiosk_main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:4: no such file {tmp_path / 'nowhere.yaml'}" in err
    assert f"{broken_profiles / 'cuff.yaml'}:" in err, err  # the named profile's own problems, with its file


def test_the_idle_warning_must_fit_in_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "kiosk.yaml"
    path.write_text("ble: off\nidle_timeout: 30\nidle_warning: 30\n")
    with pytest.raises(kiosk_config.ConfigError, match=r"idle_warning \(30 s\) must be shorter than idle_timeout"):
        kiosk_config.check(path)


def test_an_unprovisioned_data_folder_is_a_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "kiosk.yaml"
    path.write_text("ble: off\n")
    assert kiosk_main(["config", "check", str(path), "--data", str(tmp_path / "kiosk")]) == 2
    assert "not provisioned: run `kiosk provision BUNDLE`" in capsys.readouterr().err


def test_serve_takes_the_file_and_flags_win(tmp_path: Path) -> None:
    path = tmp_path / "kiosk.yaml"
    path.write_text(GOOD)
    checked = kiosk_config.check(path)
    args = build_parser(checked.as_defaults()).parse_args(["serve", "--config", str(path), "--port", "9000"])
    assert args.port == 9000  # the flag
    assert (args.idle_timeout, args.idle_warning, args.ble, args.clinic_name) == (90, 20, "virtual", "North clinic")
    assert not args.no_camera and args.camera_profile == REPO / "firmware_configs" / "kiosk" / "video-file.yaml"


def test_serve_refuses_to_start_on_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "kiosk.yaml"
    path.write_text("ble: sometimes\n")
    assert kiosk_main(["serve", "--config", str(path), "--kiosk-id", "k1", "--data", str(tmp_path / "k")]) == 2
    assert f"{path}:1: " in capsys.readouterr().err
