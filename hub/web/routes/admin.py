"""Clinic admins: the clinic's accounts (create, disable, end sessions), the kiosk PIN rule, and the audit log."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from hub import audit, kiosk_setup
from hub.accounts import passwords, sessions, users
from hub.audit import AuditFilter
from hub.web.security import Principal, require_admin, workspace
from hub.web.templating import TEMPLATES
from hub.workspace import Workspace

router = APIRouter(include_in_schema=False, prefix="/admin")
Ws = Annotated[Workspace, Depends(workspace)]
Admin = Annotated[Principal, Depends(require_admin)]


@router.get("/users", response_class=HTMLResponse)
def user_list(request: Request, principal: Admin, ws: Ws) -> Response:
    conn = ws.conn()
    now = ws.now()
    people = [
        {"user": u, "live_sessions": sessions.live_count(conn, u.id, now, ws.settings.sessions)}
        for u in users.in_clinic(conn, principal.clinic_id)
    ]
    with ws.write() as w:
        audit.record(w, principal.actor, "view_users", now)
    return TEMPLATES.TemplateResponse(
        request,
        "admin_users.html",
        {
            "user": principal.user,
            "csrf_token": principal.session.csrf,
            "people": people,
            "roles": users.ROLES,
            "pin_required": kiosk_setup.pin_required(conn, principal.clinic_id),
            "without_pin": kiosk_setup.without_pin(conn, principal.clinic_id),
            "message": request.query_params.get("message"),
            "error": request.query_params.get("error"),
        },
    )


@router.post("/kiosk-pin")
def kiosk_pin_rule(principal: Admin, ws: Ws, state: Annotated[Literal["on", "off"], Form()]) -> Response:
    """Whether every patient must enter their PIN after their code at the clinic's kiosks (sent to them at once)."""
    now = ws.now()
    required = state == "on"
    with ws.write() as conn:
        kiosk_setup.set_pin_required(conn, principal.clinic_id, required, now)
        audit.record(conn, principal.actor, "set_kiosk_pin_required", now, detail={"required": required})
    done = "Every+patient+must+now+enter+a+PIN." if required else "Only+patients+who+have+a+PIN+are+asked+for+it."
    return RedirectResponse(f"/admin/users?message={done}", status_code=303)


def _member(ws: Workspace, principal: Principal, user_id: int) -> users.User:
    member = users.by_id(ws.conn(), user_id)
    if member is None or member.clinic_id != principal.clinic_id:
        raise HTTPException(404, "no such account at this clinic")
    return member


@router.post("/users")
def create_user(
    principal: Admin,
    ws: Ws,
    email: Annotated[str, Form(max_length=320)],
    name: Annotated[str, Form(max_length=200)],
    role: Annotated[str, Form(max_length=20)],
    password: Annotated[str, Form(max_length=1024)],
) -> Response:
    now = ws.now()
    try:
        with ws.write() as conn:
            user_id = users.create_user(
                conn, clinic_id=principal.clinic_id, email=email, name=name, role=role, password=password, now=now
            )
            audit.record(conn, principal.actor, "create_user", now, target=f"user:{user_id}", detail={"role": role})
    except (users.AccountError, passwords.PasswordPolicyError) as exc:
        return RedirectResponse(f"/admin/users?error={str(exc)[:200]}", status_code=303)
    return RedirectResponse("/admin/users?message=Account+created.", status_code=303)


@router.post("/users/{user_id}/end-sessions")
def end_sessions(principal: Admin, ws: Ws, user_id: int) -> Response:
    member = _member(ws, principal, user_id)
    now = ws.now()
    with ws.write() as conn:
        n = sessions.end_all(conn, member.id, now, f"ended by admin {principal.user.email}")
        audit.record(conn, principal.actor, "end_sessions", now, target=f"user:{member.id}", detail={"sessions": n})
    return RedirectResponse(f"/admin/users?message=Ended+{n}+session(s)+of+{member.email}.", status_code=303)


@router.post("/users/{user_id}/disable")
def disable(principal: Admin, ws: Ws, user_id: int) -> Response:
    member = _member(ws, principal, user_id)
    if member.id == principal.user.id:
        return RedirectResponse("/admin/users?error=You+cannot+disable+your+own+account.", status_code=303)
    now = ws.now()
    with ws.write() as conn:
        users.set_disabled(conn, member.id, now)
        sessions.end_all(conn, member.id, now, f"account disabled by {principal.user.email}")
        audit.record(conn, principal.actor, "disable_user", now, target=f"user:{member.id}")
    return RedirectResponse(f"/admin/users?message=Disabled+{member.email}.", status_code=303)


@router.post("/users/{user_id}/enable")
def enable(principal: Admin, ws: Ws, user_id: int) -> Response:
    member = _member(ws, principal, user_id)
    now = ws.now()
    with ws.write() as conn:
        users.set_disabled(conn, member.id, None)
        audit.record(conn, principal.actor, "enable_user", now, target=f"user:{member.id}")
    return RedirectResponse(f"/admin/users?message=Enabled+{member.email}.", status_code=303)


def _filter(actor: str, action: str, patient_id: str, since_text: str, until_text: str) -> AuditFilter:
    since, until = _when("since", since_text), _when("until", until_text)
    return AuditFilter(
        actor=actor or None,
        action=action or None,
        patient_id=patient_id or None,
        since=since.timestamp() if since else None,
        until=until.timestamp() if until else None,
    )


Text = Annotated[str, Query(max_length=320)]
When = Annotated[str, Query(max_length=40, description="ISO-8601, e.g. 2026-11-01T00:00:00Z (UTC if no offset)")]


def _when(name: str, text: str) -> datetime | None:
    """The filter form sends empty fields as empty strings: those mean "no bound"."""
    if not text.strip():
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise HTTPException(422, f"{name}: {text!r} is not an ISO-8601 time such as 2026-11-01T00:00:00Z") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    principal: Admin,
    ws: Ws,
    actor: Text = "",
    action: Text = "",
    patient_id: Text = "",
    since: When = "",
    until: When = "",
    before: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    conn = ws.conn()
    f = _filter(actor, action, patient_id, since, until)
    rows = audit.entries(conn, principal.clinic_id, f, limit=201, before_id=before)
    with ws.write() as w:
        audit.record(w, principal.actor, "view_audit", ws.now())
    return TEMPLATES.TemplateResponse(
        request,
        "admin_audit.html",
        {
            "user": principal.user,
            "csrf_token": principal.session.csrf,
            "rows": rows[:200],
            "next_before": rows[199]["id"] if len(rows) > 200 else None,
            "actions": audit.actions(conn, principal.clinic_id),
            "f": {"actor": actor, "action": action, "patient_id": patient_id,
                  "since": since, "until": until},
            "query": request.url.query,
        },
    )  # fmt: skip


@router.get("/audit.csv")
def audit_export(
    principal: Admin,
    ws: Ws,
    actor: Text = "",
    action: Text = "",
    patient_id: Text = "",
    since: When = "",
    until: When = "",
) -> Response:
    rows = audit.entries(
        ws.conn(), principal.clinic_id, _filter(actor, action, patient_id, since, until), limit=1_000_000
    )
    out = io.StringIO()
    writer = csv.writer(out)
    cols = ["id", "at", "actor", "action", "outcome", "patient_id", "target", "ip", "detail"]
    writer.writerow(cols)
    for r in rows:
        writer.writerow([datetime.fromtimestamp(r["at"], UTC).isoformat() if c == "at" else r[c] for c in cols])
    with ws.write() as w:
        audit.record(w, principal.actor, "export_audit", ws.now(), detail={"rows": len(rows)})
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="audit.csv"', "Cache-Control": "no-store"},
    )
