"""Hub -> kiosk messages that must arrive exactly once (a provider's answer to a case), and the kiosk's ack.

    kiosk/{id}/down/message   hub -> kiosk: one DownlinkMessage (JSON), QoS 1
    kiosk/{id}/up/delivered   kiosk -> hub: {"kiosk": ..., "ids": [...]} once the messages are stored

The hub keeps each message until the kiosk says it is stored, and sends it again when the
kiosk comes back online and, while unacknowledged, on a backoff. The kiosk stores by id
(a repeat changes nothing) and acknowledges every copy, so a lost ack only costs a resend.
Nothing here depends on the broker keeping messages for an offline kiosk.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from device.protocol.envelope import ATTACHMENT_ID_PATTERN, MESSAGE_ID_PATTERN, EnvelopeError, KioskId, UtcTime


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CaseAnswerBody(_Model):
    case: str = Field(pattern=ATTACHMENT_ID_PATTERN)
    subject: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")
    message: str = Field(min_length=1, max_length=5000)
    plan: str = Field(default="", max_length=5000)
    request: Literal["none", "more_info", "live_consult"] = "none"


class DownlinkMessage(_Model):
    v: Literal[1] = 1
    id: str = Field(pattern=MESSAGE_ID_PATTERN, description="UUIDv7; the kiosk stores each id once.")
    kiosk: KioskId
    kind: Literal["case_answer"]
    created: UtcTime
    body: CaseAnswerBody


class Delivered(_Model):
    kiosk: KioskId
    ids: list[Annotated[str, Field(pattern=MESSAGE_ID_PATTERN)]] = Field(min_length=1, max_length=500)


_MESSAGE = TypeAdapter(DownlinkMessage)
_DELIVERED = TypeAdapter(Delivered)


def parse_message(raw: bytes) -> DownlinkMessage:
    try:
        return _MESSAGE.validate_json(raw)
    except ValidationError as exc:
        raise EnvelopeError(f"downlink message: {exc.errors()[0]['msg']} at {exc.errors()[0]['loc']}") from None


def parse_delivered(raw: bytes) -> Delivered:
    try:
        return _DELIVERED.validate_json(raw)
    except ValidationError as exc:
        raise EnvelopeError(f"delivered ack: {exc.errors()[0]['msg']} at {exc.errors()[0]['loc']}") from None
