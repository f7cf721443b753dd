"""The provisioning bundle: everything a new kiosk needs to prove who it is, in one file.

`hub kiosks add` writes it (owner-only) and `kiosk provision FILE` imports it. It holds the
kiosk's secrets (private key, MQTT password, consult credential): carry it like a key, import
it, then delete it. The hub keeps no copy of any of them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from device.protocol.envelope import EnvelopeError, KioskId, UtcTime

BUNDLE_FORMAT = "telehealth-kiosk-bundle/1"
PEM_MAX = 16_384


class ProvisioningBundle(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["telehealth-kiosk-bundle/1"]
    kiosk_id: KioskId
    clinic_id: str | None = Field(default=None, max_length=64)
    broker: str = Field(description="mqtts://host:port of the hub's broker", pattern=r"^mqtts?://", max_length=512)
    # Several brokers, in the order to try them (Mosquitto does not cluster: kiosks fail over between them);
    # `broker` is then the list's first, which is what an older kiosk, knowing only `broker`, reads.
    brokers: list[Annotated[str, Field(pattern=r"^mqtts?://", max_length=512)]] | None = Field(
        default=None, min_length=1, max_length=16, description="every broker, in order; broker is the first"
    )
    hub_url: str | None = Field(default=None, pattern=r"^https?://", max_length=512)
    ca_pem: str = Field(max_length=PEM_MAX, pattern=r"^-----BEGIN CERTIFICATE-----")
    cert_pem: str = Field(max_length=PEM_MAX, pattern=r"^-----BEGIN CERTIFICATE-----")
    key_pem: str = Field(max_length=PEM_MAX, pattern=r"^-----BEGIN PRIVATE KEY-----")
    mqtt_password: str = Field(min_length=16, max_length=256)
    hub_credential: str | None = Field(default=None, max_length=256)
    issued_at: UtcTime


def parse_bundle(raw: bytes) -> ProvisioningBundle:
    try:
        return ProvisioningBundle.model_validate_json(raw)
    except ValidationError as exc:
        raise EnvelopeError(_first(exc)) from None


def _first(exc: ValidationError) -> str:
    err = exc.errors(include_url=False, include_input=False)[0]  # never echo a secret back
    where = ".".join(str(p) for p in err["loc"]) or "the bundle"
    return f"not a provisioning bundle: {where}: {err['msg']}"
