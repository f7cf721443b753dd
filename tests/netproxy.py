"""A TCP proxy the test controls, to cut the path between kiosk and broker.

`reset()` closes every connection and refuses new ones (a cable pulled, a router
rebooting); `blackhole()` keeps sockets open but forwards nothing (a dead NAT mapping,
the case only keepalives notice); `restore()` lets traffic flow again. `cut_after(n)`
resets once n more bytes have gone from the client upstream: a cut at a known point of
a transfer, with no timing involved.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._mode = "open"
        self._budget: int | None = None  # client->upstream bytes left before a reset
        self.cut = threading.Event()  # set when a cut_after budget ran out
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def reset(self) -> None:
        with self._lock:
            self._mode = "refuse"
            self._close_all()

    def blackhole(self) -> None:
        with self._lock:
            self._mode = "blackhole"

    def cut_after(self, upstream_bytes: int) -> None:
        with self._lock:
            self._budget = upstream_bytes

    def restore(self) -> None:
        with self._lock:
            self._mode = "open"
            # Connections held through a blackhole are dead to both ends; drop them.
            self._close_all()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            self._close_all()

    def _close_all(self) -> None:
        for a, b in self._pairs:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()
        self._pairs.clear()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                mode = self._mode
            if mode == "refuse":
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select([a, b], [], [], 0.2)
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        raise OSError("closed")
                    with self._lock:
                        mode = self._mode
                        if mode == "open" and s is a and self._budget is not None:
                            self._budget -= len(data)
                            if self._budget < 0:
                                self._budget = None
                                self._mode = "refuse"
                                self.cut.set()
                                self._close_all()
                                return
                    if mode == "open":
                        peers[s].sendall(data)
                    # blackhole: read and discard, like packets lost on a dead path
        except (OSError, ValueError):
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()
