"""MQTT topic layout. Documented in docs/protocol.md; change both together.

    kiosk/{id}/up/{kind}      one envelope (JSON), kiosk -> hub
    kiosk/{id}/up/batch       several envelopes, one per line (NDJSON), kiosk -> hub
    kiosk/{id}/presence       retained {"online": bool}; the kiosk's last will says offline
    kiosk/{id}/down/receipt   hub -> kiosk: which envelopes are committed (or rejected)
    kiosk/{id}/down/message   hub -> kiosk: a message to keep (a case answer), see downlink.py
    kiosk/{id}/up/delivered   kiosk -> hub: which downlink messages the kiosk has stored
    kiosk/{id}/down/config    hub -> kiosk, retained: remote configuration (remote_config.py)
    kiosk/{id}/up/renew       kiosk -> hub: a certificate signing request (renewal.py)
    kiosk/{id}/down/certificate  hub -> kiosk: the renewed certificate, or why not

The kiosk id in the topic must equal the id inside every envelope; the hub refuses a
mismatch (and, once the broker enforces per-kiosk ACLs, a kiosk can only publish
under its own prefix).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KIOSK_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_KIOSK_ID_RE = re.compile(KIOSK_ID_PATTERN)
BATCH = "batch"
DELIVERED = "delivered"
RENEW = "renew"
ROOT = "kiosk"


@dataclass(frozen=True)
class UplinkTopic:
    kiosk: str
    leaf: str  # an envelope kind, or "batch"


class Topics:
    """Builds and parses topic names, so no other module formats them by hand."""

    UPLINK_FILTER = f"{ROOT}/+/up/#"
    PRESENCE_FILTER = f"{ROOT}/+/presence"

    @staticmethod
    def is_valid_kiosk_id(kiosk_id: str) -> bool:
        return bool(_KIOSK_ID_RE.match(kiosk_id))

    @staticmethod
    def uplink(kiosk_id: str, leaf: str) -> str:
        return f"{ROOT}/{kiosk_id}/up/{leaf}"

    @staticmethod
    def presence(kiosk_id: str) -> str:
        return f"{ROOT}/{kiosk_id}/presence"

    @staticmethod
    def receipt(kiosk_id: str) -> str:
        return f"{ROOT}/{kiosk_id}/down/receipt"

    @staticmethod
    def message(kiosk_id: str) -> str:
        return f"{ROOT}/{kiosk_id}/down/message"

    @staticmethod
    def config(kiosk_id: str) -> str:
        return f"{ROOT}/{kiosk_id}/down/config"

    @staticmethod
    def certificate(kiosk_id: str) -> str:
        return f"{ROOT}/{kiosk_id}/down/certificate"

    @staticmethod
    def downlink_filter(kiosk_id: str) -> str:
        return f"{ROOT}/{kiosk_id}/down/#"

    @staticmethod
    def shared(group: str, topic_filter: str) -> str:
        """MQTT 5 shared subscription: the broker spreads messages over the group's members."""
        return f"$share/{group}/{topic_filter}"

    @staticmethod
    def parse_uplink(topic: str) -> UplinkTopic | None:
        parts = topic.split("/")
        if len(parts) != 4 or parts[0] != ROOT or parts[2] != "up":
            return None
        return UplinkTopic(kiosk=parts[1], leaf=parts[3])

    @staticmethod
    def parse_presence(topic: str) -> str | None:
        parts = topic.split("/")
        if len(parts) != 3 or parts[0] != ROOT or parts[2] != "presence":
            return None
        return parts[1]
