"""`hub kiosks add` -> bundle -> `kiosk provision`: what is kept, how, and what is refused (no broker needed)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import stat
import time
from pathlib import Path

import pytest

from device.cli import main as kiosk_main
from device.identity import IdentityError, import_bundle, load_identity
from device.outbox import Outbox
from device.simulate import single_reading
from hub.cli import main as hub_main
from hub.db import Location
from hub.fleet.broker_auth import INGEST_USER, mosquitto_hash
from hub.fleet.pki import HubCA
from tests.harness import hub_store_args

BROKER = "mqtts://hub.example:8883"


def _add(tmp_path: Path, kiosk: str, *extra: str) -> Path:
    out = tmp_path / f"{kiosk}.bundle"
    argv = ["kiosks", "add", kiosk, "--data", str(tmp_path / "hub"), "--broker-url", BROKER, "--out", str(out)]
    assert hub_main([*argv, *extra]) == 0
    return out


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_bundle_imports_into_owner_only_files_and_the_agent_needs_no_identity_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = _add(tmp_path, "kiosk-7", "--hub-url", "https://hub.example")
    assert _mode(bundle) == 0o600
    secret = json.loads(bundle.read_text())["mqtt_password"]
    capsys.readouterr()
    assert kiosk_main(["provision", str(bundle), "--data", str(tmp_path / "kiosk")]) == 0
    out = capsys.readouterr().out
    assert "kiosk kiosk-7 provisioned" in out and secret not in out
    identity = load_identity(tmp_path / "kiosk")
    assert identity is not None
    assert (identity.kiosk_id, str(identity.broker), identity.hub_url) == ("kiosk-7", BROKER, "https://hub.example")
    assert identity.mqtt_password() == secret
    for private in (identity.key_file, identity.mqtt_password_file, identity.hub_credential_file):
        assert _mode(private) == 0o600, private
    assert _mode(identity.folder) == 0o700
    # The hub keeps only the hash of the password, in the form Mosquitto's password file takes.
    passwd = (tmp_path / "hub" / "broker" / "auth" / "passwd").read_text()
    assert secret not in passwd
    _user, hashed = next(line for line in passwd.splitlines() if line.startswith("kiosk-7:")).split(":", 1)
    _, _, iterations, salt, _ = hashed.split("$")
    assert mosquitto_hash(secret, salt=base64.b64decode(salt), iterations=int(iterations)) == hashed
    assert any(line.startswith(f"{INGEST_USER}:") for line in passwd.splitlines())


def _bundle_json(tmp_path: Path, kiosk: str = "kiosk-1") -> dict[str, object]:
    return dict(json.loads(_add(tmp_path, kiosk).read_text()))


def _refused(tmp_path: Path, bundle: dict[str, object], message: str) -> None:
    with pytest.raises(IdentityError, match=message):
        import_bundle(json.dumps(bundle).encode(), tmp_path / "kiosk")
    assert load_identity(tmp_path / "kiosk") is None, "nothing is kept from a refused bundle"


def test_bundles_whose_parts_do_not_belong_together_are_refused(tmp_path: Path) -> None:
    good = _bundle_json(tmp_path, "kiosk-1")
    other = _bundle_json(tmp_path, "kiosk-2")
    stranger = HubCA(tmp_path / "stranger")
    forged = stranger.issue_kiosk("kiosk-1")

    _refused(tmp_path, {**good, "kiosk_id": "kiosk-2"}, "names \\['kiosk-1'\\], not kiosk 'kiosk-2'")
    _refused(tmp_path, {**good, "key_pem": other["key_pem"]}, "private key does not match")
    _refused(tmp_path, {**good, "cert_pem": forged.cert_pem.decode(), "key_pem": forged.key_pem.decode()},
             "not issued by this kiosk's CA")  # fmt: skip
    _refused(tmp_path, {**good, "broker": "mqtt://hub.example:1883"}, "not mqtts://")
    _refused(tmp_path, {**good, "format": "something-else"}, "not a provisioning bundle: format")
    _refused(tmp_path, {**good, "mqtt_password": "short"}, "mqtt_password")
    with pytest.raises(IdentityError, match="not a provisioning bundle"):
        import_bundle(b"\x00garbage", tmp_path / "kiosk")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=5000)
    with pytest.raises(IdentityError, match="check the kiosk's clock"):
        import_bundle(json.dumps(good).encode(), tmp_path / "kiosk", now=later)


def test_a_refused_bundle_error_never_echoes_its_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _bundle_json(tmp_path)
    bad = {**good, "mqtt_password": 12345, "extra": good["key_pem"]}
    path = tmp_path / "bad.bundle"
    path.write_text(json.dumps(bad))
    capsys.readouterr()
    assert kiosk_main(["provision", str(path), "--data", str(tmp_path / "kiosk")]) == 2
    err = capsys.readouterr().err
    assert "kiosk provision: not a provisioning bundle" in err
    assert "PRIVATE KEY" not in err and str(good["key_pem"])[40:80] not in err


def test_reprovisioning_as_another_kiosk_waits_for_the_outbox_to_drain(tmp_path: Path) -> None:
    kiosk = tmp_path / "kiosk"
    assert kiosk_main(["provision", str(_add(tmp_path, "kiosk-1")), "--data", str(kiosk)]) == 0
    box = Outbox(kiosk / "outbox.db", "kiosk-1")
    box.enqueue("observations", single_reading(random.Random(1), dt.datetime.now(dt.UTC)))
    box.close()
    assert kiosk_main(["provision", str(_add(tmp_path, "kiosk-2")), "--data", str(kiosk)]) == 2
    identity = load_identity(kiosk)
    assert identity is not None and identity.kiosk_id == "kiosk-1"
    # The same kiosk's new bundle (a replaced certificate) is fine at any time.
    assert kiosk_main(["provision", str(_add(tmp_path, "kiosk-1")), "--data", str(kiosk)]) == 0


def test_an_unprovisioned_kiosk_without_an_id_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert kiosk_main(["run", "--data", str(tmp_path / "kiosk")]) == 2
    assert "not provisioned: run `kiosk provision BUNDLE` or give --kiosk-id" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["kiosks", "add", "kiosk 1"], "not a usable kiosk id"),
        (["kiosks", "add", INGEST_USER], "not a usable kiosk id"),
        (["kiosks", "add", "kiosk-1", "--clinic", "nowhere"], "no clinic 'nowhere'"),
        (["kiosks", "revoke", "never-added"], "has no live identity"),
    ],
)
def test_hub_refuses_bad_provisioning_requests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str, hub_database: Location
) -> None:
    extra = ["--broker-url", BROKER, "--out", str(tmp_path / "b")] if argv[1] == "add" else []
    assert hub_main([*argv, *hub_store_args(tmp_path / "hub", hub_database), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_plain_mqtt_broker_urls_are_refused_for_kiosks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["kiosks", "add", "kiosk-1", "--data", str(tmp_path / "hub"), "--broker-url", "mqtt://hub:1883"]
    assert hub_main([*argv, "--out", str(tmp_path / "b")]) == 2
    assert "must be mqtts://" in capsys.readouterr().err


def test_the_ca_key_is_owner_only_and_reused(tmp_path: Path) -> None:
    _add(tmp_path, "kiosk-1")
    ca_key = tmp_path / "hub" / "pki" / "ca.key"
    first = ca_key.read_bytes()
    assert _mode(ca_key) == 0o600
    time.sleep(0.01)
    _add(tmp_path, "kiosk-2")
    assert ca_key.read_bytes() == first


def test_a_kiosk_given_several_brokers_gets_them_all_in_order_and_an_older_reader_the_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--broker-url` repeated: the bundle lists every broker (the published schema's `brokers`), `broker` is the
    first, and the kiosk keeps them in that order; a broker given twice is refused before anything is issued."""
    out = tmp_path / "b.json"
    first, second = "mqtts://hub-a.example:8883", "mqtts://hub-b.example:8883"
    argv = ["kiosks", "add", "kiosk-2", "--data", str(tmp_path / "hub"), "--broker-url", first, "--broker-url", second]
    assert hub_main([*argv, "--out", str(out)]) == 0
    bundle = json.loads(out.read_bytes())
    assert bundle["broker"] == first and bundle["brokers"] == [first, second]
    identity = import_bundle(out.read_bytes(), tmp_path / "kiosk")
    assert [str(b) for b in identity.brokers] == [first, second]
    twice = ["kiosks", "add", "kiosk-3", "--data", str(tmp_path / "hub"), "--broker-url", first, "--broker-url", first]
    assert hub_main([*twice, "--out", str(tmp_path / "c.json")]) == 2
    assert "listed twice" in capsys.readouterr().err
    assert not (tmp_path / "c.json").exists()
