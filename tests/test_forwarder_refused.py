"""A kiosk the broker will not let in backs off like any other failure, and says why (issue 18, point 9).

Against a real Mosquitto: a password-protected one refusing a wrong password (CONNACK "Not authorized"),
the fleet's TLS broker refusing a revoked certificate (a TLS alert after the handshake), and a listener
that closes every connection after CONNECT. Before the fix each of these reconnected at once, thousands of
times a second, logging a line per attempt (or, for the certificate, nothing at all). Each test counts
attempts and log lines over a fixed window: with backoff starting at 0.5 s only a handful fit in it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from device.agent import AgentConfig, KioskAgent
from device.forwarder import Forwarder, ForwarderConfig
from device.outbox import Outbox
from device.protocol.endpoints import BrokerUrl
from device.protocol.retry import Backoff
from hub.broker import find_mosquitto, free_port, wait_for_port
from hub.cli import main as hub_main
from hub.fleet.broker_auth import mosquitto_hash
from tests.fleet import Fleet
from tests.harness import wait_until

WINDOW_S = 3.0
# Attempts that fit in WINDOW_S with the default backoff (0.5 s doubling, half jitter): the first at 0,
# then after at least 0.25, 0.5, 1 and 2 s. Before the fix: thousands.
MAX_ATTEMPTS = 6
KIOSK = "kiosk-x"
KIOSK_A = "kiosk-a"  # one of the fleet fixture's kiosks (tests/fleet.py)
BROKER_REFUSED = "broker_refused"  # the status alert's code: part of the contract, so spelled out here


@dataclass
class PasswordBroker:
    """A plaintext Mosquitto that wants a password (`allow_anonymous false`) and logs every new connection."""

    url: BrokerUrl
    passwd: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def set_password(self, user: str, password: str) -> None:
        """Rewrite the password file and SIGHUP the broker, which re-reads it."""
        self.passwd.write_text(f"{user}:{mosquitto_hash(password)}\n")
        self.proc.send_signal(signal.SIGHUP)

    def connections(self) -> int:
        """CONNECT attempts as the broker saw them (one TCP connection each)."""
        return self.log.read_text(errors="replace").count("New connection from")


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[PasswordBroker]:
    folder = tmp_path / "broker"
    folder.mkdir()
    port = free_port()
    passwd = folder / "passwd"
    passwd.write_text(f"{KIOSK}:{mosquitto_hash('the-right-password')}\n")
    passwd.chmod(0o600)
    conf = folder / "mosquitto.conf"
    conf.write_text(
        "\n".join(
            [
                f"listener {port} 127.0.0.1",
                "allow_anonymous false",
                f"password_file {passwd}",
                f"user {pwd.getpwuid(os.getuid()).pw_name}",
                "persistence false",
                "log_dest stderr",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "connection_messages true",
                "",
            ]
        )
    )
    log = folder / "mosquitto.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [find_mosquitto(), "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        wait_for_port("127.0.0.1", port)
        yield PasswordBroker(BrokerUrl.parse(f"mqtt://127.0.0.1:{port}"), passwd, log, proc)
    finally:
        proc.terminate()
        proc.wait(10)


def _agent(data: Path, broker: BrokerUrl, *, backoff: Backoff | None = None, **overrides: Any) -> KioskAgent:
    config = AgentConfig(kiosk_id=KIOSK, broker=broker, data_dir=data, heartbeat_s=3600.0, **overrides)
    agent = KioskAgent(config)
    if backoff is not None:
        agent.forwarder.config.reconnect = backoff
    return agent


def _forwarder_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the forwarder logged at WARNING or above: what an operator reads."""
    return [r.getMessage() for r in caplog.records if r.name == "device.forwarder" and r.levelno >= logging.WARNING]


def _queued_status_alerts(outbox: Outbox) -> list[dict[str, Any]]:
    """The alerts of the status waiting in the outbox (coalesced: there is at most one)."""
    statuses = [json.loads(item.body) for item in outbox.pending(0, 1000, 16 << 20) if item.kind == "status"]
    return list(statuses[-1]["payload"]["alerts"]) if statuses else []


def _failed_attempts(agent: KioskAgent) -> int:
    problem = agent.forwarder.link_problem
    return problem.attempts if problem is not None else 0


def _codes(alerts: list[dict[str, Any]]) -> list[str]:
    return [a["code"] for a in alerts]


def test_a_kiosk_with_a_wrong_password_backs_off_logs_once_and_says_why(
    tmp_path: Path, password_broker: PasswordBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="device.forwarder")
    agent = _agent(tmp_path / "kiosk", password_broker.url, username=KIOSK, password="a-wrong-password")
    agent.start()
    try:
        time.sleep(WINDOW_S)
        attempts = password_broker.connections()
        stats = agent.forwarder.stats
        lines = _forwarder_lines(caplog)
        assert 2 <= attempts <= MAX_ATTEMPTS, f"{attempts} CONNECT attempts in {WINDOW_S} s"
        assert stats.connect_attempts <= MAX_ATTEMPTS and stats.connects == 0
        assert len(lines) == 1, lines  # one line for the whole run of identical refusals
        assert "Not authorized" in lines[0] and "revoked, or wrong credentials?" in lines[0], lines
        assert not agent.forwarder.connected.is_set()

        problem = agent.forwarder.link_problem
        assert problem is not None and problem.code == BROKER_REFUSED and problem.attempts >= 2
        alerts = [a for a in agent.alerts() if a.code == BROKER_REFUSED]
        assert len(alerts) == 1 and "Not authorized" in alerts[0].message, agent.alerts()
        # A status made now (what the heartbeat does) carries it for the hub, to read once the kiosk is let in.
        agent.send_status()
        (queued,) = [a for a in _queued_status_alerts(agent.outbox) if a["code"] == BROKER_REFUSED]
        assert "Not authorized" in queued["message"]
    finally:
        agent.stop()


def test_a_kiosk_let_in_again_connects_and_its_refusal_clears(
    tmp_path: Path, password_broker: PasswordBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="device.forwarder")
    # A short cap keeps the wait for the next attempt after the fix short; the rule under test is the same.
    agent = _agent(
        tmp_path / "kiosk",
        password_broker.url,
        backoff=Backoff(initial_s=0.2, maximum_s=1.0),
        username=KIOSK,
        password="the-new-password",
    )
    agent.start()
    try:
        wait_until(lambda: _failed_attempts(agent) >= 2, 5, "two refused attempts")
        assert BROKER_REFUSED in [a.code for a in agent.alerts()]
        agent.send_status()  # a heartbeat during the refusal
        assert BROKER_REFUSED in _codes(_queued_status_alerts(agent.outbox))
        password_broker.set_password(KIOSK, "the-new-password")  # the hub re-provisioned it, say
        assert agent.forwarder.connected.wait(8), "the kiosk did not connect once its password was valid"

        assert agent.forwarder.link_problem is None
        assert BROKER_REFUSED not in [a.code for a in agent.alerts()]
        # The status made while refused is followed at once by a fresh one without the alert.
        wait_until(lambda: BROKER_REFUSED not in _codes(_queued_status_alerts(agent.outbox)), 5, "a fresh status")
        infos = [r.getMessage() for r in caplog.records if r.name == "device.forwarder"]
        recovered = [m for m in infos if m.startswith("connected to") and "failed attempt" in m]
        assert len(recovered) == 1 and "Not authorized" in recovered[0], infos
        refusals = [m for m in _forwarder_lines(caplog) if "Not authorized" in m]
        assert len(refusals) == 1, refusals
    finally:
        agent.stop()


@pytest.fixture
def closing_listener() -> Iterator[tuple[BrokerUrl, list[int]]]:
    """A listener that reads the CONNECT and closes the connection without a CONNACK; counts connections."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    accepted = [0]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            accepted[0] += 1
            with conn:
                conn.settimeout(1.0)
                with contextlib.suppress(OSError):
                    conn.recv(4096)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield BrokerUrl.parse(f"mqtt://127.0.0.1:{server.getsockname()[1]}"), accepted
    finally:
        stop.set()
        thread.join(5)
        server.close()


def test_a_broker_closing_the_connection_after_connect_is_backed_off_too(
    tmp_path: Path, closing_listener: tuple[BrokerUrl, list[int]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="device.forwarder")
    url, accepted = closing_listener
    outbox = Outbox(tmp_path / "outbox.db", KIOSK)
    forwarder = Forwarder(outbox, ForwarderConfig(kiosk_id=KIOSK, broker=url))
    thread = threading.Thread(target=forwarder.run, daemon=True)
    thread.start()
    try:
        time.sleep(WINDOW_S)
        assert 2 <= accepted[0] <= MAX_ATTEMPTS, f"{accepted[0]} connections in {WINDOW_S} s"
        lines = _forwarder_lines(caplog)
        assert len(lines) == 1 and "closed the connection" in lines[0], lines
        problem = forwarder.link_problem
        assert problem is not None and problem.code == BROKER_REFUSED and problem.attempts >= 2
        alert = problem.alert()
        assert alert is not None and "closed the connection" in alert.message
    finally:
        forwarder.stop()
        thread.join(10)
        forwarder.close()
        outbox.close()


def test_a_revoked_kiosk_backs_off_and_says_its_certificate_was_refused(
    tmp_path: Path, fleet: Fleet, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused at TLS: the broker checks the certificate against its revocation list after the handshake (TLS
    1.3), so the kiosk sees a TLS alert on its first read. Before the fix that was silent, and immediate."""
    caplog.set_level(logging.INFO, logger="device.forwarder")
    assert hub_main(["kiosks", "revoke", KIOSK_A, "--data", str(fleet.hub)]) == 0
    fleet.broker.stop()  # Mosquitto reads its revocation list when its listener starts
    fleet.broker.start()
    attempts = [0]
    connect = mqtt.Client.connect

    def counted(self: mqtt.Client, *args: Any, **kwargs: Any) -> Any:
        attempts[0] += 1
        return connect(self, *args, **kwargs)

    monkeypatch.setattr(mqtt.Client, "connect", counted)
    ident = fleet.identities[KIOSK_A]
    agent = KioskAgent(
        AgentConfig(
            kiosk_id=KIOSK_A,
            broker=fleet.kiosk_url,
            data_dir=tmp_path / "kiosk",
            heartbeat_s=3600.0,
            ca_file=str(ident.ca_file),
            cert_file=str(ident.cert_file),
            key_file=str(ident.key_file),
            username=KIOSK_A,
            password=ident.mqtt_password(),
        )
    )
    agent.start()
    try:
        time.sleep(WINDOW_S)
        assert 2 <= attempts[0] <= MAX_ATTEMPTS, f"{attempts[0]} connection attempts in {WINDOW_S} s"
        # One line; at most one more if the first attempts only saw the socket close and a later one the
        # broker's TLS alert (which of the two a kiosk sees is a race between the broker's close and its CONNECT).
        lines = _forwarder_lines(caplog)
        assert 1 <= len(lines) <= 2 and all("certificate revoked" in line for line in lines), lines
        alerts = [a for a in agent.alerts() if a.code == BROKER_REFUSED]
        assert len(alerts) == 1 and "certificate revoked" in alerts[0].message, agent.alerts()
    finally:
        agent.stop()
