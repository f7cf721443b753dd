"""The versioned envelope every kiosk message travels in, and the hub's receipt.

One envelope is one durable outbox item: it has a unique, time-ordered ``id`` (the
hub's de-duplication key), the kiosk's ``seq`` (per-kiosk order), and the device
clock's reading and estimated offset, so the hub can correct times without trusting
the kiosk clock blindly.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    Base64Bytes,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from device.protocol.topics import KIOSK_ID_PATTERN
from device.protocol.vitals import LOINC_PATTERN, UCUM_PATTERN, VITALS

PROTOCOL_VERSION = 1
# One envelope's encoded size limit. Kiosks refuse to store larger ones, so nothing they
# hold can be refused by the hub for size (its per-message limit is 1 MiB, for batches).
MAX_ENVELOPE_BYTES = 256 * 1024
MESSAGE_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"

Kind = Literal["observations", "status", "attachment", "case", "consult"]
KIND_VALUES: tuple[str, ...] = ("observations", "status", "attachment", "case", "consult")
# An attachment (a case photo) travels as chunks, one envelope each, so each fits the envelope limit
# and a broken transfer resumes where it stopped: chunks already receipted are not sent again.
ATTACHMENT_CHUNK_BYTES = 128 * 1024  # raw bytes per chunk; base64 makes it ~171 KiB of JSON
MAX_ATTACHMENT_BYTES = 16 * 1024 * 1024
ATTACHMENT_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
# Kinds reserved in v1 so topic filters and storage already have room for them; the
# hub refuses them with a clear reason until their payloads are specified.
RESERVED_KINDS = frozenset({"consult"})
MAX_CASE_TEXT = 5000

KioskId = Annotated[str, Field(pattern=KIOSK_ID_PATTERN, description="Kiosk identity, as in the topic.")]


def utc_iso(value: datetime) -> str:
    """One spelling of time on the wire and in storage: UTC, milliseconds, Z. Sorts as text."""
    text = value.isoformat(timespec="milliseconds")
    if text.endswith("+00:00"):  # already UTC, as nearly every time is: astimezone would cost a third more
        return text[:-6] + "Z"
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# The serializer sits on the time type, not on every field of every model: a catch-all
# field serializer made each JSON dump call Python once per field.
UtcTime = Annotated[
    AwareDatetime,
    Base64Bytes,
    PlainSerializer(utc_iso, return_type=str, when_used="json"),
    Field(description="ISO-8601 with an explicit offset; stored as UTC."),
]


class EnvelopeError(ValueError):
    """An envelope that cannot be accepted; the message says what is wrong."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceRef(_Model):
    """The measuring device: who took the reading (not the kiosk that forwarded it)."""

    id: str = Field(min_length=1, max_length=128, description="Stable device identity, e.g. BLE address or serial.")
    type: Literal["ble", "camera", "manual", "simulated"] = Field(description="How the kiosk obtained the reading.")
    manufacturer: str | None = Field(default=None, max_length=128)
    model: str | None = Field(default=None, max_length=128)
    serial: str | None = Field(default=None, max_length=128)
    firmware: str | None = Field(default=None, max_length=64)


class Observation(_Model):
    """One vital sign: LOINC code, value, UCUM unit, when it was measured, and by what."""

    code: str = Field(pattern=LOINC_PATTERN, description="LOINC code, e.g. 8867-4 for heart rate.")
    value: float = Field(description="The measured value in `unit`. Finite; special values are not sent.")
    unit: str = Field(pattern=UCUM_PATTERN, description="UCUM case-sensitive unit code, e.g. mm[Hg], /min, Cel.")
    effective: UtcTime = Field(description="When the measurement was taken, by the device clock.")
    device: DeviceRef
    flags: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]] = Field(
        default_factory=list, max_length=32, description="Measurement status flags from the device."
    )
    device_clock_offset_s: float | None = Field(
        default=None,
        description="The measuring device's clock minus the kiosk's, in seconds, as the kiosk measured it; "
        "`effective` is already corrected by it. Absent when the device has no clock the kiosk can read.",
    )
    device_user: int | None = Field(
        default=None, ge=0, le=255, description="User index on a shared device (cuff, scale); 255 = unknown user."
    )
    device_sequence: int | None = Field(
        default=None, ge=0, description="The device's own record number (e.g. glucose), for de-duplication."
    )
    method: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_.-]{0,63}$",
        description="How a derived value was computed, e.g. rppg-pos for heart rate from a camera.",
    )
    quality: float | None = Field(
        default=None, ge=0, le=1, description="The estimator's confidence in a derived value, 0 to 1."
    )

    @model_validator(mode="after")
    def _plausible(self) -> Observation:
        if not math.isfinite(self.value):
            raise ValueError(f"value for {self.code} must be a finite number, got {self.value}")
        spec = VITALS.get(self.code)
        if spec is None:
            return self
        if self.unit not in spec.units:
            allowed = ", ".join(sorted(spec.units))
            raise ValueError(f"unit {self.unit!r} is not valid for {self.code} ({spec.name}); use one of: {allowed}")
        low, high = spec.units[self.unit]
        if not low <= self.value <= high:
            raise ValueError(
                f"{spec.name} ({self.code}) of {self.value} {self.unit} is outside the plausible range {low}..{high}"
            )
        return self


class ObservationsPayload(_Model):
    observations: list[Observation] = Field(min_length=1, max_length=1000)
    subject: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._:-]{1,64}$",
        description="The patient the readings are attributed to (kiosk check-in or a device user slot). "
        "A kiosk holds back readings it cannot attribute rather than send them as someone else's.",
    )


class StatusAlert(_Model):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="Machine-readable, e.g. outbox_full.")
    message: str = Field(max_length=500, description="What a person at the fleet page should read.")
    since: UtcTime


class StatusPayload(_Model):
    software_version: str = Field(max_length=64)
    outbox_backlog: int = Field(ge=0, description="Items waiting for the hub's receipt.")
    outbox_capacity: int = Field(ge=0)
    uptime_s: float = Field(ge=0)
    alerts: list[StatusAlert] = Field(default_factory=list, max_length=32)
    config_version: int | None = Field(default=None, ge=0, description="The remote config version applied.")
    config_error: str | None = Field(default=None, max_length=500, description="Why the last config was refused.")


class ClockInfo(_Model):
    """The device clock at the time the envelope was created, and how far off it is believed to be."""

    time: UtcTime = Field(description="Device clock reading when the envelope was created.")
    offset_ms: float | None = Field(
        default=None,
        description="Estimated (reference clock - device clock) in ms; add it to device times to correct them. "
        "null when not yet estimated.",
    )
    source: Literal["hub", "ntp", "none"] = Field(default="none", description="Where the offset estimate came from.")


class _EnvelopeBase(_Model):
    v: Literal[1] = Field(description="Protocol version.")
    id: str = Field(pattern=MESSAGE_ID_PATTERN, description="UUIDv7; unique; the hub de-duplicates on it.")
    kiosk: KioskId
    seq: int = Field(ge=1, description="Per-kiosk sequence number, increasing in enqueue order.")
    clock: ClockInfo


class ObservationsEnvelope(_EnvelopeBase):
    kind: Literal["observations"]
    payload: ObservationsPayload


class StatusEnvelope(_EnvelopeBase):
    kind: Literal["status"]
    payload: StatusPayload


class AttachmentPayload(_Model):
    """One chunk of a file (a case photo). The hub assembles the chunks and checks the whole file's hash."""

    attachment: str = Field(
        pattern=ATTACHMENT_ID_PATTERN, description="The file's id (a UUID), the same in every chunk."
    )
    media_type: Literal["image/jpeg"] = Field(description="What the assembled file is.")
    size: int = Field(ge=1, le=MAX_ATTACHMENT_BYTES, description="Bytes of the whole file.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the whole file, hex.")
    index: int = Field(ge=0, description="This chunk's position, from 0.")
    count: int = Field(ge=1, le=MAX_ATTACHMENT_BYTES // 4096, description="How many chunks the file has.")
    data: Base64Bytes = Field(description=f"The chunk, base64; at most {ATTACHMENT_CHUNK_BYTES} bytes decoded.")
    subject: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._:-]{1,64}$", description="The patient.")

    @model_validator(mode="after")
    def _consistent(self) -> AttachmentPayload:
        if self.index >= self.count:
            raise ValueError(f"chunk index {self.index} is not below the chunk count {self.count}")
        if not 0 < len(self.data) <= ATTACHMENT_CHUNK_BYTES:
            raise ValueError(f"a chunk carries 1 to {ATTACHMENT_CHUNK_BYTES} bytes, this one {len(self.data)}")
        return self


class AttachmentEnvelope(_EnvelopeBase):
    kind: Literal["attachment"]
    payload: AttachmentPayload


AnswerValue = bool | int | float | Annotated[str, Field(max_length=2000)] | list[Annotated[str, Field(max_length=200)]]


class CaseAnswer(_Model):
    link_id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$", description="The questionnaire item answered.")
    value: AnswerValue = Field(description="The answer: yes/no, a number, a text, or the chosen options.")


class QuestionnaireRef(_Model):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    version: int = Field(ge=1)


class CasePayload(_Model):
    """An asynchronous (store-and-forward) case: the patient's answers, free text, photos and the vitals with it.

    Photos travel as `attachment` chunks and vitals as `observations` envelopes; the case names them by id,
    so nothing is sent twice and the hub can show the case once they have all arrived.
    """

    case: str = Field(pattern=ATTACHMENT_ID_PATTERN, description="The case's id (a UUID), chosen by the kiosk.")
    subject: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$", description="The patient (kiosk check-in code).")
    questionnaire: QuestionnaireRef
    answers: list[CaseAnswer] = Field(default_factory=list, max_length=200)
    text: str = Field(default="", max_length=MAX_CASE_TEXT, description="The patient's own words.")
    attachments: list[Annotated[str, Field(pattern=ATTACHMENT_ID_PATTERN)]] = Field(default_factory=list, max_length=20)
    vitals: list[Annotated[str, Field(pattern=MESSAGE_ID_PATTERN)]] = Field(
        default_factory=list, max_length=50, description="Ids of the observations envelopes taken for this case."
    )
    created: UtcTime = Field(description="When the patient sent it, by the kiosk clock.")

    @model_validator(mode="after")
    def _distinct(self) -> CasePayload:
        ids = [a.link_id for a in self.answers]
        if len(ids) != len(set(ids)):
            raise ValueError("each questionnaire item is answered at most once")
        return self


class CaseEnvelope(_EnvelopeBase):
    kind: Literal["case"]
    payload: CasePayload


class ReservedEnvelope(_EnvelopeBase):
    """`consult`: reserved in v1; payload free-form until specified."""

    kind: Literal["consult"]
    payload: dict[str, Any]


Envelope = Annotated[
    ObservationsEnvelope | StatusEnvelope | AttachmentEnvelope | CaseEnvelope | ReservedEnvelope,
    Field(discriminator="kind"),
]
_ENVELOPE = TypeAdapter(Envelope)

AnyEnvelope = ObservationsEnvelope | StatusEnvelope | AttachmentEnvelope | CaseEnvelope | ReservedEnvelope


def _describe(error: ValidationError) -> str:
    """One line a person can act on: where, and what is wrong, for up to three problems."""
    parts = []
    for item in error.errors()[:3]:
        loc = item["loc"]
        if loc and loc[0] in KIND_VALUES:  # pydantic prefixes the union's tag; a person needs the path only
            loc = loc[1:]
        where = ".".join(str(p) for p in loc) or "(envelope)"
        msg = item["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}")
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def parse_envelope(raw: bytes | str) -> AnyEnvelope:
    """Validate one envelope's JSON; raise EnvelopeError with a readable reason."""
    try:
        env = _ENVELOPE.validate_json(raw)
    except ValidationError as exc:
        raise EnvelopeError(_describe(exc)) from None
    if env.kind in RESERVED_KINDS:
        raise EnvelopeError(f"kind {env.kind!r} is reserved and not accepted by protocol v{PROTOCOL_VERSION} yet")
    return env


def encode(envelope: AnyEnvelope) -> bytes:
    """The canonical bytes of an envelope: compact JSON, as stored in the outbox and sent."""
    return envelope.model_dump_json(exclude_none=True).encode()


def build_envelope(kind: str, *, message_id: str, kiosk: str, seq: int, clock: ClockInfo, payload: Any) -> AnyEnvelope:
    """Build and validate an envelope from its parts (the kiosk side)."""
    data = {"v": PROTOCOL_VERSION, "id": message_id, "kiosk": kiosk, "seq": seq, "kind": kind, "clock": clock}
    data["payload"] = payload
    try:
        env = _ENVELOPE.validate_python(data)
    except ValidationError as exc:
        raise EnvelopeError(_describe(exc)) from None
    if env.kind in RESERVED_KINDS:
        raise EnvelopeError(f"kind {env.kind!r} is reserved and not accepted by protocol v{PROTOCOL_VERSION} yet")
    return env


class Rejection(_Model):
    id: str
    reason: str = Field(max_length=1000)


class Receipt(_Model):
    """Sent by the hub on ``kiosk/{id}/down/receipt`` after the rows are committed.

    ``accepted`` lists envelopes now stored (new or already stored: a duplicate is
    receipted again, so a kiosk whose first receipt was lost can stop resending).
    ``rejected`` lists envelopes the hub will never store, with the reason; the hub
    kept their raw bytes in its dead letters, and the kiosk stops resending them.
    """

    v: Literal[1] = 1
    kind: Literal["receipt"] = "receipt"
    accepted: list[str] = Field(default_factory=list)
    rejected: list[Rejection] = Field(default_factory=list)
    hub_time: UtcTime = Field(description="Hub clock when the receipt was sent; kiosks estimate their offset from it.")


def parse_receipt(raw: bytes | str) -> Receipt:
    try:
        return Receipt.model_validate_json(raw)
    except ValidationError as exc:
        raise EnvelopeError(_describe(exc)) from None


def envelope_json_schema() -> dict[str, Any]:
    """The JSON Schema of the uplink envelope (what a compatible kiosk must send)."""
    schema = _ENVELOPE.json_schema(mode="validation")  # what the hub accepts
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://telehealth-edge.invalid/schema/envelope-v1.json"
    schema["title"] = f"Kiosk uplink envelope, protocol v{PROTOCOL_VERSION}"
    schema["description"] = (
        "One message from a kiosk to the hub. Published alone on kiosk/{kiosk}/up/{kind} as JSON, "
        "or several per message on kiosk/{kiosk}/up/batch, one envelope per line (NDJSON)."
    )
    return schema


def receipt_json_schema() -> dict[str, Any]:
    schema = Receipt.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
