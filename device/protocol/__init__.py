"""The wire contract between kiosk and hub: the one copy both sides import.

Depends on pydantic only, so a third party can vendor it (or build from the generated
JSON Schema, ``envelope.schema.json``) to speak to the hub.
"""

from device.protocol.envelope import (
    PROTOCOL_VERSION,
    ClockInfo,
    DeviceRef,
    Envelope,
    EnvelopeError,
    Kind,
    Observation,
    ObservationsPayload,
    Receipt,
    Rejection,
    StatusAlert,
    StatusPayload,
    encode,
    parse_envelope,
    parse_receipt,
)
from device.protocol.ids import new_message_id
from device.protocol.topics import Topics

__all__ = [
    "PROTOCOL_VERSION",
    "ClockInfo",
    "DeviceRef",
    "Envelope",
    "EnvelopeError",
    "Kind",
    "Observation",
    "ObservationsPayload",
    "Receipt",
    "Rejection",
    "StatusAlert",
    "StatusPayload",
    "Topics",
    "encode",
    "new_message_id",
    "parse_envelope",
    "parse_receipt",
]
