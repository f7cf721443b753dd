"""Hub -> kiosk messages that must arrive exactly once, and the kiosk's ack.

Kinds: `case_answer` (a provider's answer to a patient's case) and `kiosk_setup` (what the kiosk
needs to check patients in and take their cases while offline: the clinic's roster of check-in
codes with optional PIN hashes, and its intake questionnaire; the newest version replaces the rest).

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
from device.protocol.questionnaire import Questionnaire

SUBJECT_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
MAX_ROSTER = 50_000


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CaseAnswerBody(_Model):
    case: str = Field(pattern=ATTACHMENT_ID_PATTERN)
    subject: str = Field(pattern=SUBJECT_PATTERN)
    message: str = Field(min_length=1, max_length=5000)
    plan: str = Field(default="", max_length=5000)
    request: Literal["none", "more_info", "live_consult"] = "none"


class RosterEntry(_Model):
    code: str = Field(pattern=SUBJECT_PATTERN, description="The patient's check-in code (printed on their card).")
    pin_hash: str | None = Field(
        default=None, max_length=256, description="argon2id hash of the patient's kiosk PIN, when they have one."
    )


class KioskSetupBody(_Model):
    clinic: str = Field(min_length=1, max_length=64)
    clinic_name: str = Field(min_length=1, max_length=200)
    version: int = Field(ge=1, description="Increases with every change; the kiosk keeps the highest it has seen.")
    pin_required: bool = Field(description="Every patient must enter a PIN after their code.")
    patients: list[RosterEntry] = Field(max_length=MAX_ROSTER)
    questionnaire: Questionnaire = Field(description="The intake questionnaire the kiosk shows for a case.")


class _MessageBase(_Model):
    v: Literal[1] = 1
    id: str = Field(pattern=MESSAGE_ID_PATTERN, description="UUIDv7; the kiosk stores each id once.")
    kiosk: KioskId
    created: UtcTime


class CaseAnswerMessage(_MessageBase):
    kind: Literal["case_answer"] = "case_answer"
    body: CaseAnswerBody


class KioskSetupMessage(_MessageBase):
    kind: Literal["kiosk_setup"] = "kiosk_setup"
    body: KioskSetupBody


DownlinkMessage = Annotated[CaseAnswerMessage | KioskSetupMessage, Field(discriminator="kind")]


class Delivered(_Model):
    kiosk: KioskId
    ids: list[Annotated[str, Field(pattern=MESSAGE_ID_PATTERN)]] = Field(min_length=1, max_length=500)


_MESSAGE: TypeAdapter[CaseAnswerMessage | KioskSetupMessage] = TypeAdapter(DownlinkMessage)
_DELIVERED = TypeAdapter(Delivered)


def parse_message(raw: bytes) -> CaseAnswerMessage | KioskSetupMessage:
    try:
        return _MESSAGE.validate_json(raw)
    except ValidationError as exc:
        raise EnvelopeError(f"downlink message: {exc.errors()[0]['msg']} at {exc.errors()[0]['loc']}") from None


def parse_delivered(raw: bytes) -> Delivered:
    try:
        return _DELIVERED.validate_json(raw)
    except ValidationError as exc:
        raise EnvelopeError(f"delivered ack: {exc.errors()[0]['msg']} at {exc.errors()[0]['loc']}") from None
