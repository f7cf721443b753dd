"""systemd's notify protocol, for `Type=notify` units with a watchdog (kiosk agent, kiosk serve, hub serve).

A datagram of `KEY=value` lines to the socket named by $NOTIFY_SOCKET; nothing at all when
the variable is unset (not under systemd, or a unit of another type). The protocol is a
dozen lines, so it is written here rather than pulling in libsystemd bindings that need a
compiler on the Pi. The watchdog interval comes from $WATCHDOG_USEC (set by WatchdogSec=);
callers ping at half of it, from the loop whose liveness the ping stands for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable

log = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send one state ("READY=1", "WATCHDOG=1", "STOPPING=1", "STATUS=..."); False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("could not notify systemd (%s): %s", state.split("=", 1)[0], exc)
        return False
    return True


def watchdog_interval_s() -> float | None:
    """How often to ping (half the unit's WatchdogSec=), or None when no watchdog is set for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec:
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (we were started by the one it names)
    with contextlib.suppress(ValueError):
        value = int(usec)
        if value > 0:
            return value / 2 / 1_000_000
    return None


async def serve_notifications(started: Callable[[], bool], healthy: Callable[[], bool]) -> None:
    """READY=1 once `started()`, then WATCHDOG=1 at half the watchdog interval while `healthy()`.

    Runs as a task on the service's event loop: a loop that stops turning stops the pings, and
    so does a `healthy()` that turns false (a dead worker thread), and systemd restarts the unit.
    """
    while not started():
        await asyncio.sleep(0.1)
    notify("READY=1")
    interval = watchdog_interval_s()
    if interval is None:
        return
    while True:
        if healthy():
            notify("WATCHDOG=1")
        else:
            log.error("not pinging the systemd watchdog: a part of the service has stopped")
        await asyncio.sleep(interval)
