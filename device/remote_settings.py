"""The remote configuration this kiosk runs: which version, kept on disk so a restart starts with it.

Pure decisions (`decide`) apart from the file: a config is applied only if it is for this
kiosk, valid and newer than the one running; anything else is refused with a reason that
the agent reports in its status, and the running settings stay as they are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from device.files import write_atomic
from device.protocol.envelope import EnvelopeError
from device.protocol.remote_config import RemoteConfig, parse_config

log = logging.getLogger(__name__)
FILE = "remote-config.json"


@dataclass(frozen=True)
class Decision:
    apply: RemoteConfig | None = None
    error: str | None = None  # refused: why (reported to the hub)
    stale: bool = False  # the same or an older version again (a retained copy): nothing to do


def decide(raw: bytes, kiosk_id: str, running: RemoteConfig | None) -> Decision:
    try:
        config = parse_config(raw)
    except EnvelopeError as exc:
        return Decision(error=str(exc))
    if config.kiosk != kiosk_id:
        return Decision(error=f"remote config for kiosk {config.kiosk!r} sent to {kiosk_id!r}")
    if running is not None and config.version <= running.version:
        return Decision(stale=True)
    return Decision(apply=config)


class RemoteSettings:
    def __init__(self, data_dir: Path, kiosk_id: str) -> None:
        self.path = data_dir / FILE
        self.kiosk_id = kiosk_id
        self.running: RemoteConfig | None = None
        self.error: str | None = None
        try:
            self.running = parse_config(self.path.read_bytes())
        except FileNotFoundError:
            pass
        except EnvelopeError as exc:  # damaged on disk: run on defaults until the hub's retained copy arrives
            log.error("ignoring %s: %s", self.path, exc)

    def offer(self, raw: bytes) -> RemoteConfig | None:
        """The config to apply now, or None; a refusal is kept in `error` for the next status."""
        decision = decide(raw, self.kiosk_id, self.running)
        if decision.error is not None:
            log.error("remote config refused: %s", decision.error)
            self.error = decision.error
            return None
        if decision.apply is None:
            return None
        self._save(decision.apply)
        self.running, self.error = decision.apply, None
        log.info("remote config version %d applied", decision.apply.version)
        return decision.apply

    def _save(self, config: RemoteConfig) -> None:
        write_atomic(self.path, config.model_dump_json().encode(), 0o644)
