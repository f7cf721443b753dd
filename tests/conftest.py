from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.protocol.endpoints import BrokerUrl
from hub.broker import MosquittoProcess
from hub.db import Location, PostgresLocation, SqliteLocation
from hub.fleet.broker_plugin import CACHE_ENV
from tests.fleet import Fleet, running_fleet
from tests.postgres import PostgresServer

# The broker plugin is compiled once for every broker of the run (its file name carries the source's hash),
# not once per test's data folder.
os.environ.setdefault(CACHE_ENV, str(Path(tempfile.gettempdir()) / f"telehealth-broker-plugin-{os.getuid()}"))


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


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """Two provisioned kiosks and the hub's locked-down broker (tests/fleet.py), the hub's store on SQLite: for
    what the broker decides alone."""
    with running_fleet(tmp_path) as running:
        yield running


@pytest.fixture
def fleet_on_each_store(tmp_path: Path, hub_database: Location) -> Iterator[Fleet]:
    """The same fleet, once on each of the hub's stores: for what the hub's store takes part in."""
    with running_fleet(tmp_path, hub_database) as running:
        yield running


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster per test process (tests/postgres.py); each test takes a database of its own."""
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


STORES = ("sqlite", "postgresql")


@pytest.fixture(params=STORES)
def hub_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Location]:
    """The hub's store, once on each engine: a SQLite file in the test's folder, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield SqliteLocation(tmp_path / "hub.db")
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.fresh_database()
    yield PostgresLocation(url)
    server.drop(url.rsplit("/", 1)[1])
