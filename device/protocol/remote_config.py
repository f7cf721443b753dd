"""Remote configuration: settings the hub may change on a kiosk without a visit.

    kiosk/{id}/down/config   hub -> kiosk, retained, QoS 1: one RemoteConfig (JSON)

Retained, so a kiosk that was offline gets the latest one as soon as it subscribes. The
kiosk applies a config whose version is newer than what it runs, keeps it on disk (a restart
starts with it, before any connection) and reports the applied version in every status
message (`config_version`); a config it refuses is reported there too (`config_error`) and
changes nothing. Only what is safe to change remotely is here: never identity or endpoints.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from device.protocol.envelope import EnvelopeError, KioskId, UtcTime


class KioskSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    heartbeat_s: float = Field(default=30.0, ge=5, le=3600, description="Seconds between status messages.")
    receipt_timeout_s: float = Field(
        default=10.0, ge=1, le=600, description="Seconds before unreceipted items are sent again."
    )
    batch_max_items: int = Field(default=500, ge=1, le=5000, description="Most envelopes in one MQTT message.")


class RemoteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kiosk: KioskId
    version: int = Field(ge=1, description="Grows with every change; the kiosk applies only a newer one.")
    settings: KioskSettings
    issued_at: UtcTime


def parse_config(raw: bytes) -> RemoteConfig:
    try:
        return RemoteConfig.model_validate_json(raw)
    except ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in err["loc"]) or "the config"
        raise EnvelopeError(f"remote config: {where}: {err['msg']}") from None
