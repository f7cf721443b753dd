"""The hub's configuration file (`/etc/telehealth/hub.yaml`), checked before the service starts.

`hub config check FILE` and `hub serve --config FILE` read it the same way and report every
problem as `file:line: message`: the file's own, a certificate or secret file it names that is
missing or unreadable, a TLS key that does not match its certificate, and serving off loopback
without TLS. Flags given on the command line win over the file; relative paths are relative to
the file's folder. Secrets are never in the file itself, only the paths of files holding them; a
path written `credential:NAME` is the systemd credential NAME (hub.service's `LoadCredential=`), read
from `$CREDENTIALS_DIRECTORY`, so the secret can stay root-only at rest.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from device.yaml_config import ConfigError, Problem, load_located
from hub.db.location import LocationError, PostgresLocation
from hub.db.location import parse as parse_location
from hub.ingest_pool import default_workers
from hub.retention import Retention
from hub.service import DEFAULT_BROKER_PORT

PATH_KEYS = ("data", "tls_cert", "tls_key", "broker_ca", "broker_password_file", "turn_secret_file")
CREDENTIAL = "credential:"


class HubFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data: Path = Path("/var/lib/telehealth-hub")
    # A postgresql:// URL (several hub instances share one server) or a SQLite file; none: DATA/hub.db. Keep the
    # password out of this file: libpq reads it from ~/.pgpass, $PGPASSFILE, or `?passfile=` in the URL.
    database: str | None = None
    instance: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,32}$")

    @field_validator("database")
    @classmethod
    def _database(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            where = parse_location(value)
        except LocationError as exc:
            raise ValueError(str(exc)) from None
        if isinstance(where, PostgresLocation) and where.describe() != value:
            raise ValueError("a password in the URL: put it in ~/.pgpass or a passfile instead (`?passfile=PATH`)")
        return value

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    workers: int = Field(default_factory=default_workers, ge=1, le=16)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    broker: str | None = Field(
        default=None,
        pattern=r"^mqtts?://[^,]+(,\s*mqtts?://[^,]+)*$",
        description="An external broker instead of ours, or several, comma-separated (kiosks fail over between them).",
    )
    broker_ca: Path | None = None
    broker_user: str | None = None
    broker_password_file: Path | None = None
    broker_port: int = Field(default=DEFAULT_BROKER_PORT, ge=1, le=65535)
    mqtt_port: int = Field(default=8883, ge=1, le=65535)
    mqtt_bind: str = "127.0.0.1"
    mqtt_name: list[str] = Field(default_factory=list, max_length=16)
    ice_server: list[str] = Field(default_factory=list, max_length=8)
    turn_url: list[str] = Field(default_factory=list, max_length=8)
    turn_secret_file: Path | None = None
    turn_relay_only: bool = False
    # How long the hub keeps what (hub/retention.py); clinical records are kept unless the clinic sets a period.
    retention: Retention = Field(default_factory=Retention)


@dataclass(frozen=True)
class Checked:
    config: HubFile
    summary: str

    def as_defaults(self) -> dict[str, Any]:
        """Argument defaults for `hub serve`: each key is the option's argparse dest."""
        return self.config.model_dump()


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check(path: Path) -> Checked:
    located = load_located(path, HubFile, document="a hub configuration")
    problems: list[Problem] = []

    def at(key: str, message: str) -> None:
        problems.append(Problem(str(path), located.line((key,)), message))

    def resolve(key: str, value: Path | None) -> Path | None:
        if value is None or value.is_absolute():
            return value
        if str(value).startswith(CREDENTIAL):
            loaded = os.environ.get("CREDENTIALS_DIRECTORY")
            if not loaded:
                at(key, f"{value} is a systemd credential, and this process has none (LoadCredential= in hub.service)")
                return None
            return Path(loaded) / str(value).removeprefix(CREDENTIAL)
        return path.parent / value

    config = located.value.model_copy(update={key: resolve(key, getattr(located.value, key)) for key in PATH_KEYS})

    for key in ("tls_cert", "tls_key", "broker_ca", "broker_password_file", "turn_secret_file"):
        value = getattr(config, key)
        if value is not None and not value.is_file():
            at(key, f"no such file {value}")
    if (config.tls_cert is None) != (config.tls_key is None):
        at("tls_cert" if config.tls_cert else "tls_key", "tls_cert and tls_key go together")
    elif config.tls_cert is not None and config.tls_cert.is_file() and config.tls_key and config.tls_key.is_file():
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(config.tls_cert, config.tls_key)
        except ssl.SSLError as exc:
            at("tls_key", f"the key does not go with the certificate, or cannot be read: {exc.reason or exc}")
    if not _loopback(config.host) and config.tls_cert is None:
        at(
            "host",
            f"serving on {config.host} needs tls_cert and tls_key: health data crosses the network only over TLS",
        )
    if config.turn_url and config.turn_secret_file is None:
        at("turn_url", "turn_url needs turn_secret_file (coturn's static-auth-secret)")
    for listed in (config.broker or "").split(","):  # one broker, or several, comma-separated
        broker = listed.strip()
        if broker.startswith("mqtt://") and not _loopback(broker.split("://", 1)[1].rsplit(":", 1)[0]):
            at("broker", f"{broker}: an external broker off this machine must be mqtts://")
    if problems:
        raise ConfigError(problems)
    where = config.broker or f"embedded broker, kiosks on {config.mqtt_bind}:{config.mqtt_port} (TLS)"
    scheme = "https" if config.tls_cert else "http"
    summary = f"{path}: ok; {scheme}://{config.host}:{config.port}, {config.workers} ingest worker(s), {where}"
    return Checked(config, summary)
