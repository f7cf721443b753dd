"""A case's page: the patient's answers (with the questions they saw), their words, photos and vitals; the answer.

Every view, photo view and step is audited; another clinic's case is "not found".
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from device.protocol.vitals import VITALS
from hub import audit
from hub.cases import questionnaire
from hub.cases import store as cases
from hub.db import Connection
from hub.web.actions import Action, perform
from hub.web.security import Principal, require_user, workspace
from hub.web.templating import TEMPLATES
from hub.workspace import Workspace

router = APIRouter(include_in_schema=False)
Ws = Annotated[Workspace, Depends(workspace)]
User_ = Annotated[Principal, Depends(require_user)]


def _case(ws: Workspace, principal: Principal, case_id: str) -> dict[str, Any]:
    case = cases.get(ws.conn(), principal.clinic_id, case_id)
    if case is None:
        raise HTTPException(404, "no such case")
    return case


def _questions(ws: Workspace, case: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    answers = {a["link_id"]: a["value"] for a in case["answers"]}
    q = questionnaire.lookup(ws.conn(), case["clinic_id"], case["questionnaire_id"], case["questionnaire_version"])
    if q is None:
        rows = [{"text": link_id, "answer": value} for link_id, value in answers.items()]
        return rows, [f"questionnaire {case['questionnaire_id']} v{case['questionnaire_version']} is not known here"]
    rows = [
        {"text": item.text, "answer": answers.get(item.link_id), "required": item.required}
        for item in questionnaire.visible(q, answers)
    ]
    return rows, questionnaire.problems(q, answers)


def _vitals(ws: Workspace, case: dict[str, Any]) -> list[dict[str, Any]]:
    if not case["vitals"] or case["patient_id"] is None:
        return []
    marks = ",".join("?" * len(case["vitals"]))
    rows = ws.conn().execute(
        f"SELECT code, value, unit, effective, device FROM observations WHERE message_id IN ({marks}) "
        "AND patient_id = ? AND clinic_id = ? AND attribution = 'attributed' ORDER BY effective, code",
        [*case["vitals"], case["patient_id"], case["clinic_id"]],
    )
    return [
        {"name": VITALS[c].name if c in VITALS else c, "code": c, "value": v, "unit": u, "effective": e,
         "device": json.loads(d)}
        for c, v, u, e, d in rows
    ]  # fmt: skip


def _photos(ws: Workspace, case: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for attachment_id in case["attachments"]:
        row = (
            ws.conn()
            .execute("SELECT status FROM attachments WHERE id = ? AND kiosk = ?", (attachment_id, case["kiosk"]))
            .fetchone()
        )
        out.append({"id": attachment_id, "status": row[0] if row else "not arrived yet"})
    return out


@router.get("/cases/{case_id}", response_class=HTMLResponse)
def case_page(request: Request, principal: User_, ws: Ws, case_id: str) -> Response:
    case = _case(ws, principal, case_id)
    rows, issues = _questions(ws, case)
    with ws.write() as w:
        audit.record(w, principal.actor, "view_case", ws.now(), patient_id=case["patient_id"], target=f"case:{case_id}")
    patient = None
    if case["patient_id"]:
        patient = ws.conn().execute("SELECT name, code FROM patients WHERE id = ?", (case["patient_id"],)).fetchone()
    return TEMPLATES.TemplateResponse(
        request,
        "case.html",
        {
            "user": principal.user,
            "csrf_token": principal.session.csrf,
            "case": case,
            "patient": patient,
            "questions": rows,
            "issues": issues,
            "vitals": _vitals(ws, case),
            "photos": _photos(ws, case),
            "now": ws.now(),
            "error": request.query_params.get("error"),
        },
    )


@router.get("/cases/{case_id}/photos/{attachment_id}")
def case_photo(principal: User_, ws: Ws, case_id: str, attachment_id: str) -> Response:
    case = _case(ws, principal, case_id)
    if attachment_id not in case["attachments"]:
        raise HTTPException(404, "no such photo in this case")
    row = (
        ws.conn()
        .execute(
            "SELECT data, media_type FROM attachments WHERE id = ? AND kiosk = ? AND status = 'complete'",
            (attachment_id, case["kiosk"]),
        )
        .fetchone()
    )
    if row is None:
        raise HTTPException(404, "the photo has not fully arrived, or did not match its checksum")
    with ws.write() as w:
        audit.record(w, principal.actor, "view_case_photo", ws.now(), patient_id=case["patient_id"],
                     target=f"attachment:{attachment_id}")  # fmt: skip
    return Response(bytes(row[0]), media_type=row[1], headers={"Cache-Control": "no-store"})


def _step(ws: Workspace, principal: Principal, case_id: str, action: str, run: Action) -> Response:
    return perform(ws, principal, action=action, target=f"case:{case_id}", run=run, back=f"/cases/{case_id}",
                   errors=(cases.CaseError,))  # fmt: skip


@router.post("/cases/{case_id}/review")
def review(principal: User_, ws: Ws, case_id: str) -> Response:
    def run(w: Connection, now: float) -> str | None:
        return cases.start_review(w, principal.clinic_id, case_id, principal.user.id, now)

    return _step(ws, principal, case_id, "review_case", run)


@router.post("/cases/{case_id}/answer")
def answer(
    principal: User_,
    ws: Ws,
    case_id: str,
    message: Annotated[str, Form(max_length=5000)],
    plan: Annotated[str, Form(max_length=5000)] = "",
    request_: Annotated[Literal["none", "more_info", "live_consult"], Form(alias="request")] = "none",
) -> Response:
    try:
        reply = cases.Answer(message=message.strip(), plan=plan.strip(), request=request_)
    except ValidationError:
        return RedirectResponse(f"/cases/{case_id}?error=Write+a+message+to+the+patient.", status_code=303)

    def run(w: Connection, now: float) -> str | None:
        return cases.answer(w, principal.clinic_id, case_id, reply, user_id=principal.user.id, now=now)

    return _step(ws, principal, case_id, "answer_case", run)


@router.post("/cases/{case_id}/close")
def close(principal: User_, ws: Ws, case_id: str) -> Response:
    def run(w: Connection, now: float) -> str | None:
        return cases.close(w, principal.clinic_id, case_id, principal.user.id, now)

    return _step(ws, principal, case_id, "close_case", run)
