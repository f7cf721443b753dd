"""A case's page: the patient's answers (with the questions they saw), their words, photos and vitals; the answer.

Every view, photo view and step is audited; another clinic's case is "not found".
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from device.protocol.vitals import VITALS
from hub import audit, patients
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
    return [
        {"name": VITALS[r["code"]].name if r["code"] in VITALS else r["code"], **r}
        for r in cases.readings(ws.conn(), case)
    ]


def _photos(ws: Workspace, case: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for attachment_id in case["attachments"]:
        status = cases.attachment_status(ws.conn(), attachment_id, case["kiosk"])
        out.append({"id": attachment_id, "status": status if status is not None else "not arrived yet"})
    return out


@router.get("/cases/{case_id}", response_class=HTMLResponse)
def case_page(request: Request, principal: User_, ws: Ws, case_id: str) -> Response:
    case = _case(ws, principal, case_id)
    rows, issues = _questions(ws, case)
    with ws.write() as w:
        audit.record(w, principal.actor, "view_case", ws.now(), patient_id=case["patient_id"], target=f"case:{case_id}")
    patient = None
    if case["patient_id"]:
        patient = patients.name_and_code(ws.conn(), case["patient_id"])
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
    photo = ws.reader().complete_attachment_bytes(attachment_id, case["kiosk"])
    if photo is None:
        raise HTTPException(404, "the photo has not fully arrived, or did not match its checksum")
    with ws.write() as w:
        audit.record(w, principal.actor, "view_case_photo", ws.now(), patient_id=case["patient_id"],
                     target=f"attachment:{attachment_id}")  # fmt: skip
    data, media_type = photo
    return Response(data, media_type=media_type, headers={"Cache-Control": "no-store"})


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
