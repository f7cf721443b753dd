"""Live consults: the waiting room (patients asking to see a provider now), Join, and the call page.

The call itself runs in the page's script (`static/consult.js`) over `/ws/consults/{id}` (`signaling.py`);
media goes between the browser and the kiosk, never through the hub. Every view of the waiting room,
every call page view and every join is audited; another clinic's consult is "not found".
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from device.protocol.signaling import HEARTBEAT_S
from device.protocol.vitals import VITALS
from hub import audit, patients
from hub.accounts import users
from hub.accounts.users import User
from hub.consults import ice
from hub.consults import store as consults
from hub.consults.relay import Relay
from hub.consults.store import Consult, ConsultError
from hub.web.security import Principal, require_user, workspace
from hub.web.templating import TEMPLATES, utc_label
from hub.workspace import Workspace

router = APIRouter(include_in_schema=False)
Ws = Annotated[Workspace, Depends(workspace)]
User_ = Annotated[Principal, Depends(require_user)]

REASONS = {
    "finished": "someone ended the call",
    "cancelled": "the patient stopped waiting",
    "peer_gone": "the connection to one side was lost",
    "failed": "the video could not connect",
    "declined": "no provider could take it",
}


def consult_relay(request: Request) -> Relay:
    """FastAPI dependency: the app's signaling relay (the join must tell the waiting kiosks)."""
    found: Relay = request.app.state.consult_relay
    return found


Relay_ = Annotated[Relay, Depends(consult_relay)]


def waiting_for_nav(request: Request, user: User | None) -> int:
    """How many patients wait at the person's clinic: the count beside "Consults" in every page's menu."""
    if user is None:
        return 0
    ws: Workspace = request.app.state.workspace
    return consults.waiting_count(ws.conn(), user.clinic_id)


TEMPLATES.env.globals["consults_waiting"] = waiting_for_nav


def _measured(effective: str) -> str:
    """The kiosk's own time stamp for a reading, when it sent a readable one."""
    try:
        return utc_label(effective) if effective else "during this visit"
    except ValueError:
        return "during this visit"


def _vitals(consult: Consult) -> list[dict[str, Any]]:
    named = {code: spec.name for code, spec in VITALS.items()}
    return [
        {**v, "name": named.get(v["code"], v["code"]), "measured": _measured(v["effective"])} for v in consult.vitals
    ]


def _waiting(ws: Workspace, clinic_id: str) -> list[dict[str, Any]]:
    conn = ws.conn()
    names = patients.names(conn, clinic_id)
    return [
        {"consult": c, "patient_name": names.get(c.patient_id) if c.patient_id else None, "vitals": _vitals(c)}
        for c in consults.waiting(conn, clinic_id)
    ]


def _audit_waiting_room(ws: Workspace, principal: Principal, rows: list[dict[str, Any]], *, refresh: bool) -> None:
    """Each view is audited with the consults it showed (ids only). A self-refresh showing the same patients
    as this session's last entry, within `audit_refresh_s`, adds nothing: the trail stays complete, not flooded."""
    now = ws.now()
    shown = sorted(r["consult"].id for r in rows)
    detail = {"consults": shown}
    target = principal.session.id[:12]
    if refresh:
        since = now - ws.settings.audit_refresh_s
        last = audit.last_consults_view_detail(ws.conn(), principal.clinic_id, principal.user.id, target, since)
        if last is not None and last == detail:
            return
    with ws.write() as w:
        audit.record(w, principal.actor, "view_consults", now, target=target, detail=detail)


def _room(request: Request, ws: Workspace, principal: Principal, template: str) -> Response:
    rows = _waiting(ws, principal.clinic_id)
    _audit_waiting_room(ws, principal, rows, refresh=template == "consults_rows.html")
    return TEMPLATES.TemplateResponse(
        request,
        template,
        {"user": principal.user, "csrf_token": principal.session.csrf, "rows": rows, "now": ws.now(),
         "refresh_s": ws.settings.consults.refresh_s, "error": request.query_params.get("error")},
    )  # fmt: skip


@router.get("/consults", response_class=HTMLResponse)
def waiting_room(request: Request, principal: User_, ws: Ws) -> Response:
    return _room(request, ws, principal, "consults.html")


@router.get("/consults/rows", response_class=HTMLResponse)
def waiting_room_rows(request: Request, principal: User_, ws: Ws) -> Response:
    """The table body alone, polled by the page (X-Auto-Refresh: not activity) so arrivals show without a reload."""
    return _room(request, ws, principal, "consults_rows.html")


@router.get("/consults/waiting-count", response_class=HTMLResponse)
def waiting_count(request: Request, principal: User_, ws: Ws) -> Response:
    """The menu's count, polled by every page; a number only, so it is not audited."""
    return TEMPLATES.TemplateResponse(
        request,
        "consults_count.html",
        {"user": principal.user, "refresh_s": ws.settings.consults.refresh_s},
    )


@router.post("/consults/{consult_id}/join")
def join(principal: User_, ws: Ws, relay: Relay_, consult_id: str) -> Response:
    now = ws.now()
    try:
        with ws.write() as w:
            patient_id = consults.join(w, principal.clinic_id, consult_id, user_id=principal.user.id, now=now)
            audit.record(w, principal.actor, "join_consult", now, patient_id=patient_id, target=f"consult:{consult_id}")
    except LookupError:
        raise HTTPException(404, "no such consult") from None
    except ConsultError as exc:
        return RedirectResponse(f"/consults?error={quote(str(exc))}", status_code=303)
    relay.consult_joined(consult_id, principal.clinic_id)
    return RedirectResponse(f"/consults/{consult_id}", status_code=303)


@router.get("/consults/{consult_id}", response_class=HTMLResponse)
def call_page(request: Request, principal: User_, ws: Ws, consult_id: str) -> Response:
    conn = ws.conn()
    consult = consults.get(conn, principal.clinic_id, consult_id)
    if consult is None:
        raise HTTPException(404, "no such consult")
    patient = None
    if consult.patient_id:
        patient = patients.name_and_code(conn, consult.patient_id)
    provider = users.by_id(conn, consult.provider_user_id) if consult.provider_user_id is not None else None
    mine = consult.state == "live" and consult.provider_user_id == principal.user.id
    with ws.write() as w:
        audit.record(w, principal.actor, "view_consult", ws.now(), patient_id=consult.patient_id,
                     target=f"consult:{consult.id}")  # fmt: skip
    settings = ws.settings.consults
    servers = ice.servers(settings.ice, consult.id, ice.turn_clock()) if mine else []
    return TEMPLATES.TemplateResponse(
        request,
        "consult.html",
        {
            "user": principal.user,
            "csrf_token": principal.session.csrf,
            "consult": consult,
            "patient": patient,
            "provider": provider,
            "mine": mine,
            "vitals": _vitals(consult),
            "reason": REASONS.get(consult.reason or "", consult.reason),
            "now": ws.now(),
            "ice_servers": [s.model_dump(exclude_none=True) for s in servers],
            "relay_only": settings.ice.relay_only,
            "vital_names": {code: spec.name for code, spec in VITALS.items()},
            "heartbeat_s": HEARTBEAT_S,
            "gone_after_s": settings.gone_after_s,
        },
    )
