"""`hub serve` with a TLS certificate: the workspace and API over HTTPS, the kiosks' consult socket over WSS.

A real `hub serve` process (embedded Mosquitto, one ingest worker) on loopback with a certificate from a CA of
the test's own; clients verify it against that CA. Plain HTTP and ws:// to the TLS port get nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidMessage

from device.consult.client import HubLink
from device.protocol.signaling import Ping, parse_to_kiosk
from hub.broker import free_port
from hub.cli import main as hub_main
from hub.consults.relay import CLOSE_UNAUTHENTICATED
from hub.fleet.pki import HubCA, write_private
from tests.harness import REPO, wait_until


@dataclass(frozen=True)
class Hub:
    url: str
    ca: Path
    credential: str


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    base = tmp_path_factory.mktemp("https")
    ca = HubCA(base / "web-ca")
    issued = ca.issue_server(["127.0.0.1", "localhost"])
    cert, key, ca_file = base / "https.pem", base / "https.key", base / "ca.pem"
    write_private(cert, issued.cert_pem)
    write_private(key, issued.key_pem)
    ca_file.write_bytes(ca.cert_pem)
    port, mqtt_port = free_port(), free_port()
    url = f"https://127.0.0.1:{port}"
    bundle = base / "k.bundle"
    assert hub_main(["kiosks", "add", "k-wss", "--data", str(base / "hub"), "--broker-url",
                     f"mqtts://127.0.0.1:{mqtt_port}", "--hub-url", url, "--out", str(bundle)]) == 0  # fmt: skip
    log = (base / "hub.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "serve", "--data", str(base / "hub"), "--port", str(port),
         "--broker-port", str(free_port()), "--mqtt-port", str(mqtt_port), "--workers", "1",
         "--tls-cert", str(cert), "--tls-key", str(key)],
        cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        context = ssl.create_default_context(cafile=str(ca_file))

        def up() -> bool:
            try:
                return httpx.get(f"{url}/healthz", verify=context, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 60, "hub serve to answer over HTTPS")
        yield Hub(url, ca_file, json.loads(bundle.read_text())["hub_credential"])
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        log.close()


def test_the_api_and_workspace_answer_over_https_with_a_verified_certificate(hub: Hub) -> None:
    context = ssl.create_default_context(cafile=str(hub.ca))
    with httpx.Client(base_url=hub.url, verify=context, timeout=10) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/api/v1/kiosks").status_code == 401, "TLS is no substitute for the token"
        login = client.get("/login")
        assert login.status_code == 200
        assert login.headers["strict-transport-security"] == "max-age=31536000"
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{hub.url}/healthz", timeout=5)  # the system's CAs do not know the hub's certificate


def test_plain_http_to_the_tls_port_gets_nothing(hub: Hub) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(hub.url.replace("https://", "http://") + "/healthz", timeout=5)


def _socket(link: HubLink) -> str:
    """What the kiosk's consult socket gets: a Pong to its Ping, or how it was refused."""

    async def talk() -> str:
        try:
            async with connect(
                link.socket_url,
                additional_headers={"Authorization": f"Bearer {link.credential}"},
                ssl=link.ssl_context(),
                open_timeout=10,
            ) as socket:
                await socket.send(Ping().model_dump_json())
                return type(parse_to_kiosk(await asyncio.wait_for(socket.recv(), 10))).__name__
        except ConnectionClosed as exc:
            return f"closed {exc.rcvd.code if exc.rcvd else None}"
        except (OSError, InvalidMessage) as exc:
            return f"no connection: {type(exc).__name__}"

    return asyncio.run(talk())


def test_the_kiosk_consult_socket_is_wss_and_needs_the_kiosks_credential(hub: Hub) -> None:
    good = HubLink(hub.url, hub.credential, hub.ca)
    assert good.socket_url.startswith("wss://")
    assert _socket(good) == "Pong"
    assert _socket(HubLink(hub.url, "not-the-credential", hub.ca)) == f"closed {CLOSE_UNAUTHENTICATED}"
    plain = HubLink(hub.url.replace("https://", "http://"), hub.credential, hub.ca)
    assert plain.socket_url.startswith("ws://")
    assert _socket(plain).startswith("no connection")
