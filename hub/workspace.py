"""What every request handler shares: the hub database (one connection per thread), the clock, the policies.

SQLite in WAL mode lets each request thread read without waiting for ingest or for other
readers; writes (audit entries, session touches) take a short IMMEDIATE transaction.
The clock is injectable so that session expiry and login throttling are tested by moving
time, not by sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request

from hub.accounts.sessions import SessionPolicy
from hub.accounts.throttle import ThrottlePolicy
from hub.consults.settings import ConsultSettings
from hub.db import Connection, Location, connect, immediate, is_broken
from hub.db import parse as parse_location
from hub.db.location import sqlite_path
from hub.store import HubStore, StoreReader


@dataclass(frozen=True)
class WebSettings:
    sessions: SessionPolicy = field(default_factory=SessionPolicy)
    throttle: ThrottlePolicy = field(default_factory=ThrottlePolicy)
    # The `__Host-` cookie prefix requires Secure; browsers accept Secure cookies over http only
    # from loopback, so this stays on and the hub serves HTTPS anywhere else.
    secure_cookies: bool = True
    # A kiosk is "late" when it says it is online but nothing arrived for this long (heartbeats stopped).
    late_after_s: float = 10 * 60
    # How often open pages refresh their live parts (charts, the kiosk table).
    chart_refresh_s: float = 10
    fleet_refresh_s: float = 5
    # Trend refreshes of the same patient by the same session are audited once per this many seconds.
    audit_refresh_s: float = 10 * 60
    # Live consults: ICE servers (STUN, coturn's shared secret), heartbeat and deadlines, the waiting room.
    consults: ConsultSettings = field(default_factory=ConsultSettings)


def from_request(request: Request) -> Workspace:
    """FastAPI dependency: the workspace the app was created with."""
    ws: Workspace = request.app.state.workspace
    return ws


class Workspace:
    def __init__(
        self, where: str | Path | Location, settings: WebSettings | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.location = parse_location(where)
        self.settings = settings or WebSettings()
        self.clock = clock
        HubStore(self.location).close()  # create and migrate once, before any request thread opens it
        self._local = threading.local()

    @property
    def db_path(self) -> Path:
        """The SQLite file (what SQLite-only tools such as the online backup are given)."""
        return sqlite_path(self.location)

    def now(self) -> float:
        return self.clock()

    def conn(self) -> Connection:
        """This thread's connection; a PostgreSQL session the server or the network ended is opened again."""
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None or is_broken(conn):
            if conn is not None:
                conn.close()
            conn = connect(self.location)
            # Closed when its thread ends (the thread-local is released); request threads come and go.
            self._local.conn = conn
            self._local.reader = StoreReader(conn)
        return conn

    def reader(self) -> StoreReader:
        self.conn()
        reader: StoreReader = self._local.reader
        return reader

    def write(self) -> AbstractContextManager[Connection]:
        return immediate(self.conn())
