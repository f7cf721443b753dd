"""Readings that could not be attributed with certainty: staff assign them to a patient or discard them."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from hub import attribution, audit, patients
from hub.web.security import Principal, require_user, workspace
from hub.web.templating import TEMPLATES
from hub.workspace import Workspace

router = APIRouter(include_in_schema=False)
Ws = Annotated[Workspace, Depends(workspace)]
User_ = Annotated[Principal, Depends(require_user)]
PAGE = 100


@router.get("/queue", response_class=HTMLResponse)
def queue_page(
    request: Request, principal: User_, ws: Ws, page: Annotated[int, Query(ge=1, le=100000)] = 1
) -> Response:
    conn = ws.conn()
    rows = attribution.queue(conn, principal.clinic_id, limit=PAGE + 1, offset=(page - 1) * PAGE)
    for r in rows:
        r["device"] = json.loads(str(r["device"]))
        r["key"] = f"{r['message_id']}:{r['idx']}"
    with ws.write() as w:
        audit.record(w, principal.actor, "view_queue", ws.now(), detail={"page": page})
    return TEMPLATES.TemplateResponse(
        request,
        "queue.html",
        {
            "user": principal.user,
            "csrf_token": principal.session.csrf,
            "rows": rows[:PAGE],
            "more": len(rows) > PAGE,
            "page": page,
            "total": attribution.queue_size(conn, principal.clinic_id),
            "patients": patients.search(conn, principal.clinic_id, limit=5000),
            "message": request.query_params.get("message"),
            "error": request.query_params.get("error"),
        },
    )


def _keys(raw: list[str]) -> list[attribution.Key]:
    return [attribution.parse_key(k) for k in raw]


@router.post("/queue/assign")
def assign(
    principal: User_,
    ws: Ws,
    patient_code: Annotated[str, Form(max_length=64)],
    key: Annotated[list[str], Form(max_length=1000)],
    remember_slot: Annotated[bool, Form()] = False,
) -> Response:
    try:
        keys = _keys(key)
    except ValueError as exc:
        return RedirectResponse(f"/queue?error={exc}", status_code=303)
    conn = ws.conn()
    found = [p for p in patients.search(conn, principal.clinic_id, patient_code, limit=50) if p.code == patient_code]
    if not found:
        return RedirectResponse("/queue?error=No+patient+with+that+check-in+code+at+this+clinic.", status_code=303)
    patient = found[0]
    now = ws.now()
    with ws.write() as w:
        n = attribution.assign(
            w,
            principal.clinic_id,
            keys,
            patient_id=patient.id,
            user_id=principal.user.id,
            now=now,
            remember_slot=remember_slot,
        )
        audit.record(
            w,
            principal.actor,
            "assign_readings",
            now,
            patient_id=patient.id,
            detail={"readings": n, "remember_slot": remember_slot},
        )
    return RedirectResponse(f"/queue?message=Assigned+{n}+reading(s)+to+{patient.code}.", status_code=303)


@router.post("/queue/discard")
def discard(
    principal: User_,
    ws: Ws,
    reason: Annotated[str, Form(min_length=3, max_length=200)],
    key: Annotated[list[str], Form(max_length=1000)],
) -> Response:
    try:
        keys = _keys(key)
    except ValueError as exc:
        return RedirectResponse(f"/queue?error={exc}", status_code=303)
    now = ws.now()
    with ws.write() as w:
        n = attribution.discard(w, principal.clinic_id, keys, reason=reason, user_id=principal.user.id, now=now)
        audit.record(w, principal.actor, "discard_readings", now, detail={"readings": n})
    return RedirectResponse(f"/queue?message=Discarded+{n}+reading(s).", status_code=303)
