"""What each kiosk should run (`hub kiosks config`), and getting it there as a retained MQTT message.

A change stores a new version; ingest's downlink sender publishes every version not yet
published, retained, so a kiosk offline today gets it on its next connect. The kiosk reports
the version it applied (or why it refused one) in its status; the fleet page compares them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pydantic import ValidationError

from device.protocol.remote_config import KioskSettings, RemoteConfig
from device.protocol.topics import Topics
from hub.db import Connection
from hub.downlink import Route, broker_filter


class ConfigChangeError(ValueError):
    pass


def current(conn: Connection, kiosk: str) -> RemoteConfig | None:
    """The kiosk's settings, or None if it has none (never set, or withdrawn when it was revoked)."""
    return _stored(conn, kiosk)[1]


def _stored(conn: Connection, kiosk: str) -> tuple[int, RemoteConfig | None]:
    """The last version number used for the kiosk (0: none yet) and its settings, if not withdrawn."""
    row = conn.execute("SELECT version, body FROM kiosk_configs WHERE kiosk = ?", (kiosk,)).fetchone()
    if row is None:
        return 0, None
    return int(row[0]), RemoteConfig.model_validate_json(row[1]) if row[1] else None


def withdraw(conn: Connection, kiosk: str) -> None:
    """A revoked kiosk's settings leave the broker: an empty retained message deletes the retained copy.

    Stored as a new version with an empty body, which the downlink sender publishes like any other;
    the version number goes on, so a kiosk added again later never sees an old number reused.
    """
    conn.execute("UPDATE kiosk_configs SET version = version + 1, body = '' WHERE kiosk = ? AND body != ''", (kiosk,))


def change(conn: Connection, kiosk: str, changes: dict[str, str], now: float) -> RemoteConfig:
    """The kiosk's settings with `changes` (name=value, validated) as a new version."""
    if not Topics.is_valid_kiosk_id(kiosk):
        raise ConfigChangeError(f"{kiosk!r} is not a kiosk id")
    last_version, before = _stored(conn, kiosk)
    settings = (before.settings if before else KioskSettings()).model_dump()
    unknown = sorted(set(changes) - set(KioskSettings.model_fields))
    if unknown:
        raise ConfigChangeError(
            f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(KioskSettings.model_fields)}"
        )
    try:
        new_settings = KioskSettings.model_validate({**settings, **changes})
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        raise ConfigChangeError(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None
    config = RemoteConfig(
        kiosk=kiosk,
        version=last_version + 1,
        settings=new_settings,
        issued_at=dt.datetime.fromtimestamp(now, dt.UTC),
    )
    conn.execute(
        "INSERT INTO kiosk_configs (kiosk, version, body, created_at) VALUES (?,?,?,?) "
        "ON CONFLICT (kiosk) DO UPDATE SET version = excluded.version, body = excluded.body, "
        "created_at = excluded.created_at",
        (kiosk, config.version, config.model_dump_json(), now),
    )
    return config


@dataclass(frozen=True)
class Unpublished:
    kiosk: str
    version: int
    body: str


def unpublished(conn: Connection, route: Route | None = None) -> list[Unpublished]:
    """Configurations not yet published (retained); with several brokers, those of kiosks on `route`'s broker."""
    where, params = broker_filter(route)
    return [
        Unpublished(k, int(v), str(b))
        for k, v, b in conn.execute(
            "SELECT c.kiosk, c.version, c.body FROM kiosk_configs c LEFT JOIN kiosks k ON k.id = c.kiosk "
            f"WHERE c.published_version < c.version{where}",
            params,
        )
    ]


def mark_published(conn: Connection, done: list[Unpublished]) -> None:
    conn.executemany(
        "UPDATE kiosk_configs SET published_version = greatest(published_version, ?) WHERE kiosk = ?",
        [(u.version, u.kiosk) for u in done],
    )
