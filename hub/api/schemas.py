"""Response models: what the API promises, and what the OpenAPI docs show."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class KioskOut(BaseModel):
    id: str
    status: Literal["online", "offline", "unknown"] = Field(description="From the kiosk's MQTT presence and last will.")
    last_seen: str | None = Field(description="Last time the hub heard from the kiosk (UTC).")
    last_seq: int
    software_version: str | None
    outbox_backlog: int | None = Field(description="Items waiting on the kiosk, as of its last status.")
    alerts: list[dict[str, Any]]
    clock_offset_ms: float | None = Field(description="Latest estimate of (hub clock - kiosk clock).")


class ObservationOut(BaseModel):
    message_id: str
    seq: int
    code: str = Field(description="LOINC code")
    value: float
    unit: str = Field(description="UCUM unit")
    effective: str = Field(description="Measurement time by the device clock (UTC)")
    effective_corrected: str | None = Field(description="Measurement time corrected by the kiosk's clock offset")
    clock_offset_ms: float | None
    device: dict[str, Any]
    flags: list[str]
    subject: str | None = Field(default=None, description="The patient the kiosk attributed the reading to")
    device_user: int | None = Field(default=None, description="User slot on a shared device (255: unknown)")
    device_sequence: int | None = Field(default=None, description="The device's own record number")
    device_clock_offset_s: float | None = Field(
        default=None, description="Device clock minus kiosk clock when read; `effective` is already corrected by it"
    )
    method: str | None = Field(default=None, description="How a derived value was computed, e.g. rppg-pos")
    quality: float | None = Field(default=None, description="The estimator's confidence in a derived value, 0-1")


class AttachmentOut(BaseModel):
    id: str
    kiosk: str
    subject: str | None
    media_type: str
    size: int
    sha256: str = Field(description="SHA-256 the kiosk announced; a complete file matched it")
    status: Literal["receiving", "complete", "corrupt"]
    first_chunk_at: str
    completed_at: str | None


class DeadLetterOut(BaseModel):
    id: int
    topic: str
    kiosk_hint: str | None
    message_id: str | None
    reason: str
    size: int
    count: int
    first_seen: str
    last_seen: str
    raw_preview: str = Field(description="The first 2,000 bytes, undecodable bytes replaced")
    raw_truncated: bool


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)
