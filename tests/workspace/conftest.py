from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hub.app import create_app
from hub.db import Location
from tests.workspace.world import NOW, Clock, World, login, populate


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW.timestamp())


@pytest.fixture
def world(hub_database: Location, clock: Clock) -> Iterator[World]:
    """The two clinics, on each store (SQLite and PostgreSQL): every workspace test runs on both."""
    w = World(hub_database, clock)
    populate(w)
    yield w
    w.close()


@pytest.fixture
def app(world: World, clock: Clock) -> FastAPI:
    return create_app(world.db, clock=clock)


@pytest.fixture
def client_as(app: FastAPI) -> Callable[[str], TestClient]:
    """A logged-in browser-like client (https, so the __Host- cookie is kept) for one account."""

    def make(email: str) -> TestClient:
        client = TestClient(app, base_url="https://testserver", follow_redirects=False)
        response = login(client, email)
        assert response.status_code == 303, response.text
        return client

    return make
