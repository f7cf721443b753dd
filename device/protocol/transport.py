"""How both ends use the MQTT socket: small packets go out at once, bursts go out together.

paho leaves Nagle's algorithm on, so a lone reading or receipt could wait for the
peer's delayed ACK (tens of ms); both sides turn it off when the socket opens. A burst
(a window of publishes, a batch of acks and receipts) is corked while it is queued, so
the kernel sends it in as few segments as it can, and the broker reads it in a few
calls instead of one per packet. Linux only; elsewhere these are no-ops.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterator
from typing import Any

_CORK = getattr(socket, "TCP_CORK", None)


def no_delay(_client: Any, _userdata: Any, sock: Any) -> None:
    """paho ``on_socket_open`` hook: disable Nagle on the new connection."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@contextlib.contextmanager
def corked(sock: Any) -> Iterator[None]:
    """Hold back partial segments while a burst is queued; uncorking sends the lot at once."""
    if _CORK is None or sock is None:
        yield
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, _CORK, 1)
    try:
        yield
    finally:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, _CORK, 0)


def has_buffered_input(sock: Any) -> bool:
    """TLS may hold decrypted bytes that select() cannot see: they count as readable."""
    return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
