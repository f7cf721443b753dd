"""The clinic's kiosks: online/offline (MQTT presence and last will), late heartbeats, backlog, version."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse

from hub import audit
from hub.fleet import status
from hub.web.security import Principal, require_user, workspace
from hub.web.templating import TEMPLATES
from hub.workspace import Workspace

router = APIRouter(include_in_schema=False)
Ws = Annotated[Workspace, Depends(workspace)]
User_ = Annotated[Principal, Depends(require_user)]


def kiosk_state(online: int | None, last_seen: float | None, now: float, late_after_s: float) -> str:
    """online / late / offline / unknown: 'late' is a kiosk the broker thinks is connected but that has gone quiet."""
    if online is None:
        return "unknown"
    if not online:
        return "offline"
    if last_seen is None or now - last_seen > late_after_s:
        return "late"
    return "online"


GROWTH_MIN_AGE_S = 120.0
GROWTH_MIN_ITEMS = 50


def backlog_growing(current: int | None, base: int | None, base_at: float | None, reported_at: float | None) -> bool:
    """Grew by at least 50 items and 10 % since a report at least two minutes older (kiosks report every 30 s).

    A kiosk that keeps taking readings but cannot deliver them (a broker it cannot reach, a hub that refuses
    it) shows this before its outbox fills; a backlog that drains, however large, does not.
    """
    if current is None or base is None or base_at is None or reported_at is None:
        return False
    if reported_at - base_at < GROWTH_MIN_AGE_S:
        return False
    return current - base >= max(GROWTH_MIN_ITEMS, base * 0.1)


def _kiosks(ws: Workspace, clinic_id: str) -> list[dict[str, Any]]:
    rows = status.clinic_kiosks(ws.conn(), clinic_id)
    now = ws.now()
    out = []
    for k in rows:
        k["state"] = kiosk_state(k["online"], k["last_seen"], now, ws.settings.late_after_s)
        k["alerts"] = json.loads(k["alerts"])
        k["backlog_growing"] = backlog_growing(
            k["outbox_backlog"], k["backlog_base"], k["backlog_base_at"], k["last_status_at"]
        )
        # Shown in amber below 30 days (fleet_rows.html): provisioning it again (`hub kiosks add`) takes a visit.
        k["cert_days_left"] = (
            None if k["cert_not_after"] is None else math.floor((float(k["cert_not_after"]) - now) / 86_400)
        )
        out.append(k)
    return out


@router.get("/fleet", response_class=HTMLResponse)
def fleet(request: Request, principal: User_, ws: Ws) -> Response:
    with ws.write() as w:
        audit.record(w, principal.actor, "view_fleet", ws.now())
    return TEMPLATES.TemplateResponse(
        request,
        "fleet.html",
        {"user": principal.user, "csrf_token": principal.session.csrf, "kiosks": _kiosks(ws, principal.clinic_id),
         "now": ws.now(), "refresh_s": ws.settings.fleet_refresh_s},
    )  # fmt: skip


@router.get("/fleet/rows", response_class=HTMLResponse)
def fleet_rows(request: Request, principal: User_, ws: Ws) -> Response:
    """The table body alone, polled by the page so status changes show without a reload."""
    return TEMPLATES.TemplateResponse(
        request,
        "fleet_rows.html",
        {"kiosks": _kiosks(ws, principal.clinic_id), "now": ws.now(), "refresh_s": ws.settings.fleet_refresh_s},
    )
