"""No health data in logs: a whole run at debug level, with planted patient values, and every log is grepped.

Real processes as deployed: `hub serve` (embedded, locked-down Mosquitto; ingest workers), a kiosk provisioned
from its bundle running `kiosk simulate` over TLS, and a malformed message carrying patient text that ingest
must dead-letter. The planted values must reach the database (else the test proves nothing) and appear in no
log: the hub's, the kiosk's, or Mosquitto's.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import ssl
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from device.cli import main as kiosk_main
from device.identity import load_identity
from device.protocol.topics import Topics
from hub.broker import free_port
from hub.cli import main as hub_main
from tests.harness import REPO, wait_until

PLANTED_CODE = "PLANT7731"  # a patient's check-in code
PLANTED_TEXT = "xyzzy-rash-on-left-knee"  # words a patient typed


def _db_has(db: Path, sql: str, *args: object) -> bool:
    if not db.exists():
        return False
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return bool(conn.execute(sql, args).fetchone()[0])
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


def test_a_full_run_at_debug_level_logs_no_planted_patient_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub, kiosk = tmp_path / "hub", tmp_path / "kiosk"
    mqtt_port, http_port, broker_port = free_port(), free_port(), free_port()
    bundle = tmp_path / "k.bundle"
    assert hub_main(["kiosks", "add", "k-plant", "--data", str(hub), "--broker-url",
                     f"mqtts://127.0.0.1:{mqtt_port}", "--out", str(bundle)]) == 0  # fmt: skip
    # As kiosk-agent.service runs it: the secrets kept root-only apart from the data folder, and handed to the
    # process by systemd (LoadCredential=) as a private copy named by $CREDENTIALS_DIRECTORY.
    credstore, credentials = tmp_path / "credstore", tmp_path / "run-credentials"
    assert kiosk_main(["provision", str(bundle), "--data", str(kiosk), "--secrets-dir", str(credstore)]) == 0
    assert not (kiosk / "identity" / "kiosk.key").exists()
    credstore.rename(credentials)  # only the credentials copy is left for the kiosk to find
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    hub_log, kiosk_log = tmp_path / "hub.log", tmp_path / "kiosk.log"
    with hub_log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "-v", "serve", "--data", str(hub), "--broker-port", str(broker_port),
             "--mqtt-port", str(mqtt_port), "--port", str(http_port), "--workers", "1"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        db = hub / "hub.db"
        wait_until(lambda: b"ingest connected" in hub_log.read_bytes(), 30, "the hub's ingest to connect")
        with kiosk_log.open("wb") as out:
            simulate = subprocess.run(
                [sys.executable, "-m", "device.cli", "-v", "simulate", "--data", str(kiosk), "--subjects",
                 PLANTED_CODE, "--count", "40", "--interval", "0.02", "--seed", "3", "--exit-when-drained"],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=120, check=False,
            )  # fmt: skip
        assert simulate.returncode == 0, kiosk_log.read_text()
        _publish_garbage(kiosk)
        wait_until(
            lambda: _db_has(db, "SELECT count(*) FROM observations WHERE subject = ?", PLANTED_CODE), 15, "readings"
        )
        wait_until(
            lambda: _db_has(db, "SELECT count(*) FROM dead_letters WHERE instr(raw, ?) > 0", PLANTED_TEXT.encode()),
            15,
            "the malformed message in dead letters",
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    logs = {
        "hub": hub_log.read_text(errors="replace"),
        "kiosk": kiosk_log.read_text(errors="replace"),
        "mosquitto": (hub / "broker" / "mosquitto.log").read_text(errors="replace"),
    }
    # Both ran with -v (debug level); the kiosk happens to log nothing at debug level itself.
    assert "DEBUG" in logs["hub"] and "connected to mqtts://" in logs["kiosk"], logs
    for name, text in logs.items():
        for planted in (PLANTED_CODE, PLANTED_TEXT):
            assert planted not in text, f"{planted!r} appears in the {name} log"


def _publish_garbage(kiosk: Path) -> None:
    """A message on the kiosk's own topic that fails validation and carries patient text."""
    identity = load_identity(kiosk)
    assert identity is not None
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"{identity.kiosk_id}:garbage",  # the broker binds client ids to the login
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.tls_set(
        ca_certs=str(identity.ca_file),
        certfile=str(identity.cert_file),
        keyfile=str(identity.key_file),
        cert_reqs=ssl.CERT_REQUIRED,
    )
    client.username_pw_set(identity.kiosk_id, identity.mqtt_password())
    client.connect(identity.broker.host, identity.broker.port)
    client.loop_start()
    try:
        body = json.dumps({"kind": "observations", "kiosk": identity.kiosk_id, "subject": PLANTED_CODE,
                           "text": PLANTED_TEXT, "when": time.time()})  # fmt: skip
        client.publish(Topics.uplink(identity.kiosk_id, "observations"), body, qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()
