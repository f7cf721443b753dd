"""The fleet page's table: each kiosk of a clinic as last heard from, with its wanted config and its certificate.

One row per kiosk, joining what ingest keeps of it (presence, last status, backlog and its base) with the
config version it should run (hub/fleet/remote_config.py) and its identity (certificate expiry, revocation).
The page (hub/web/routes/fleet.py) judges them: online, late or offline, a backlog growing, a certificate ending.
"""

from __future__ import annotations

from typing import Any

from hub.db import Connection

KIOSK_STATUS_COLUMNS = [
    "id", "online", "last_seen", "software_version", "outbox_backlog", "alerts", "clock_offset_ms",
    "config_version", "config_error", "config_wanted", "backlog_base", "backlog_base_at",
    "last_status_at", "cert_not_after", "revoked_at",
]  # fmt: skip


def clinic_kiosks(conn: Connection, clinic_id: str) -> list[dict[str, Any]]:
    """The clinic's kiosks by id, each as stored, keyed by KIOSK_STATUS_COLUMNS (`alerts` still JSON text;
    `config_wanted` the version of its settings stored at the hub, None when never set)."""
    rows = conn.execute(
        "SELECT k.id, k.online, k.last_seen, k.software_version, k.outbox_backlog, k.alerts, k.clock_offset_ms, "
        "k.config_version, k.config_error, c.version, k.backlog_base, k.backlog_base_at, k.last_status_at, "
        "i.cert_not_after, i.revoked_at "
        "FROM kiosks k LEFT JOIN kiosk_configs c ON c.kiosk = k.id LEFT JOIN kiosk_identities i ON i.kiosk = k.id "
        "WHERE k.clinic_id = ? ORDER BY k.id",
        (clinic_id,),
    )
    return [dict(zip(KIOSK_STATUS_COLUMNS, r, strict=True)) for r in rows]
