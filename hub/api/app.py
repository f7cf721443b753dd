"""Routes. Every route requires a bearer token unless its path is in EXEMPT_PATHS."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Response
from pydantic import AwareDatetime

from device.protocol.envelope import utc_iso
from device.protocol.vitals import LOINC_PATTERN
from hub import __version__
from hub.api.auth import bearer_guard
from hub.api.schemas import AttachmentOut, DeadLetterOut, Health, KioskOut, ObservationOut
from hub.store import HubStore

# The short, explicit list of routes anyone may call: liveness/readiness probes and the
# API's own documentation (which contains no data).
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/openapi.json"})


def _ts(value: float | None) -> str | None:
    return None if value is None else utc_iso(datetime.fromtimestamp(value, UTC))


class _Reader:
    """One read connection shared by request threads, used under a lock (SQLite WAL: readers never block ingest)."""

    def __init__(self, path: Path) -> None:
        self.store = HubStore(path)
        self.lock = threading.Lock()


def create_app(
    store_path: str | Path,
    tokens: set[str],
    broker_ready: Callable[[], bool] = lambda: True,
) -> FastAPI:
    if not tokens:
        raise ValueError("the API needs at least one token")
    reader = _Reader(Path(store_path))
    app = FastAPI(
        title="Telehealth hub",
        version=__version__,
        description="Kiosk data forwarded over MQTT. Every data route needs `Authorization: Bearer <token>`.",
        redoc_url=None,  # one documentation page is enough, and one less exempt path
    )
    api = APIRouter(prefix="/api/v1", dependencies=[Depends(bearer_guard(tokens))])

    @app.get("/healthz", response_model=Health, tags=["health"])
    def healthz() -> Health:
        """The process is alive."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, tags=["health"], responses={503: {"model": Health}})
    def readyz(response: Response) -> Health:
        """The database answers and ingest is connected to the broker."""
        checks = {}
        try:
            with reader.lock:
                reader.store.ping()
            checks["database"] = "ok"
        except sqlite3.Error as exc:
            checks["database"] = f"error: {type(exc).__name__}"
        checks["broker"] = "ok" if broker_ready() else "not connected"
        ok = all(v == "ok" for v in checks.values())
        if not ok:
            response.status_code = 503
        return Health(status="ok" if ok else "unavailable", checks=checks)

    @api.get("/kiosks", response_model=list[KioskOut], tags=["kiosks"])
    def list_kiosks() -> list[KioskOut]:
        """Every kiosk the hub has heard from, with last-seen time and status."""
        with reader.lock:
            rows = reader.store.kiosks()
        return [_kiosk_out(r) for r in rows]

    @api.get("/kiosks/{kiosk_id}", response_model=KioskOut, tags=["kiosks"])
    def get_kiosk(kiosk_id: str) -> KioskOut:
        with reader.lock:
            row = reader.store.kiosk(kiosk_id)
        if row is None:
            raise HTTPException(404, f"no kiosk {kiosk_id!r}")
        return _kiosk_out(row)

    @api.get("/kiosks/{kiosk_id}/observations", response_model=list[ObservationOut], tags=["observations"])
    def observations(
        kiosk_id: str,
        code: Annotated[str | None, Query(pattern=LOINC_PATTERN, description="LOINC code")] = None,
        since: Annotated[AwareDatetime | None, Query(description="Effective time >= this (ISO-8601)")] = None,
        until: Annotated[AwareDatetime | None, Query(description="Effective time < this (ISO-8601)")] = None,
        limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    ) -> list[ObservationOut]:
        """A kiosk's observations in the kiosk's order, filtered by code and time range."""
        with reader.lock:
            if reader.store.kiosk(kiosk_id) is None:
                raise HTTPException(404, f"no kiosk {kiosk_id!r}")
            rows = reader.store.observations(
                kiosk_id,
                code=code,
                since=utc_iso(since) if since else None,
                until=utc_iso(until) if until else None,
                limit=limit,
            )
        return [_observation_out(r) for r in rows]

    @api.get("/kiosks/{kiosk_id}/attachments", response_model=list[AttachmentOut], tags=["attachments"])
    def attachments(kiosk_id: str) -> list[AttachmentOut]:
        """A kiosk's files (case photos), newest first: complete, still arriving, or corrupt."""
        with reader.lock:
            if reader.store.kiosk(kiosk_id) is None:
                raise HTTPException(404, f"no kiosk {kiosk_id!r}")
            rows = reader.store.attachments(kiosk_id)
        return [
            AttachmentOut(
                id=r["id"],
                kiosk=r["kiosk"],
                subject=r["subject"],
                media_type=r["media_type"],
                size=r["size"],
                sha256=r["sha256"],
                status=r["status"],
                first_chunk_at=_ts(r["first_chunk_at"]) or "",
                completed_at=_ts(r["completed_at"]),
            )
            for r in rows
        ]

    @api.get(
        "/attachments/{attachment_id}",
        tags=["attachments"],
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}, 404: {}, 409: {}},
    )
    def attachment(attachment_id: str) -> Response:
        """The file's bytes, only once all chunks arrived and its SHA-256 matched what the kiosk announced."""
        with reader.lock:
            row = reader.store.attachment(attachment_id)
        if row is None:
            raise HTTPException(404, f"no attachment {attachment_id!r}")
        if row["status"] != "complete":
            raise HTTPException(409, f"attachment {attachment_id!r} is {row['status']}, not complete")
        return Response(bytes(row["data"]), media_type=row["media_type"], headers={"X-Content-SHA256": row["sha256"]})

    @api.get("/dead-letters", response_model=list[DeadLetterOut], tags=["dead letters"])
    def dead_letters(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[DeadLetterOut]:
        """Messages ingest refused, newest first, with the reason and the start of the raw bytes."""
        with reader.lock:
            rows = reader.store.dead_letters(limit)
        return [
            DeadLetterOut(
                id=r["id"],
                topic=r["topic"],
                kiosk_hint=r["kiosk_hint"],
                message_id=r["message_id"],
                reason=r["reason"],
                size=r["size"],
                count=r["count"],
                first_seen=_ts(r["first_seen"]) or "",
                last_seen=_ts(r["last_seen"]) or "",
                raw_preview=bytes(r["raw"][:2000]).decode("utf-8", errors="replace"),
                raw_truncated=bool(r["raw_truncated"]) or r["size"] > 2000,
            )
            for r in rows
        ]

    app.include_router(api)
    return app


def _kiosk_out(r: dict[str, Any]) -> KioskOut:
    status = "unknown" if r["online"] is None else ("online" if r["online"] else "offline")
    return KioskOut(
        id=r["id"],
        status=status,
        last_seen=_ts(r["last_seen"]),
        last_seq=r["last_seq"],
        software_version=r["software_version"],
        outbox_backlog=r["outbox_backlog"],
        alerts=json.loads(r["alerts"]),
        clock_offset_ms=r["clock_offset_ms"],
    )


def _observation_out(r: dict[str, Any]) -> ObservationOut:
    corrected = None
    if r["clock_offset_ms"] is not None:
        effective = datetime.fromisoformat(r["effective"].replace("Z", "+00:00"))
        corrected = utc_iso(effective + timedelta(milliseconds=r["clock_offset_ms"]))
    return ObservationOut(
        message_id=r["message_id"],
        seq=r["seq"],
        code=r["code"],
        value=r["value"],
        unit=r["unit"],
        effective=r["effective"],
        effective_corrected=corrected,
        clock_offset_ms=r["clock_offset_ms"],
        device=json.loads(r["device"]),
        flags=json.loads(r["flags"]),
        subject=r["subject"],
        device_user=r["device_user"],
        device_sequence=r["device_sequence"],
        device_clock_offset_s=r["device_clock_offset_s"],
        method=r["method"],
        quality=r["quality"],
    )
