"""Live updates for the patient's screen (Server-Sent Events): cuff pressure, readings, camera progress.

Published from the server's event loop (or from other threads through `publish_threadsafe`);
each open page holds one subscription. Events carry numbers and codes, never names: the screen
is the only place they are shown.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

State = list[tuple[str, dict[str, Any]]]
_END = ("", "")  # put in a stream's queue by close(): the stream ends


class Events:
    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[tuple[str, str]]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

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

    def close(self) -> None:
        """End every open stream, and any opened after, at once: the server is stopping. A page's live updates
        never end by themselves, and the server would wait on them before it exits."""
        self._closed = True
        for q in list(self._queues):
            q.put_nowait(_END)

    async def stream(self, keepalive_s: float = 15.0, initial: Callable[[], State] | None = None) -> AsyncIterator[str]:
        """`initial` gives the state as of now, sent first: a change between the page's rendering and this
        stream's opening would otherwise be lost. It is called when the stream starts, in the same step as
        the subscription, not when the response is made: between the two the server awaits (headers,
        middleware), and a change published then would reach neither the snapshot nor the queue."""
        q: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._queues.add(q)
        try:
            state_now = initial() if initial is not None else []
            yield "retry: 1000\n\n"
            for name, state in state_now:
                yield f"event: {name}\ndata: {json.dumps(state)}\n\n"
            while not self._closed:
                try:
                    item = await asyncio.wait_for(q.get(), keepalive_s)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                if item is _END:
                    return
                event, data = item
                yield f"event: {event}\ndata: {data}\n\n"
        finally:
            self._queues.discard(q)
