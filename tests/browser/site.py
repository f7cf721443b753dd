"""The hub's web app served for real (uvicorn on a loopback socket) over a two-clinic world."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from hub.app import create_app
from hub.db import Location
from hub.workspace import WebSettings
from tests.workspace.world import NOW, Clock, World, populate


@dataclass
class Site:
    url: str
    world: World
    clock: Clock


@contextmanager
def serve(db: Path | Location, settings: WebSettings | None = None) -> Iterator[Site]:
    clock = Clock(NOW.timestamp())
    world = World(db, clock)
    populate(world)
    # Live parts refresh every second here (10 s and 5 s in service) so the tests do not wait.
    app = create_app(db, clock=clock, settings=settings or WebSettings(chart_refresh_s=1, fleet_refresh_s=1))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound before the server starts: no race for a free port
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the hub's web server did not start")
        time.sleep(0.01)
    try:
        yield Site(f"http://127.0.0.1:{sock.getsockname()[1]}", world, clock)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        world.close()
