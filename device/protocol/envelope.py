"""The versioned envelope every kiosk message travels in, and the hub's receipt.

One envelope is one durable outbox item: it has a unique, time-ordered ``id`` (the
hub's de-duplication key), the kiosk's ``seq`` (per-kiosk order), and the device
clock's reading and estimated offset, so the hub can correct times without trusting
the kiosk clock blindly.

The contract is strict (pydantic strict mode): a value of the wrong JSON type is refused,
never coerced, so ``true`` is not an oxygen saturation of 1 and ``"7"`` is not a sequence
number. What the published JSON Schema (``envelope_json_schema``) refuses, ``parse_envelope``
refuses, and the reverse, apart from the rules JSON Schema cannot state (``SEMANTIC_RULES``);
tests/test_schema_agreement.py holds both sides to it.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    Base64Bytes,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    Strict,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError, PydanticSerializationError, to_json

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

# The largest magnitude of any number on the wire: JavaScript's Number.MAX_SAFE_INTEGER. Every JSON
# consumer reads such an integer exactly, and SQLite's 64-bit INTEGER holds it (an unbounded 2**64 passed
# validation and then failed the hub's insert on every resend). Numbers with a fraction get the same
# bound: a JSON number beyond a double's range (1e400) is valid JSON Schema "number" but no float.
MAX_WIRE_INT = 2**53 - 1

# RFC 3339 date-time, as JSON Schema's `format: date-time` means it, written as a pattern too because
# many validators do not check `format`. Narrower than RFC 3339 in two places, both refused by the hub as
# well: seconds stop at 59 (Python has no leap second), and years run 1900 to 2999, so that any offset
# converts to a UTC time the hub can store (0001-01-01T00:00:00+01:00 is in year 0 in UTC).
# Written with [0-9], not \d: JSON Schema regexes are ECMA-262, where \d is ASCII only.
RFC3339_PATTERN = (
    r"^(?:19|2[0-9])[0-9]{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?"
    r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)
# Standard base64 (RFC 4648 section 4), padded, with no line breaks or other characters: Python's
# decoder silently skips what is not in the alphabet, which a device maker's validator would refuse.
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"

# What the hub checks that JSON Schema cannot state (both relate two values of one envelope). Everything
# else the hub refuses, the published schema refuses too. The values are the hub's reasons, in part.
SEMANTIC_RULES: dict[str, str] = {
    "an attachment chunk's index is below its count": "is not below the chunk count",
    "a case answers each questionnaire item (link_id) at most once": "answered at most once",
}

KioskId = Annotated[str, Field(pattern=KIOSK_ID_PATTERN, description="Kiosk identity, as in the topic.")]


def utc_iso(value: datetime) -> str:
    """One spelling of time on the wire and in storage: UTC, milliseconds, Z. Sorts as text."""
    text = value.isoformat(timespec="milliseconds")
    if text.endswith("+00:00"):  # already UTC, as nearly every time is: astimezone would cost a third more
        return text[:-6] + "Z"
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_RFC3339 = re.compile(RFC3339_PATTERN)
_BASE64 = re.compile(BASE64_PATTERN)


def _rfc3339(value: object) -> object:
    """Only RFC 3339 text (or, in Python, a datetime) reaches the parser.

    pydantic's parser also reads '2026-11-27 10:00Z' (a space, no seconds) and, lax, Unix numbers. Strict, it
    would refuse all text here: past a Python validator, JSON text is a Python str, which strict mode does not
    parse. So the parser runs lax, behind this gate.
    """
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("datetime_type", "Input should be an RFC 3339 date-time string")
    if not _RFC3339.fullmatch(value):
        raise PydanticCustomError(
            "datetime_rfc3339",
            "Input should be an RFC 3339 date-time: T between date and time, seconds, an offset (Z or +hh:mm), "
            "year 1900 to 2999, e.g. 2026-11-27T09:58:43.912Z",
        )
    return value


def _integral(value: object) -> object:
    """JSON has one number type: to JSON Schema 7.0 is the integer 7, so the hub reads it as 7 too.

    Strict mode would refuse it; 7.5, "7" and true stay refused. Beyond the wire's bound a float stays a
    float, refused as such: turned into an int, 1e300 would be quoted back as 300 digits.
    """
    if type(value) is float and value.is_integer() and abs(value) <= MAX_WIRE_INT:
        return int(value)
    return value


def _not_a_boolean(value: object) -> object:
    """pydantic matches `true` to Literal[1] (True == 1 in Python), even in strict mode; JSON Schema does not."""
    if isinstance(value, bool):
        raise PydanticCustomError("literal_error", "Input should be 1")
    return value


def _base64_text(value: object) -> object:
    """Only canonical base64 text: the decoder alone would drop line breaks and stray characters unnoticed."""
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    if not isinstance(text, str) or not _BASE64.fullmatch(text):
        raise PydanticCustomError(
            "base64_text", "Input should be standard base64 (A-Z, a-z, 0-9, + and /, padded with =, no line breaks)"
        )
    return text.encode("ascii")  # bytes: what Base64Bytes decodes, in JSON and Python mode alike


# The serializer sits on the time type, not on every field of every model: a catch-all
# field serializer made each JSON dump call Python once per field. Other modules' models use
# UtcTime as it was (lenient parsing); the wire contract uses WireTime.
UtcTime = Annotated[
    AwareDatetime,
    PlainSerializer(utc_iso, return_type=str, when_used="json"),
    Field(description="ISO-8601 with an explicit offset; stored as UTC."),
]
WireTime = Annotated[
    AwareDatetime,
    Strict(False),
    BeforeValidator(_rfc3339),
    PlainSerializer(utc_iso, return_type=str, when_used="json"),
    Field(
        description="RFC 3339 date-time with an explicit offset (Z or +hh:mm), year 1900 to 2999; stored as UTC.",
        json_schema_extra={"pattern": RFC3339_PATTERN},
    ),
]


# Numbers on the wire. An integer's bounds come before its validator, so that the schema shows them.
WirePositive = Annotated[int, Field(ge=1, le=MAX_WIRE_INT), BeforeValidator(_integral)]
WireCount = Annotated[int, Field(ge=0, le=MAX_WIRE_INT), BeforeValidator(_integral)]
WireNumber = Annotated[float, Field(ge=-MAX_WIRE_INT, le=MAX_WIRE_INT)]
ProtocolV1 = Annotated[Literal[1], BeforeValidator(_not_a_boolean)]


class EnvelopeError(ValueError):
    """An envelope that cannot be accepted; the message says what is wrong."""


class _Model(BaseModel):
    # strict: the wire's JSON types are the contract; allow_inf_nan: NaN and Infinity are not JSON numbers.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


# The kind of Bluetooth health device, named for the SIG service it measures with (device/ble/profiles.py
# KIND_SERVICES gives each one's UUID). The same LOINC vital is a different IEEE 11073 term by device kind:
# a pulse rate from a cuff, an oximeter or a chest strap.
DeviceKind = Literal[
    "blood_pressure",
    "pulse_oximeter",
    "thermometer",
    "weight_scale",
    "body_composition",
    "glucose",
    "cgm",
    "heart_rate",
]


class DeviceRef(_Model):
    """The measuring device: who took the reading (not the kiosk that forwarded it)."""

    id: str = Field(min_length=1, max_length=128, description="Stable device identity, e.g. BLE address or serial.")
    type: Literal["ble", "camera", "manual", "simulated"] = Field(description="How the kiosk obtained the reading.")
    manufacturer: str | None = Field(default=None, max_length=128)
    model: str | None = Field(default=None, max_length=128)
    serial: str | None = Field(default=None, max_length=128)
    firmware: str | None = Field(default=None, max_length=64)
    kind: DeviceKind | None = Field(
        default=None,
        description="For a Bluetooth health device: which kind, by the SIG service it measures with. Decides the "
        "IEEE 11073 (MDC) term the hub gives its readings; absent, the hub gives LOINC only where terms differ.",
    )


def _known_vitals(schema: dict[str, Any]) -> None:
    """The known-vitals table, in the schema itself: a device maker's validator then refuses a wrong unit or
    an implausible value as the hub does. A code outside the table takes any unit and any finite value."""
    rows: list[Any] = [
        {
            "title": "A code outside the known-vitals table: any unit, any value",
            "properties": {"code": {"not": {"enum": list(VITALS)}}},
        }
    ]
    rows += [
        {
            "title": f"{spec.name} ({code}) in {unit}: {low:g} to {high:g}",
            "properties": {
                "code": {"const": code},
                "unit": {"const": unit},
                "value": {"minimum": low, "maximum": high},
            },
        }
        for code, spec in VITALS.items()
        for unit, (low, high) in spec.units.items()
    ]
    schema["anyOf"] = rows


class Observation(_Model):
    """One vital sign: LOINC code, value, UCUM unit, when it was measured, and by what."""

    model_config = ConfigDict(json_schema_extra=_known_vitals)

    code: str = Field(pattern=LOINC_PATTERN, description="LOINC code, e.g. 8867-4 for heart rate.")
    value: WireNumber = Field(description="The measured value in `unit`; for a known code, within its plausible range.")
    unit: str = Field(
        pattern=UCUM_PATTERN,
        description="UCUM case-sensitive unit code, e.g. mm[Hg], /min, Cel; for a known code, one of its units.",
    )
    effective: WireTime = Field(description="When the measurement was taken, by the device clock.")
    device: DeviceRef
    flags: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]] = Field(
        default_factory=list, max_length=32, description="Measurement status flags from the device."
    )
    device_clock_offset_s: WireNumber | None = Field(
        default=None,
        description="The measuring device's clock minus the kiosk's, in seconds, as the kiosk measured it; "
        "`effective` is already corrected by it. Absent when the device has no clock the kiosk can read.",
    )
    device_user: Annotated[int, Field(ge=0, le=255), BeforeValidator(_integral)] | None = Field(
        default=None, description="User index on a shared device (cuff, scale); 255 = unknown user."
    )
    device_sequence: WireCount | None = Field(
        default=None, description="The device's own record number (e.g. glucose), for de-duplication."
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
    since: WireTime


class StatusPayload(_Model):
    software_version: str = Field(max_length=64)
    outbox_backlog: WireCount = Field(description="Items waiting for the hub's receipt.")
    outbox_capacity: WireCount
    uptime_s: float = Field(ge=0, le=MAX_WIRE_INT)
    alerts: list[StatusAlert] = Field(default_factory=list, max_length=32)
    config_version: WireCount | None = Field(default=None, description="The remote config version applied.")
    config_error: str | None = Field(default=None, max_length=500, description="Why the last config was refused.")


class ClockInfo(_Model):
    """The device clock at the time the envelope was created, and how far off it is believed to be."""

    time: WireTime = Field(description="Device clock reading when the envelope was created.")
    offset_ms: WireNumber | None = Field(
        default=None,
        description="Estimated (reference clock - device clock) in ms; add it to device times to correct them. "
        "null when not yet estimated.",
    )
    source: Literal["hub", "ntp", "none"] = Field(default="none", description="Where the offset estimate came from.")


class _EnvelopeBase(_Model):
    v: ProtocolV1 = Field(description="Protocol version.")
    id: str = Field(pattern=MESSAGE_ID_PATTERN, description="UUIDv7; unique; the hub de-duplicates on it.")
    kiosk: KioskId
    seq: WirePositive = Field(description="Per-kiosk sequence number, increasing in enqueue order.")
    clock: ClockInfo


class ObservationsEnvelope(_EnvelopeBase):
    kind: Literal["observations"]
    payload: ObservationsPayload


class StatusEnvelope(_EnvelopeBase):
    kind: Literal["status"]
    payload: StatusPayload


def _base64_chunk(schema: dict[str, Any]) -> None:
    """A chunk's base64 text, bounded so that exactly the texts decoding to 1..ATTACHMENT_CHUNK_BYTES bytes pass.

    Length alone cannot say it: the longest allowed text decodes to one byte too many unless it ends in
    padding, so that one length must carry an '='.
    """
    whole, rest = divmod(ATTACHMENT_CHUNK_BYTES, 3)
    schema.pop("format", None)  # pydantic's "base64" is no JSON Schema format; contentEncoding is the keyword
    schema.update(contentEncoding="base64", pattern=BASE64_PATTERN, minLength=4)
    if rest == 0:
        schema["maxLength"] = 4 * whole
        return
    schema["maxLength"] = 4 * (whole + 1)
    schema["not"] = {
        "$comment": f"at {4 * (whole + 1)} characters, text without padding decodes to more than "
        f"{ATTACHMENT_CHUNK_BYTES} bytes",
        "minLength": 4 * (whole + 1),
        "pattern": "^[^=]*$" if rest == 2 else "^[^=]*=?$",
    }


class AttachmentPayload(_Model):
    """One chunk of a file (a case photo). The hub assembles the chunks and checks the whole file's hash."""

    attachment: str = Field(
        pattern=ATTACHMENT_ID_PATTERN, description="The file's id (a UUID), the same in every chunk."
    )
    media_type: Literal["image/jpeg"] = Field(description="What the assembled file is.")
    size: Annotated[int, Field(ge=1, le=MAX_ATTACHMENT_BYTES), BeforeValidator(_integral)] = Field(
        description="Bytes of the whole file."
    )
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the whole file, hex.")
    index: Annotated[int, Field(ge=0, le=MAX_ATTACHMENT_BYTES // 4096 - 1), BeforeValidator(_integral)] = Field(
        description="This chunk's position, from 0; below `count` (the hub checks it: JSON Schema cannot)."
    )
    count: Annotated[int, Field(ge=1, le=MAX_ATTACHMENT_BYTES // 4096), BeforeValidator(_integral)] = Field(
        description="How many chunks the file has."
    )
    data: Annotated[Base64Bytes, BeforeValidator(_base64_text)] = Field(
        description=f"The chunk, standard base64 with padding; 1 to {ATTACHMENT_CHUNK_BYTES} bytes decoded.",
        json_schema_extra=_base64_chunk,
    )
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


# Both number branches carry the wire's bound: otherwise 2**64 would fail the integer branch and be taken,
# rounded, by the float one. true stays a boolean and 1 an integer (strict union).
AnswerValue = (
    bool
    | Annotated[int, Field(ge=-MAX_WIRE_INT, le=MAX_WIRE_INT)]
    | WireNumber
    | Annotated[str, Field(max_length=2000)]
    | list[Annotated[str, Field(max_length=200)]]
)


class CaseAnswer(_Model):
    link_id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$", description="The questionnaire item answered.")
    value: AnswerValue = Field(description="The answer: yes/no, a number, a text, or the chosen options.")


class QuestionnaireRef(_Model):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    version: WirePositive


class CasePayload(_Model):
    """An asynchronous (store-and-forward) case: the patient's answers, free text, photos and the vitals with it.

    Photos travel as `attachment` chunks and vitals as `observations` envelopes; the case names them by id,
    so nothing is sent twice and the hub can show the case once they have all arrived.
    """

    case: str = Field(pattern=ATTACHMENT_ID_PATTERN, description="The case's id (a UUID), chosen by the kiosk.")
    subject: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$", description="The patient (kiosk check-in code).")
    questionnaire: QuestionnaireRef
    answers: list[CaseAnswer] = Field(
        default_factory=list,
        max_length=200,
        description="Each questionnaire item answered at most once: link_ids are distinct (the hub checks it: "
        "JSON Schema cannot).",
    )
    text: str = Field(default="", max_length=MAX_CASE_TEXT, description="The patient's own words.")
    attachments: list[Annotated[str, Field(pattern=ATTACHMENT_ID_PATTERN)]] = Field(default_factory=list, max_length=20)
    vitals: list[Annotated[str, Field(pattern=MESSAGE_ID_PATTERN)]] = Field(
        default_factory=list, max_length=50, description="Ids of the observations envelopes taken for this case."
    )
    created: WireTime = Field(description="When the patient sent it, by the kiosk clock.")

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
    """`consult`: reserved in v1; payload free-form until specified.

    The hub parses it only to refuse it with a clear reason; the published schema leaves it out, so a
    device maker's validator refuses it too.
    """

    kind: Literal["consult"]
    payload: dict[str, Any]


Envelope = Annotated[
    ObservationsEnvelope | StatusEnvelope | AttachmentEnvelope | CaseEnvelope | ReservedEnvelope,
    Field(discriminator="kind"),
]
_ENVELOPE = TypeAdapter(Envelope)
# What a v1 hub accepts, for the published schema: the reserved kinds are not in it.
_PUBLISHED = TypeAdapter(
    Annotated[ObservationsEnvelope | StatusEnvelope | AttachmentEnvelope | CaseEnvelope, Field(discriminator="kind")]
)

AnyEnvelope = ObservationsEnvelope | StatusEnvelope | AttachmentEnvelope | CaseEnvelope | ReservedEnvelope

# Error types whose input is worth quoting: the reason then says what arrived ("got true"), not only what
# was expected. Left out: limits of length and count (the input can be a long text or a whole list) and
# patterns (the input can be a patient's check-in code, which a reason has no need to repeat).
_QUOTE_INPUT = frozenset(
    {
        "bool_type",
        "int_type",
        "float_type",
        "string_type",
        "datetime_type",
        "datetime_parsing",
        "datetime_from_date_parsing",
        "datetime_rfc3339",
        "timezone_aware",
        "literal_error",
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
    }
)


def _quoted(value: object) -> str | None:
    """The input as JSON spells it (true, null, "7"), shortened; None for objects and lists."""
    if value is None or isinstance(value, bool | int | float | str):
        text = json.dumps(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return None


def _describe(error: ValidationError) -> str:
    """One line a person can act on: where, what is wrong and what arrived, for up to three problems."""
    parts = []
    for item in error.errors()[:3]:
        loc = item["loc"]
        if loc and loc[0] in KIND_VALUES:  # pydantic prefixes the union's tag; a person needs the path only
            loc = loc[1:]
        where = ".".join(str(p) for p in loc) or "(envelope)"
        msg = item["msg"].removeprefix("Value error, ")
        shown = _quoted(item.get("input")) if item["type"] in _QUOTE_INPUT else None
        parts.append(f"{where}: {msg}" + (f", got {shown}" if shown is not None else ""))
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
    """Build and validate an envelope from its parts (the kiosk side).

    The parts are written as JSON and validated exactly as the hub will validate the bytes, so a kiosk
    never stores what the hub would refuse. Python objects become their JSON spelling first (a datetime
    its ISO text, a model its fields); a value of the wrong type (True or "72" for a number) is refused
    here, as on the hub, not coerced.
    """
    data = {"v": PROTOCOL_VERSION, "id": message_id, "kiosk": kiosk, "seq": seq, "kind": kind, "clock": clock}
    data["payload"] = payload
    try:
        raw = to_json(data, inf_nan_mode="constants")  # NaN stays NaN, to be refused by name, not turned null
    except PydanticSerializationError as exc:
        raise EnvelopeError(f"{kind} payload cannot be written as JSON: {exc}") from None
    return parse_envelope(raw)


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

    v: ProtocolV1 = 1
    kind: Literal["receipt"] = "receipt"
    accepted: list[str] = Field(default_factory=list)
    rejected: list[Rejection] = Field(default_factory=list)
    hub_time: WireTime = Field(description="Hub clock when the receipt was sent; kiosks estimate their offset from it.")


def parse_receipt(raw: bytes | str) -> Receipt:
    try:
        return Receipt.model_validate_json(raw)
    except ValidationError as exc:
        raise EnvelopeError(_describe(exc)) from None


def envelope_json_schema() -> dict[str, Any]:
    """The JSON Schema of the uplink envelope (what a compatible kiosk must send)."""
    schema = _PUBLISHED.json_schema(mode="validation")  # what the hub accepts
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://telehealth-edge.invalid/schema/envelope-v1.json"
    schema["title"] = f"Kiosk uplink envelope, protocol v{PROTOCOL_VERSION}"
    reserved = ", ".join(sorted(RESERVED_KINDS))
    schema["description"] = (
        "One message from a kiosk to the hub. Published alone on kiosk/{kiosk}/up/{kind} as JSON, "
        "or several per message on kiosk/{kiosk}/up/batch, one envelope per line (NDJSON). "
        f"Reserved kinds ({reserved}) are refused until specified, so they are not in this schema. "
        "Strict: no value is converted from another JSON type; every number lies between -(2^53 - 1) and 2^53 - 1. "
        "Dates must also be real dates (format: date-time). The hub checks two more rules this schema "
        "cannot state: " + "; ".join(SEMANTIC_RULES) + "."
    )
    return schema


def receipt_json_schema() -> dict[str, Any]:
    schema = Receipt.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
