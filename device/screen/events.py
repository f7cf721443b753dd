"""Live updates for the patient's screen (Server-Sent Events): cuff pressure, readings, camera progress.

Published from the server's event loop (or from other threads through `publish_threadsafe`);
each open page holds one subscription. Events carry numbers and codes, never names: the screen
is the only place they are shown.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any


class Events:
    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[tuple[str, str]]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def publish(self, event: str, data: dict[str, Any]) -> None:
        text = json.dumps(data)
        for q in list(self._queues):
            if q.qsize() < 256:  # a page that stopped reading loses live updates, never memory
                q.put_nowait((event, text))

    def publish_threadsafe(self, event: str, data: dict[str, Any]) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.publish, event, data)

    async def stream(
        self, keepalive_s: float = 15.0, initial: list[tuple[str, dict[str, Any]]] | None = None
    ) -> AsyncIterator[str]:
        """`initial`: the state as of now, first (a change between the page's rendering and this stream's
        opening would otherwise be lost)."""
        q: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._queues.add(q)
        try:
            yield "retry: 1000\n\n"
            for name, state in initial or []:
                yield f"event: {name}\ndata: {json.dumps(state)}\n\n"
            while True:
                try:
                    event, data = await asyncio.wait_for(q.get(), keepalive_s)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                yield f"event: {event}\ndata: {data}\n\n"
        finally:
            self._queues.discard(q)
