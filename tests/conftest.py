from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from device.protocol.endpoints import BrokerUrl
from hub.broker import MosquittoProcess


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoProcess]:
    """A real Mosquitto with the hub's generated config, on a free loopback port, for this test only."""
    broker = MosquittoProcess(tmp_path / "broker")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def broker_url(mosquitto: MosquittoProcess) -> BrokerUrl:
    return BrokerUrl.parse(mosquitto.url)
