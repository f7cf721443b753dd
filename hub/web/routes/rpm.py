"""Remote-monitoring time: the clinic's month at a glance, a patient's evidence, hand-logged time, CSV export."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from hub import audit, patients, rpm
from hub.web.routes.patients import patient_or_404
from hub.web.security import Principal, require_user, workspace
from hub.web.templating import TEMPLATES
from hub.workspace import Workspace

router = APIRouter(include_in_schema=False)
Ws = Annotated[Workspace, Depends(workspace)]
User_ = Annotated[Principal, Depends(require_user)]
MonthQ = Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM (UTC); this month if absent")]


def _month(ws: Workspace, month: str | None) -> str:
    value = month or datetime.fromtimestamp(ws.now(), UTC).strftime("%Y-%m")
    try:
        rpm.month_bounds(value)
    except rpm.RpmError as exc:
        raise HTTPException(422, str(exc)) from None
    return value


def _clinic_months(ws: Workspace, clinic_id: str, month: str) -> list[tuple[patients.Patient, rpm.Month]]:
    conn = ws.conn()
    return [(p, rpm.month_for(conn, clinic_id, p.id, month)) for p in patients.search(conn, clinic_id, limit=100_000)]


@router.get("/rpm", response_class=HTMLResponse)
def rpm_month(request: Request, principal: User_, ws: Ws, month: MonthQ = None) -> Response:
    value = _month(ws, month)
    rows = [(p, m) for p, m in _clinic_months(ws, principal.clinic_id, value) if m.days or m.minutes]
    with ws.write() as w:
        audit.record(w, principal.actor, "view_rpm", ws.now(), detail={"month": value})
    return TEMPLATES.TemplateResponse(
        request,
        "rpm.html",
        {"user": principal.user, "csrf_token": principal.session.csrf, "month": value, "rows": rows},
    )


@router.get("/rpm.csv")
def rpm_export(principal: User_, ws: Ws, month: MonthQ = None) -> Response:
    """One row per counted day, episode and logged entry: the evidence behind each patient's totals."""
    value = _month(ws, month)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["patient_id", "check_in_code", "month", "evidence", "when_utc", "person", "minutes", "detail"])
    for p, m in _clinic_months(ws, principal.clinic_id, value):
        for d in m.days:
            writer.writerow([p.id, p.code, value, "reading day", d.isoformat(), "", "", "device reading(s)"])
        for e in m.episodes:
            when = datetime.fromtimestamp(e.start, UTC).isoformat()
            actions = " ".join(e.actions) + (f" ({e.in_call_s / 60:.1f} min inside a call)" if e.in_call_s else "")
            writer.writerow([p.id, p.code, value, "interaction", when, e.user, f"{e.minutes:.1f}", actions])
        for c in m.calls:
            when = datetime.fromtimestamp(c.start, UTC).isoformat()
            writer.writerow([p.id, p.code, value, "live consult", when, c.user, f"{c.minutes:.1f}",
                             f"video call consult:{c.consult} ({c.reason})"])  # fmt: skip
        for t in m.logged:
            when = datetime.fromtimestamp(float(str(t["at"])), UTC).isoformat()
            writer.writerow([p.id, p.code, value, "logged time", when, t["user"], t["minutes"], t["activity"]])
        if m.days or m.minutes:
            writer.writerow([p.id, p.code, value, "total", "", "", f"{m.minutes:.1f}",
                             f"{len(m.days)} day(s): {m.days_status}; minutes: {m.minutes_status}"])  # fmt: skip
    with ws.write() as w:
        audit.record(w, principal.actor, "export_rpm", ws.now(), detail={"month": value})
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="rpm-{value}.csv"', "Cache-Control": "no-store"},
    )


@router.get("/patients/{patient_id}/rpm", response_class=HTMLResponse)
def patient_rpm(request: Request, principal: User_, ws: Ws, patient_id: str, month: MonthQ = None) -> Response:
    patient = patient_or_404(ws, principal, patient_id)
    value = _month(ws, month)
    result = rpm.month_for(ws.conn(), principal.clinic_id, patient.id, value)
    with ws.write() as w:
        audit.record(w, principal.actor, "view_rpm_patient", ws.now(), patient_id=patient.id, detail={"month": value})
    return TEMPLATES.TemplateResponse(
        request,
        "patient_rpm.html",
        {"user": principal.user, "csrf_token": principal.session.csrf, "patient": patient, "month": value,
         "m": result, "error": request.query_params.get("error")},
    )  # fmt: skip


@router.post("/patients/{patient_id}/rpm/time")
def log_time(
    principal: User_,
    ws: Ws,
    patient_id: str,
    minutes: Annotated[float, Form(gt=0, le=240)],
    activity: Annotated[str, Form(max_length=500)],
) -> Response:
    patient = patient_or_404(ws, principal, patient_id)
    now = ws.now()
    try:
        with ws.write() as w:
            rpm.log_time(w, principal.clinic_id, patient.id, user_id=principal.user.id, minutes=minutes,
                         activity=activity, at=now)  # fmt: skip
            audit.record(w, principal.actor, "log_rpm_time", now, patient_id=patient.id, detail={"minutes": minutes})
    except rpm.RpmError as exc:
        return RedirectResponse(f"/patients/{patient.id}/rpm?error={exc}", status_code=303)
    return RedirectResponse(f"/patients/{patient.id}/rpm", status_code=303)
