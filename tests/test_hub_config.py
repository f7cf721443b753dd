"""`hub config check` and `hub serve --config`: problems named by file and line, before the hub starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub import hub_config
from hub.cli import build_parser
from hub.cli import main as hub_main
from hub.fleet.pki import HubCA

ROOT = Path(__file__).resolve().parents[1]


def _https_pair(folder: Path) -> tuple[Path, Path]:
    issued = HubCA(folder / "ca").issue_server(["hub.example"])
    cert, key = folder / "https.pem", folder / "https.key"
    cert.write_bytes(issued.cert_pem)
    key.write_bytes(issued.key_pem)
    return cert, key


def test_the_shipped_file_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert hub_main(["config", "check", str(ROOT / "systemd" / "hub.yaml")]) == 0
    assert "ok; http://127.0.0.1:8080" in capsys.readouterr().out


def test_every_problem_is_reported_with_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cert, _ = _https_pair(tmp_path)
    other_key = tmp_path / "other.key"
    other_key.write_bytes(HubCA(tmp_path / "ca2").issue_server(["x"]).key_pem)
    path = tmp_path / "hub.yaml"
    path.write_text(
        "host: 0.0.0.0\n"  # 1: off loopback: needs TLS (given, but see line 3)
        "tls_cert: https.pem\n"  # 2: relative to the file
        f"tls_key: {other_key}\n"  # 3: not the certificate's key
        "turn_url: [turn:t.example:3478]\n"  # 4: no secret file
        "broker: mqtt://broker.example:1883\n"  # 5: plaintext off this machine
        "broker_ca: missing-ca.pem\n"  # 6
    )
    assert hub_main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    for line, words in ((3, "does not go with the certificate"), (4, "turn_secret_file"), (5, "must be mqtts://"),
                        (6, f"no such file {tmp_path / 'missing-ca.pem'}")):  # fmt: skip
        assert f"{path}:{line}: " in err and words in err, (line, err)
    assert cert.exists()
    path.write_text("host: 0.0.0.0\nworkers: 0\ncolour: blue\n")
    assert hub_main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2: " in err and f"{path}:3: " in err


def test_off_loopback_without_tls_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text("port: 8443\nhost: 192.0.2.10\n")
    with pytest.raises(hub_config.ConfigError, match=rf"{path}:2: serving on 192.0.2.10 needs tls_cert"):
        hub_config.check(path)


def test_serve_takes_the_file_and_flags_win(tmp_path: Path) -> None:
    cert, key = _https_pair(tmp_path)
    path = tmp_path / "hub.yaml"
    path.write_text(
        f"host: 0.0.0.0\nport: 8443\ntls_cert: {cert}\ntls_key: {key}\nmqtt_name: [hub.example]\nworkers: 1\n"
    )
    checked = hub_config.check(path)
    args = build_parser(checked.as_defaults()).parse_args(["serve", "--config", str(path), "--port", "9443"])
    assert (args.host, args.port, args.tls_cert, args.mqtt_name, args.workers) == ("0.0.0.0", 9443, cert,
                                                                                   ["hub.example"], 1)  # fmt: skip


def test_serve_refuses_to_start_on_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text("port: eighty\n")
    assert hub_main(["serve", "--config", str(path)]) == 2
    assert f"{path}:1: " in capsys.readouterr().err


def test_secrets_may_be_systemd_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`credential:NAME` is read from $CREDENTIALS_DIRECTORY, which systemd fills from hub.service's LoadCredential=."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    _https_pair(credentials)
    path = tmp_path / "hub.yaml"
    path.write_text("host: 0.0.0.0\ntls_cert: credential:https.pem\ntls_key: credential:https.key\n")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert hub_main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2: credential:https.pem is a systemd credential" in err, err
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    checked = hub_config.check(path)
    assert checked.config.tls_key == credentials / "https.key" and "https://0.0.0.0:8080" in checked.summary
