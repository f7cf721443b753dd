"""How live consults behave at the hub: ICE servers, heartbeats, deadlines, the waiting room's refresh."""

from __future__ import annotations

from dataclasses import dataclass, field

from device.protocol.signaling import GONE_AFTER_S
from hub.consults.ice import IceConfig


@dataclass(frozen=True)
class ConsultSettings:
    ice: IceConfig = field(default_factory=IceConfig)
    # A socket silent this long (no ping, no message) is gone: the contract's 5 s; tests make it short.
    gone_after_s: float = GONE_AFTER_S
    # After Join, the provider's call page must open its socket within this time, or the call is over.
    provider_connect_s: float = 30.0
    # An open socket re-checks its kiosk credential or the provider's session this often (revoked, logged out).
    recheck_s: float = 30.0
    # How often the waiting room and the nav's waiting count refresh themselves.
    refresh_s: float = 5.0
