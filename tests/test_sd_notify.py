"""The services speak systemd's notify protocol: READY once up, watchdog pings while healthy, STOPPING on the way out.

The test plays systemd's part: it binds the notify socket, sets $NOTIFY_SOCKET and $WATCHDOG_USEC
for the real `kiosk run` and `hub serve` processes, and reads what they send.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.protocol import sd_notify
from device.protocol.endpoints import BrokerUrl
from hub.broker import free_port
from tests.harness import REPO


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.5)
    try:
        yield sock, path
    finally:
        sock.close()


def _collect(sock: socket.socket, until: float, stop_when: str, times: int = 1) -> list[str]:
    """What the service sent, until `stop_when` has come `times` times or the deadline passed."""
    seen: list[str] = []
    while time.monotonic() < until and seen.count(stop_when) < times:
        try:
            seen.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
    return seen


def test_no_socket_no_notification(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert sd_notify.notify("READY=1") is False
    assert sd_notify.watchdog_interval_s() is None


def test_watchdog_interval_is_half_the_units_and_only_for_the_named_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert sd_notify.watchdog_interval_s() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sd_notify.watchdog_interval_s() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert sd_notify.watchdog_interval_s() is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    monkeypatch.setenv("WATCHDOG_USEC", "soon")
    assert sd_notify.watchdog_interval_s() is None


def _start(argv: list[str], notify_path: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "400000", "PYTHONUNBUFFERED": "1"}
    env.pop("WATCHDOG_PID", None)
    return subprocess.Popen(
        [sys.executable, "-m", *argv], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


@pytest.mark.parametrize("service", ["kiosk run", "hub serve"])
def test_services_report_ready_ping_the_watchdog_and_say_when_stopping(
    tmp_path: Path, broker_url: BrokerUrl, notify_socket: tuple[socket.socket, str], service: str
) -> None:
    sock, path = notify_socket
    if service == "kiosk run":
        argv = ["device.cli", "run", "--kiosk-id", "k1", "--broker", str(broker_url), "--data", str(tmp_path / "k")]
    else:
        argv = ["hub.cli", "serve", "--data", str(tmp_path / "hub"), "--broker", str(broker_url),
                "--workers", "1", "--port", str(free_port())]  # fmt: skip
    proc = _start(argv, path)
    try:
        seen = _collect(sock, time.monotonic() + 30, "WATCHDOG=1", times=3)
        assert seen[:1] == ["READY=1"], seen
        assert seen.count("WATCHDOG=1") >= 3, seen
        proc.send_signal(signal.SIGTERM)
        stopping = _collect(sock, time.monotonic() + 15, "STOPPING=1")
        assert "STOPPING=1" in stopping, stopping
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
