"""The JSON API (`/api/v1`): kiosks, observations, files and dead letters, for other systems.

Each client has its own token with scopes (`hub token create`). A clinic's token sees only
that clinic's kiosks: another clinic's kiosk answers 404, exactly like one that does not
exist. Reads of health data are audited like the pages' (one entry per request).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from pydantic import AwareDatetime

from device.protocol.envelope import utc_iso
from device.protocol.vitals import LOINC_PATTERN
from hub import audit
from hub.api.auth import TokenPrincipal, require_scope
from hub.api.schemas import AttachmentOut, DeadLetterOut, KioskOut, ObservationOut
from hub.web.security import refuse_nul
from hub.workspace import Workspace, from_request


def _ts(value: float | None) -> str | None:
    return None if value is None else utc_iso(datetime.fromtimestamp(value, UTC))


Ws = Annotated[Workspace, Depends(from_request)]
KiosksRead = Annotated[TokenPrincipal, Depends(require_scope("kiosks:read"))]
ObsRead = Annotated[TokenPrincipal, Depends(require_scope("observations:read"))]
FilesRead = Annotated[TokenPrincipal, Depends(require_scope("attachments:read"))]
DeadRead = Annotated[TokenPrincipal, Depends(require_scope("dead-letters:read"))]


def api_router() -> APIRouter:
    api = APIRouter(prefix="/api/v1", dependencies=[Depends(refuse_nul)])

    def visible(ws: Workspace, token: TokenPrincipal, kiosk_id: str) -> dict[str, Any]:
        """The kiosk, if this token may see it; otherwise 404 as if it did not exist."""
        row = ws.reader().kiosk(kiosk_id)
        if row is None or (token.clinic_id is not None and row["clinic_id"] != token.clinic_id):
            raise HTTPException(404, "no kiosk with that id")
        return row

    @api.get("/kiosks", response_model=list[KioskOut], tags=["kiosks"])
    def list_kiosks(token: KiosksRead, ws: Ws) -> list[KioskOut]:
        """The kiosks this token may see (its clinic's; every kiosk for an operator token)."""
        return [_kiosk_out(r) for r in ws.reader().kiosks(token.clinic_id)]

    @api.get("/kiosks/{kiosk_id}", response_model=KioskOut, tags=["kiosks"], responses={404: {}})
    def get_kiosk(token: KiosksRead, ws: Ws, kiosk_id: str) -> KioskOut:
        return _kiosk_out(visible(ws, token, kiosk_id))

    @api.get(
        "/kiosks/{kiosk_id}/observations",
        response_model=list[ObservationOut],
        tags=["observations"],
        responses={404: {}},
    )
    def observations(
        token: ObsRead,
        ws: Ws,
        kiosk_id: str,
        code: Annotated[str | None, Query(pattern=LOINC_PATTERN, description="LOINC code")] = None,
        since: Annotated[AwareDatetime | None, Query(description="Effective time >= this (ISO-8601)")] = None,
        until: Annotated[AwareDatetime | None, Query(description="Effective time < this (ISO-8601)")] = None,
        limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    ) -> list[ObservationOut]:
        """A kiosk's observations in the kiosk's order, filtered by code and time range."""
        visible(ws, token, kiosk_id)
        rows = ws.reader().observations(
            kiosk_id,
            code=code,
            since=utc_iso(since) if since else None,
            until=utc_iso(until) if until else None,
            limit=limit,
        )
        with ws.write() as conn:
            audit.record(conn, token.actor, "api_observations", ws.now(), target=f"kiosk:{kiosk_id}",
                         detail={"rows": len(rows)})  # fmt: skip
        return [_observation_out(r) for r in rows]

    @api.get("/kiosks/{kiosk_id}/attachments", response_model=list[AttachmentOut], tags=["attachments"],
             responses={404: {}})  # fmt: skip
    def attachments(token: FilesRead, ws: Ws, kiosk_id: str) -> list[AttachmentOut]:
        """A kiosk's files (case photos), newest first: complete, still arriving, or corrupt."""
        visible(ws, token, kiosk_id)
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
            for r in ws.reader().attachments(kiosk_id)
        ]

    @api.get(
        "/attachments/{attachment_id}",
        tags=["attachments"],
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}, 404: {}, 409: {}},
    )
    def attachment(token: FilesRead, ws: Ws, attachment_id: str) -> Response:
        """The file's bytes, only once all chunks arrived and its SHA-256 matched what the kiosk announced."""
        row = ws.reader().attachment(attachment_id)
        if row is None:
            raise HTTPException(404, "no attachment with that id")
        visible(ws, token, row["kiosk"])
        if row["status"] != "complete":
            raise HTTPException(409, f"attachment {attachment_id!r} is {row['status']}, not complete")
        with ws.write() as conn:
            audit.record(conn, token.actor, "api_attachment", ws.now(), target=f"attachment:{attachment_id}")
        return Response(bytes(row["data"]), media_type=row["media_type"], headers={"X-Content-SHA256": row["sha256"]})

    @api.get("/dead-letters", response_model=list[DeadLetterOut], tags=["dead letters"])
    def dead_letters(token: DeadRead, ws: Ws, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[DeadLetterOut]:
        """Messages ingest refused, newest first, with the reason and the start of the raw bytes (operators only)."""
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
            for r in ws.reader().dead_letters(limit)
        ]

    return api


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
        effective = datetime.fromisoformat(r["effective"])
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
