"""The kiosk's signaling connection: an outbound WebSocket to the hub, kept open, re-opened with backoff.

Outbound, so it works behind a clinic's NAT; authenticated with the kiosk's own credential (the
hub takes the kiosk's identity from it, never from a message). Both sides ping every second; a hub
silent for `GONE_AFTER_S` is treated as gone and the socket is opened again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from device.protocol.envelope import EnvelopeError
from device.protocol.retry import Backoff
from device.protocol.signaling import (
    GONE_AFTER_S,
    HEARTBEAT_S,
    Answer,
    Ended,
    Error,
    Form,
    Joined,
    Message,
    Ping,
    Pong,
    Queued,
    parse_to_kiosk,
)

log = logging.getLogger(__name__)

Inbound = Queued | Joined | Answer | Ended | Message | Form | Pong | Error


@dataclass(frozen=True)
class HubLink:
    url: str  # http(s)://host:port of the hub
    credential: str
    ca_file: Path | None = None

    @property
    def socket_url(self) -> str:
        base = self.url.rstrip("/")
        scheme, _, rest = base.partition("://")
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws/kiosk"

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.socket_url.startswith("wss://"):
            return None
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)


class SignalingClient:
    def __init__(
        self, link: HubLink, on_message: Callable[[Inbound], None], *, gone_after_s: float = GONE_AFTER_S
    ) -> None:
        self.link = link
        self.on_message = on_message
        self.gone_after_s = gone_after_s
        self.connected = asyncio.Event()
        self._socket: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._backoff = Backoff(initial_s=0.5, maximum_s=30.0)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._socket is not None:
            await self._socket.close()

    async def send(self, message: BaseModel) -> bool:
        """False when the hub is not reachable now (the caller tells the patient, or tries later)."""
        socket = self._socket
        if socket is None:
            return False
        try:
            await socket.send(message.model_dump_json())
        except WebSocketException:
            return False
        return True

    async def send_offer(self, consult: str, sdp: str) -> bool:
        from device.protocol.signaling import Offer  # noqa: PLC0415

        return await self.send(Offer(consult=consult, sdp=sdp))

    async def _run(self) -> None:
        while True:
            try:
                async with connect(
                    self.link.socket_url,
                    additional_headers={"Authorization": f"Bearer {self.link.credential}"},
                    ssl=self.link.ssl_context(),
                    open_timeout=10,
                    ping_interval=None,  # our own ping, which the hub answers and watches
                    max_size=256 * 1024,
                ) as socket:
                    self._socket = socket
                    self.connected.set()
                    self._backoff.reset()
                    log.info("signaling connected to %s", self.link.socket_url)
                    await self._session(socket)
            except asyncio.CancelledError:
                raise
            except (OSError, WebSocketException, TimeoutError) as exc:
                log.warning("signaling: %s", exc)
            finally:
                self._socket = None
                self.connected.clear()
            await asyncio.sleep(self._backoff.next_delay())

    async def _session(self, socket: ClientConnection) -> None:
        pinger = asyncio.get_running_loop().create_task(self._ping(socket))
        try:
            while True:
                raw = await asyncio.wait_for(socket.recv(), self.gone_after_s)
                try:
                    message = parse_to_kiosk(raw)
                except EnvelopeError as exc:
                    log.error("%s", exc)
                    continue
                if not isinstance(message, Pong):
                    self.on_message(message)
        except TimeoutError:
            log.warning("signaling: the hub was silent for %.0f s; reconnecting", self.gone_after_s)
        finally:
            pinger.cancel()

    async def _ping(self, socket: ClientConnection) -> None:
        while True:
            await socket.send(Ping().model_dump_json())
            await asyncio.sleep(HEARTBEAT_S)
