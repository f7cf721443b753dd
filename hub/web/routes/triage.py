"""The triage queue: alerts by urgency and age; acknowledge, assign, note, resolve. Every action is audited."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request, Response
from fastapi.responses import HTMLResponse

from hub import audit
from hub.accounts import users
from hub.cases import store as case_store
from hub.db import Connection
from hub.triage import alerts
from hub.triage.config import SEVERITY_RANK
from hub.web.actions import Action, perform
from hub.web.security import Principal, require_user, workspace
from hub.web.templating import TEMPLATES, ago, utc_label
from hub.web.units import with_unit
from hub.workspace import Workspace

router = APIRouter(include_in_schema=False)
Ws = Annotated[Workspace, Depends(workspace)]
User_ = Annotated[Principal, Depends(require_user)]


def alert_summary(alert: dict[str, Any], now: float) -> str:
    """What an alert is about, as a sentence a person can act on.

    A no-reading alert (the only kind raised without a value) says since when nothing came: its count is of the
    minute sweeps that found the silence, which is no reading at all, so it is not shown. Any other says how many
    readings met its condition and the latest of them, with its unit as clinicians write it.
    """
    if alert["last_value"] is None:
        since = datetime.fromisoformat(alert["triggered_at"]).timestamp()
        said = f"No reading since {utc_label(since)} ({ago(since, now)})"
        return said + ("; still none." if alert["condition_active"] else "; readings have come in since.")
    n = alert["trigger_count"]
    readings = "1 reading" if n == 1 else f"{n:,} readings"
    value = with_unit(f"{alert['last_value']:g}", alert["last_unit"])
    said = f"{readings} met this condition, the latest measured {utc_label(alert['triggered_at'])}: {value}"
    return said + ("; still out of range." if alert["condition_active"] else "; back in range now.")


def _queue_detail(alert: dict[str, Any], now: float) -> str:
    """The queue's line under an alert's title: the summary, short."""
    if alert["last_value"] is None:
        since = datetime.fromisoformat(alert["triggered_at"]).timestamp()
        parts = [f"No reading since {utc_label(since)} ({ago(since, now)})"]
        if not alert["condition_active"]:
            parts.append("readings have come in since")
    else:
        n = alert["trigger_count"]
        parts = ["1 reading met this condition" if n == 1 else f"{n:,} readings met this condition"]
        if not alert["condition_active"]:
            parts.append("back in range now")
    reopened = alert["reopened"]
    if reopened:
        parts.insert(1, "re-opened once" if reopened == 1 else f"re-opened {reopened} times")
    return ", ".join(parts)


def work_queue(conn: Connection, clinic_id: str, now: float) -> list[dict[str, Any]]:
    """Alerts and cases in one list: escalated alerts and overdue cases first, then by severity, then the oldest."""
    items = [
        {"kind": "alert", "url": f"/triage/{a['id']}", "title": a["title"], "severity": a["severity"],
         "urgent": a["escalated_at"] is not None, "urgent_label": "escalated", "since": a["opened_at"],
         "patient_id": a["patient_id"], "patient_name": a["patient_name"], "patient_code": a["patient_code"],
         "state": a["state"], "assignee": a["assignee"], "detail": _queue_detail(a, now)}
        for a in alerts.queue(conn, clinic_id)
    ]  # fmt: skip
    for c in case_store.open_cases(conn, clinic_id):
        reason = (
            next((a["value"] for a in c["answers"] if a["link_id"] == "main"), None) or c["text"] or "no reason given"
        )
        items.append({
            "kind": "case", "url": f"/cases/{c['id']}", "title": f"Case: {str(reason)[:80]}", "severity": "medium",
            "urgent": now > c["due_at"], "urgent_label": "overdue", "since": c["received_at"],
            "patient_id": c["patient_id"], "patient_name": c["patient_name"] or f"unknown code {c['subject']}",
            "patient_code": c["patient_code"] or "", "state": c["state"].replace("_", " "), "assignee": None,
            "detail": f"{len(c['attachments'])} photo(s), {len(c['vitals'])} vital set(s)",
        })  # fmt: skip
    items.sort(key=lambda i: (not i["urgent"], SEVERITY_RANK[i["severity"]], i["since"]))
    return items


@router.get("/triage", response_class=HTMLResponse)
def triage_queue(request: Request, principal: User_, ws: Ws) -> Response:
    conn = ws.conn()
    with ws.write() as w:
        audit.record(w, principal.actor, "view_triage", ws.now())
    return TEMPLATES.TemplateResponse(
        request,
        "triage.html",
        {
            "user": principal.user,
            "csrf_token": principal.session.csrf,
            "items": work_queue(conn, principal.clinic_id, ws.now()),
            "now": ws.now(),
            "message": request.query_params.get("message"),
            "error": request.query_params.get("error"),
        },
    )


@router.get("/triage/{alert_id}", response_class=HTMLResponse)
def alert_page(request: Request, principal: User_, ws: Ws, alert_id: int) -> Response:
    conn = ws.conn()
    alert = alerts.get(conn, principal.clinic_id, alert_id)
    if alert is None:
        raise HTTPException(404, "no such alert")
    with ws.write() as w:
        audit.record(w, principal.actor, "view_alert", ws.now(), patient_id=alert["patient_id"],
                     target=f"alert:{alert_id}")  # fmt: skip
    return TEMPLATES.TemplateResponse(
        request,
        "alert.html",
        {
            "user": principal.user,
            "csrf_token": principal.session.csrf,
            "alert": alert,
            "summary": alert_summary(alert, ws.now()),
            "events": alerts.events(conn, principal.clinic_id, alert_id),
            "staff": [u for u in users.in_clinic(conn, principal.clinic_id) if u.disabled_at is None],
            "now": ws.now(),
            "error": request.query_params.get("error"),
        },
    )


def _act(ws: Workspace, principal: Principal, alert_id: int, action: str, run: Action) -> Response:
    return perform(ws, principal, action=action, target=f"alert:{alert_id}", run=run, back=f"/triage/{alert_id}",
                   errors=(alerts.AlertError,))  # fmt: skip


@router.post("/triage/{alert_id}/acknowledge")
def acknowledge(principal: User_, ws: Ws, alert_id: int) -> Response:
    def run(w: Connection, now: float) -> str | None:
        return alerts.acknowledge(w, principal.clinic_id, alert_id, principal.user.id, now)

    return _act(ws, principal, alert_id, "acknowledge_alert", run)


@router.post("/triage/{alert_id}/assign")
def assign(principal: User_, ws: Ws, alert_id: int, assignee: Annotated[int, Form(ge=1)]) -> Response:
    def run(w: Connection, now: float) -> str | None:
        return alerts.assign(w, principal.clinic_id, alert_id, assignee=assignee, user_id=principal.user.id, now=now)

    return _act(ws, principal, alert_id, "assign_alert", run)


@router.post("/triage/{alert_id}/note")
def note(principal: User_, ws: Ws, alert_id: int, text: Annotated[str, Form(max_length=2000)]) -> Response:
    def run(w: Connection, now: float) -> str | None:
        return alerts.add_note(w, principal.clinic_id, alert_id, text=text, user_id=principal.user.id, now=now)

    return _act(ws, principal, alert_id, "note_alert", run)


@router.post("/triage/{alert_id}/resolve")
def resolve(principal: User_, ws: Ws, alert_id: int) -> Response:
    def run(w: Connection, now: float) -> str | None:
        return alerts.resolve(w, principal.clinic_id, alert_id, principal.user.id, now)

    return _act(ws, principal, alert_id, "resolve_alert", run)
