from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hub.app import create_app
from tests.workspace.world import NOW, Clock, World, login, populate


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW.timestamp())


@pytest.fixture
def world(tmp_path: Path, clock: Clock) -> Iterator[World]:
    w = World(tmp_path / "hub.db", clock)
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
