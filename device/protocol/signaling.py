"""Live consults: the signaling messages between the kiosk, the hub and the provider's browser (JSON over WebSocket).

    kiosk  --wss--> hub  /ws/kiosk                 (outbound from the kiosk: works behind NAT; bearer token)
    browser --wss-> hub  /ws/consults/{consult}     (the provider's session cookie; same clinic only)

The hub relays offer, answer and in-call messages between the two sides of one consult and keeps
the record (who, when, how long, outcome). Media never passes through the hub: it goes peer to peer,
or through the TURN server named in `ice_servers`. aiortc gathers all candidates before it sends a
description (no trickle ICE), so an offer or answer carries its candidates in the SDP.

Flow: kiosk `request` -> hub `queued` (position, estimate; again whenever it changes) -> a provider
joins -> hub `joined` (with ICE servers) -> kiosk `offer` -> browser answers -> hub `answer` ->
media flows -> either side ends (`end`/`ended`). `ping` every second each way: a side silent for
5 s is gone, and the other side is told at once.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from device.protocol.envelope import ATTACHMENT_ID_PATTERN, EnvelopeError

SUBJECT = r"^[A-Za-z0-9._:-]{1,64}$"
MAX_SDP = 64 * 1024
HEARTBEAT_S = 1.0
GONE_AFTER_S = 5.0  # a peer silent this long has vanished (aiortc's own consent check takes ~30 s)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IceServer(_Model):
    urls: list[str] = Field(min_length=1, max_length=8)
    username: str | None = Field(default=None, max_length=256)
    credential: str | None = Field(default=None, max_length=256)


class Vital(_Model):
    code: str = Field(pattern=r"^[0-9]{1,7}-[0-9]$")
    value: float
    unit: str = Field(max_length=32)
    effective: str = Field(max_length=40)


ConsultId = Annotated[str, Field(pattern=ATTACHMENT_ID_PATTERN)]
Reason = Literal[
    "finished",  # someone pressed End
    "cancelled",  # the patient gave up waiting (or their visit ended)
    "peer_gone",  # the other side vanished (heartbeat, socket closed)
    "failed",  # media could not connect
    "declined",  # no provider could take it
]


# -- kiosk -> hub


class Request(_Model):
    type: Literal["request"] = "request"
    consult: ConsultId
    subject: str = Field(pattern=SUBJECT)
    language: str = Field(default="en", pattern=r"^[a-z]{2}$")
    vitals: list[Vital] = Field(default_factory=list, max_length=50, description="The visit's readings so far.")


class Offer(_Model):
    type: Literal["offer"] = "offer"
    consult: ConsultId
    sdp: str = Field(max_length=MAX_SDP)


class Answer(_Model):
    type: Literal["answer"] = "answer"
    consult: ConsultId
    sdp: str = Field(max_length=MAX_SDP)


class End(_Model):
    type: Literal["end"] = "end"
    consult: ConsultId
    reason: Reason = "finished"


class Vitals(_Model):
    type: Literal["vitals"] = "vitals"
    consult: ConsultId
    vitals: list[Vital] = Field(min_length=1, max_length=50)


class Ping(_Model):
    type: Literal["ping"] = "ping"


# -- hub -> kiosk (and browser)


class Queued(_Model):
    type: Literal["queued"] = "queued"
    consult: ConsultId
    position: int = Field(ge=1, description="1: next to be seen.")
    estimate_s: int | None = Field(default=None, ge=0, description="None: too few recent calls to say.")


class Joined(_Model):
    type: Literal["joined"] = "joined"
    consult: ConsultId
    provider: str = Field(max_length=200, description="The provider's name as the patient should see it.")
    ice_servers: list[IceServer] = Field(default_factory=list, max_length=8)
    relay_only: bool = Field(
        default=False, description="Media through the TURN relay only (a network that forbids direct paths)."
    )


class Ended(_Model):
    type: Literal["ended"] = "ended"
    consult: ConsultId
    reason: Reason


class Message(_Model):
    type: Literal["message"] = "message"
    consult: ConsultId
    text: str = Field(min_length=1, max_length=1000)


class Form(_Model):
    """The provider asks the patient to do something on the kiosk screen during the call."""

    type: Literal["form"] = "form"
    consult: ConsultId
    form: Literal["vitals", "case"]


class Pong(_Model):
    type: Literal["pong"] = "pong"


class Error(_Model):
    type: Literal["error"] = "error"
    message: str = Field(max_length=500)


KioskToHub = Annotated[Request | Offer | End | Vitals | Ping, Field(discriminator="type")]
HubToKiosk = Annotated[Queued | Joined | Answer | Ended | Message | Form | Pong | Error, Field(discriminator="type")]
BrowserToHub = Annotated[Answer | End | Message | Form | Ping, Field(discriminator="type")]
HubToBrowser = Annotated[Offer | Vitals | Ended | Pong | Error, Field(discriminator="type")]

_KIOSK: TypeAdapter[Request | Offer | End | Vitals | Ping] = TypeAdapter(KioskToHub)
_TO_KIOSK: TypeAdapter[Queued | Joined | Answer | Ended | Message | Form | Pong | Error] = TypeAdapter(HubToKiosk)
_BROWSER: TypeAdapter[Answer | End | Message | Form | Ping] = TypeAdapter(BrowserToHub)


def _parse(adapter: TypeAdapter[object], raw: str | bytes, what: str) -> object:
    try:
        return adapter.validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(message)"
        raise EnvelopeError(f"{what}: {where}: {first['msg']}") from None


def parse_from_kiosk(raw: str | bytes) -> Request | Offer | End | Vitals | Ping:
    return _parse(_KIOSK, raw, "kiosk signaling message")  # type: ignore[return-value,arg-type]


def parse_to_kiosk(raw: str | bytes) -> Queued | Joined | Answer | Ended | Message | Form | Pong | Error:
    return _parse(_TO_KIOSK, raw, "hub signaling message")  # type: ignore[return-value,arg-type]


def parse_from_browser(raw: str | bytes) -> Answer | End | Message | Form | Ping:
    return _parse(_BROWSER, raw, "browser signaling message")  # type: ignore[return-value,arg-type]
