"""A real TURN server (Debian's coturn) on loopback for the relay-only consult tests, with time-limited
credentials in coturn's REST scheme (the same scheme the hub hands to kiosks and browsers)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from device.protocol.signaling import IceServer


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers_stun(port: int) -> bool:
    """A STUN Binding request (RFC 5389 header, no attributes): the server is up when it answers."""
    request = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + secrets.token_bytes(12)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        s.sendto(request, ("127.0.0.1", port))
        try:
            reply = s.recv(2048)
        except OSError:
            return False
    return reply[:2] == b"\x01\x01" and reply[8:20] == request[8:20]


@dataclass(frozen=True)
class Turn:
    port: int
    secret: str
    log: Path

    def ice_server(self, name: str = "test", lifetime_s: int = 3600) -> IceServer:
        username = f"{int(time.time()) + lifetime_s}:{name}"
        credential = base64.b64encode(hmac.new(self.secret.encode(), username.encode(), hashlib.sha1).digest())
        return IceServer(urls=[f"turn:127.0.0.1:{self.port}?transport=udp"], username=username,
                         credential=credential.decode())  # fmt: skip


@contextmanager
def turn_server(folder: Path) -> Iterator[Turn]:
    binary = shutil.which("turnserver")
    if binary is None:
        pytest.fail("coturn's turnserver is missing: run `make turn` (it installs Debian's coturn)", pytrace=False)
    folder.mkdir(parents=True, exist_ok=True)
    turn = Turn(_free_port(), secrets.token_hex(16), folder / "turnserver.log")
    args = [
        binary, "-n", "--no-cli", "--no-tls", "--no-dtls", "--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1",
        "--listening-port", str(turn.port), "--min-port", "49160", "--max-port", "49999",
        "--use-auth-secret", f"--static-auth-secret={turn.secret}", "--realm", "kiosk.test",
        "--allow-loopback-peers", "--no-multicast-peers", "--verbose", "--log-file", str(turn.log), "--simple-log",
        "--pidfile", str(folder / "turnserver.pid"),
    ]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not _answers_stun(turn.port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"turnserver did not start: {turn.log.read_text() if turn.log.exists() else ''}")
        yield turn
    finally:
        proc.terminate()
        proc.wait(10)
