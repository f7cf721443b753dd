"""The kiosk agent: owns the outbox and the forwarder, and reports the kiosk's status.

Status (software version, backlog, alerts such as a full outbox) is enqueued like any
other message but coalesced, so the hub always learns the newest state and a full
outbox can still say that it is full. A broker that refuses this kiosk is an alert too
(`broker_refused`, with the reason): no status reaches the hub while the refusal lasts, but one
made during it tells the hub why the kiosk was cut off once it is let in again, and `alerts()`
has it at once for whatever on the kiosk shows its state.

Given several brokers, the agent fails over between them (device/forwarder.py); `forwarder.broker` is
the one it is connected to, and a refusal's alert names the broker that refused.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from device import __version__
from device.forwarder import Forwarder, ForwarderConfig, LinkProblem
from device.inbox import Inbox
from device.outbox import DISK_RESERVE_BYTES, DiskFull, Outbox
from device.protocol import StatusAlert
from device.protocol.endpoints import BrokerUrl, broker_list
from device.protocol.remote_config import KioskSettings
from device.remote_settings import RemoteSettings

log = logging.getLogger(__name__)


@dataclass
class AgentConfig:
    kiosk_id: str
    broker: BrokerUrl | Sequence[BrokerUrl]  # one, or several in the order to try them (device/forwarder.py)
    data_dir: Path
    heartbeat_s: float = 30.0
    max_items: int = 500_000
    # Free disk space readings may not use: kept for deletes, status and the outbox's WAL (device/outbox.py).
    disk_reserve_bytes: int = DISK_RESERVE_BYTES
    keepalive_s: int = 30
    receipt_timeout_s: float = 10.0
    batch_max_items: int = 500
    connect_timeout_s: float = 10.0
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        # Refused before any file is opened, with the reason (empty, a broker twice, plain and TLS mixed).
        broker_list(self.broker)


class KioskAgent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.started = time.monotonic()
        self.outbox = self._open_outbox()
        fwd_config = ForwarderConfig(
            kiosk_id=config.kiosk_id,
            broker=config.broker,
            keepalive_s=config.keepalive_s,
            receipt_timeout_s=config.receipt_timeout_s,
            batch_max_items=config.batch_max_items,
            connect_timeout_s=config.connect_timeout_s,
            ca_file=config.ca_file,
            cert_file=config.cert_file,
            key_file=config.key_file,
            username=config.username,
            password=config.password,
        )
        # The forwarder reads through its own connection; enqueues on ours wake it at once.
        self.inbox = Inbox(config.data_dir / "inbox.db")
        self.forwarder = Forwarder(self._open_outbox(), fwd_config, inbox=self.inbox)
        self.outbox.on_enqueue = self.forwarder.wake
        self.remote = RemoteSettings(config.data_dir, config.kiosk_id)
        if self.remote.running is not None:  # the last applied config, before any connection
            self._apply(self.remote.running.settings)
        self.forwarder.on_config = self._on_config
        self._status_now = threading.Event()
        self.forwarder.on_link_change = self._on_link_change
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self.forwarder.run, name="forwarder", daemon=True),
            threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True),
        ]

    def _open_outbox(self) -> Outbox:
        cfg = self.config
        return Outbox(
            cfg.data_dir / "outbox.db", cfg.kiosk_id, max_items=cfg.max_items, disk_reserve_bytes=cfg.disk_reserve_bytes
        )

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def healthy(self) -> bool:
        """Every thread of the agent still runs (what the systemd watchdog ping stands for)."""
        return all(t.is_alive() for t in self._threads)

    def stop(self) -> None:
        self._stop.set()
        self._status_now.set()
        self.forwarder.stop()
        for t in self._threads:
            if t.ident is not None:  # started (an agent stopped before start() has nothing to join)
                t.join(timeout=10)
        self.forwarder.close()
        self.forwarder.outbox.close()
        self.outbox.close()
        self.inbox.close()

    def _apply(self, settings: KioskSettings) -> None:
        self.config.heartbeat_s = settings.heartbeat_s
        self.forwarder.config.receipt_timeout_s = settings.receipt_timeout_s
        self.forwarder.config.batch_max_items = settings.batch_max_items

    def _on_config(self, raw: bytes) -> None:
        """From the forwarder's thread: apply a newer config, and say so (or why not) in a status at once."""
        before = (self.remote.running, self.remote.error)
        config = self.remote.offer(raw)
        if config is not None:
            self._apply(config.settings)
        if (self.remote.running, self.remote.error) != before:
            self._status_now.set()

    def _on_link_change(self, before: LinkProblem | None, after: LinkProblem | None) -> None:
        """Let in again after a refusal: a fresh status at once, so the hub does not keep showing the alert.

        Only the end is pushed. A status made when the refusal starts could not leave before the end, when
        the fresh one would replace it (each status coalesced away is a hole in the kiosk's sequence); a
        heartbeat during the refusal carries the alert, which the hub reads once the kiosk is let in.
        """
        if after is None and before is not None and before.alert() is not None:
            self._status_now.set()

    def alerts(self) -> list[StatusAlert]:
        """What a person should see about this kiosk now: the outbox's alerts and the broker link's."""
        alerts = self.outbox.alerts()
        problem = self.forwarder.link_problem
        link_alert = problem.alert() if problem is not None else None
        if link_alert is not None:
            alerts.append(link_alert)
        return alerts

    def send_status(self) -> None:
        backlog = self.outbox.backlog()
        self.outbox.enqueue(
            "status",
            {
                "software_version": __version__,
                "outbox_backlog": backlog.items,
                "outbox_capacity": backlog.max_items,
                "uptime_s": round(time.monotonic() - self.started, 1),
                "alerts": [a.model_dump() for a in self.alerts()],
                "config_version": self.remote.running.version if self.remote.running else 0,
                "config_error": self.remote.error,
            },
        )

    def _heartbeat(self) -> None:
        disk_full: DiskFull | None = None  # logged when it starts and when it ends, not at every heartbeat
        while not self._stop.is_set():
            try:
                self.send_status()
            except DiskFull as exc:  # status is exempt from the caps and the reserve: the disk is truly full
                if disk_full is None:
                    log.warning("could not enqueue status: %s (not logged again until it works)", exc)
                disk_full = exc
            except Exception:
                log.exception("could not enqueue status")
            else:
                if disk_full is not None:
                    log.warning("status enqueued again (after: %s)", disk_full)
                    disk_full = None
            self._status_now.wait(self.config.heartbeat_s)  # a config change reports at once
            self._status_now.clear()
