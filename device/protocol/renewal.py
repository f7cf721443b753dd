"""Renewing a kiosk's client certificate over MQTT, without a visit.

The kiosk makes a new key and sends, on `kiosk/{id}/up/renew`, a certificate signing request
for it, the certificate it holds now, and a signature of the request by that certificate's key
(it is connected with that certificate and its password, so the broker has checked who it is
too). The hub answers on `kiosk/{id}/down/certificate` with a certificate for the new key, or
with the reason it will not. The private key never leaves the kiosk; the hub signs only for the
kiosk whose topic the request came on, only while that kiosk's identity is live, and only in the
last RENEW_DAYS of the certificate it holds.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from device.protocol.envelope import EnvelopeError
from device.protocol.provisioning import PEM_MAX

RENEW_DAYS = 30  # a kiosk asks, and the hub signs, only in the certificate's last 30 days
RequestId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{8,64}$")]


class RenewalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    request: RequestId
    csr_pem: str = Field(max_length=PEM_MAX, pattern=r"^-----BEGIN CERTIFICATE REQUEST-----")
    cert_pem: str = Field(
        max_length=PEM_MAX, pattern=r"^-----BEGIN CERTIFICATE-----", description="the certificate the kiosk holds now"
    )
    proof: str = Field(
        max_length=512,
        pattern=r"^[A-Za-z0-9+/=]+$",
        description="base64 ECDSA-SHA256 signature of csr_pem's bytes by the key of cert_pem",
    )


class RenewalReply(BaseModel):
    """Exactly one of `cert_pem` (the new certificate) and `error` (why not, in words)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request: RequestId
    cert_pem: str | None = Field(default=None, max_length=PEM_MAX, pattern=r"^-----BEGIN CERTIFICATE-----")
    error: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _one_of(self) -> RenewalReply:
        if (self.cert_pem is None) == (self.error is None):
            raise ValueError("a reply holds either a certificate or an error")
        return self


def parse_request(raw: bytes) -> RenewalRequest:
    try:
        return RenewalRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise EnvelopeError(_first("renewal request", exc)) from None


def parse_reply(raw: bytes) -> RenewalReply:
    try:
        return RenewalReply.model_validate_json(raw)
    except ValidationError as exc:
        raise EnvelopeError(_first("renewal reply", exc)) from None


def _first(what: str, exc: ValidationError) -> str:
    err = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in err["loc"]) or what
    return f"not a {what}: {where}: {err['msg']}"
