"""How this kiosk holds calls: its microphone and speaker, how long a patient may wait. Light: no aiortc here."""

from __future__ import annotations

from dataclasses import dataclass

from device.protocol.signaling import GONE_AFTER_S


@dataclass(frozen=True)
class ConsultSettings:
    microphone: str = "tone"  # or alsa:<device>
    speaker: str | None = None  # alsa device for the provider's voice; None: received and counted only
    wait_limit_s: float = 15 * 60.0
    return_after_s: float = 30.0  # after a dropped call, the visit ends (welcome screen) this long after
    connect_timeout_s: float = 15.0  # from the provider's answer to connected media, else a case
    gone_after_s: float = GONE_AFTER_S
