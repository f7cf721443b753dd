"""The command lines: documented, and clear when given bad input."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from device import cli as kiosk_cli
from hub import cli as hub_cli

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def subcommands(parser: argparse.ArgumentParser) -> list[str]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = subcommands(sub)
                found += [f"{name} {n}" for n in nested] or [name]
    return found


@pytest.mark.parametrize(("prog", "parser"), [("kiosk", kiosk_cli.build_parser()), ("hub", hub_cli.build_parser())])
def test_every_command_is_in_the_readme(prog: str, parser: argparse.ArgumentParser) -> None:
    commands = subcommands(parser)
    assert commands
    for command in commands:
        assert f"`{prog} {command}" in README, f"`{prog} {command}` is not documented in README.md"


def test_readme_starts_with_the_two_commands() -> None:
    head = README[:400]
    assert "make demo" in head and "make test" in head


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], check=False, capture_output=True, text=True, timeout=60)


def test_schema_command_prints_the_contract() -> None:
    out = run("device.cli", "protocol", "schema")
    assert out.returncode == 0
    schema = json.loads(out.stdout)
    kinds = [m["properties"]["kind"] for m in schema["$defs"].values() if "kind" in m.get("properties", {})]
    assert {k.get("const") for k in kinds} >= {"observations", "status"}
    assert schema["$defs"]["Observation"]["required"] == ["code", "value", "unit", "effective", "device"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["device.cli", "run", "--kiosk-id", "a/b"], "is not a valid kiosk id"),
        (["device.cli", "run", "--kiosk-id", "k", "--broker", "http://x"], "must start with mqtt:// or mqtts://"),
        (["hub.cli", "serve", "--broker", "mqtt://h:notaport"], "invalid port"),
    ],
)
def test_bad_arguments_exit_2_with_a_reason(args: list[str], message: str) -> None:
    out = run(*args)
    assert out.returncode == 2
    assert message in out.stderr


def test_outbox_command_on_a_missing_outbox(tmp_path: Path) -> None:
    out = run("device.cli", "outbox", "--data", str(tmp_path))
    assert out.returncode == 2 and "no outbox at" in out.stderr


def test_ble_decode_prints_fields_and_observations() -> None:
    # Temperature Measurement: flags 0x06 (Celsius, time stamp, type), FLOAT 0xFF000178 = 376e-1 = 37.6 Cel,
    # 2026-11-27 10:30:00, type 2 (body).
    out = run("device.cli", "ble", "decode", "0x2A1C", "06 78 01 00 ff ea07 0b 1b 0a 1e 00 02")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["characteristic"] == {"uuid": "0x2a1c", "name": "Temperature Measurement"}
    assert report["fields"]["temperature"] == 37.6
    assert report["fields"]["time_stamp"] == {
        "year": 2026,
        "month": 11,
        "day": 27,
        "hours": 10,
        "minutes": 30,
        "seconds": 0,
    }
    assert report["observations"] == [
        {
            "loinc": "8310-5",
            "value": 37.6,
            "unit": "Cel",
            "device_time": {"year": 2026, "month": 11, "day": 27, "hours": 10, "minutes": 30, "seconds": 0},
            "decimals": 1,
        }
    ]


def test_ble_decode_accepts_the_full_uuid_and_drops_special_values() -> None:
    # Weight 0xFFFF: measurement unsuccessful, so no observation at all.
    out = run("device.cli", "ble", "decode", "00002a9d-0000-1000-8000-00805f9b34fb", "00ffff")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["observations"] == []


@pytest.mark.parametrize(
    ("uuid", "payload", "message"),
    [
        ("2a35", "1e78", "needs 2 byte(s) at offset 1, but only 1 remain"),
        ("2a35", "1e7", "odd number of digits"),
        ("2a35", "zz", "not hexadecimal"),
        ("2aff", "00", "no decoder for characteristic 0x2aff"),
        ("blood", "00", "is not a Bluetooth SIG characteristic UUID"),
    ],
)
def test_ble_decode_rejects_bad_input_with_one_line(uuid: str, payload: str, message: str) -> None:
    out = run("device.cli", "ble", "decode", uuid, payload)
    assert out.returncode == 2
    assert message in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_ble_held_lists_assigns_and_discards(tmp_path: Path) -> None:
    from device.ble.ledger import Ledger
    from device.outbox import Outbox

    observation = {
        "code": "8867-4",
        "value": 64.0,
        "unit": "/min",
        "effective": "2026-11-27T09:00:00+00:00",
        "device": {"id": "ble-cuff", "type": "ble"},
        "flags": [],
    }
    ledger = Ledger(tmp_path / "ble.db")
    first = ledger.hold("ble-cuff", 2, [observation], "not attributed to a patient")
    second = ledger.hold("ble-cuff", 3, [{**observation, "value": 0.0}], "not attributed to a patient")
    ledger.close()
    data = str(tmp_path)

    listed = run("device.cli", "ble", "held", "--data", data)
    assert listed.returncode == 0, listed.stderr
    assert [(h["id"], h["device_user"]) for h in json.loads(listed.stdout)] == [(first, 2), (second, 3)]

    assert run("device.cli", "ble", "held", "--data", data, "--assign", str(first)).returncode == 2  # no patient
    sent = run(
        "device.cli", "ble", "held", "--data", data, "--assign", str(first), "--patient", "P-7", "--kiosk-id", "k1"
    )
    assert sent.returncode == 0, sent.stderr
    items = Outbox(tmp_path / "outbox.db", "k1").pending(0, 10, 1 << 20)
    assert [json.loads(i.body)["payload"]["subject"] for i in items] == ["P-7"]

    # A heart rate of 0 is refused by the contract: it stays held, with the reason on stderr.
    refused = run(
        "device.cli", "ble", "held", "--data", data, "--assign", str(second), "--patient", "P-7", "--kiosk-id", "k1"
    )
    assert refused.returncode == 2 and "outside the plausible range" in refused.stderr
    discarded = run("device.cli", "ble", "held", "--data", data, "--discard", str(second))
    assert discarded.returncode == 0 and "discarded" in discarded.stdout
    assert json.loads(run("device.cli", "ble", "held", "--data", data).stdout) == []


@pytest.mark.parametrize(
    ("value", "message"),
    [("1", "1 s is below the least, 3 s"), ("soon", "'soon' is not a number of seconds"),
     ("nan", "'nan' is not a finite number of seconds")],
)  # fmt: skip
def test_a_consult_connect_timeout_too_short_to_connect_is_refused(
    value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = kiosk_cli.build_parser()
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["serve", "--consult-connect-timeout", value])
    assert exited.value.code == 2 and message in capsys.readouterr().err
    assert parser.parse_args(["serve", "--consult-connect-timeout", "20"]).consult_connect_timeout == 20.0
