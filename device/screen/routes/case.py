"""An asynchronous case: the clinic's questionnaire one question per screen (branching follows the answers),
the patient's own words, photos with retake guidance, then review and send."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import Response

from device.camera.errors import CameraError
from device.protocol.questionnaire import visible
from device.screen.answers import MAX_TEXT, AnswerError, parse_answer
from device.screen.progress import progress
from device.screen.routes.vitals import page_shown
from device.screen.steps import PHOTO_ADVICE
from device.screen.visit import Photo, Visit
from device.screen.web import form_shown, redirect, render, require_visit, screen_of

router = APIRouter(dependencies=[Depends(page_shown)])  # a camera measurement goes once the patient moves on
VisitDep = Annotated[Visit, Depends(require_visit)]
MAX_PHOTOS = 6


@router.get("/case")
async def start(request: Request, visit: VisitDep) -> Response:
    form_shown(request, "case")
    q = screen_of(request).questionnaire()
    return render(request, "case_start.html", visit, questionnaire=q, first=q.items[0].link_id)


@router.get("/case/q/{link_id}")
async def question(request: Request, visit: VisitDep, link_id: str) -> Response:
    return _question(request, visit, link_id)


def _question(request: Request, visit: Visit, link_id: str, error: str | None = None) -> Response:
    q = screen_of(request).questionnaire()
    shown = visible(q, visit.case.answers)
    item = next((i for i in shown if i.link_id == link_id), None)
    if item is None:
        raise HTTPException(404, "no such question")
    index = shown.index(item)
    back = f"/case/q/{shown[index - 1].link_id}" if index else "/case"
    return render(
        request,
        "question.html",
        visit,
        questionnaire=q,
        item=item,
        progress=progress(q, visit.case.answers, link_id),  # "Question 3" and a bar that only grows
        answer=visit.case.answers.get(link_id),
        back=back,
        error=error,
        status=400 if error else 200,
    )


@router.post("/case/q/{link_id}")
async def answer(request: Request, visit: VisitDep, link_id: str) -> Response:
    q = screen_of(request).questionnaire()
    item = next((i for i in visible(q, visit.case.answers) if i.link_id == link_id), None)
    if item is None:
        raise HTTPException(404, "no such question")
    form = await request.form()
    values = [str(v) for v in form.getlist("value")]
    try:
        value = parse_answer(item, values)
    except AnswerError as exc:
        return _question(request, visit, link_id, str(exc))
    if value is None:
        visit.case.answers.pop(link_id, None)
    else:
        visit.case.answers[link_id] = value
    # Answers to questions an answer just hid are dropped: they would contradict what the patient said.
    shown = visible(q, visit.case.answers)
    visit.case.answers = {k: v for k, v in visit.case.answers.items() if any(i.link_id == k for i in shown)}
    ids = [i.link_id for i in shown]
    following = ids[ids.index(link_id) + 1] if ids.index(link_id) + 1 < len(ids) else None
    return redirect(f"/case/q/{following}" if following else "/case/details")


@router.get("/case/details")
async def details(request: Request, visit: VisitDep) -> Response:
    return render(request, "case_details.html", visit, text=visit.case.text, max_text=MAX_TEXT)


@router.post("/case/details")
async def save_details(
    request: Request, visit: VisitDep, text: Annotated[str, Form(max_length=MAX_TEXT * 2)] = ""
) -> Response:
    visit.case.text = text.strip()[:MAX_TEXT]
    return redirect("/case/photos")


@router.get("/case/photos")
async def photos(request: Request, visit: VisitDep) -> Response:
    return render(request, "case_photos.html", visit, photos=visit.case.photos)


@router.post("/case/photos/take")
async def take(request: Request, visit: VisitDep) -> Response:
    screen = screen_of(request)
    if screen.camera is None or len(visit.case.photos) >= MAX_PHOTOS:
        return redirect("/case/photos")
    screen.camera.pose("skin")  # a demo camera shows skin, as a patient holds it up
    try:
        prepared, check = await asyncio.to_thread(screen.camera.photo)
    except CameraError:
        return render(request, "case_photos.html", visit, photos=visit.case.photos, busy=True)
    if not check.ok:
        advice = [PHOTO_ADVICE.get(p.code, p.message) for p in check.problems]
        return render(request, "case_photos.html", visit, photos=visit.case.photos, advice=advice)
    visit.case.photos.append(Photo(prepared.data, prepared.width, prepared.height))
    return redirect("/case/photos")


@router.get("/case/photos/{n}.jpg")
async def photo(visit: VisitDep, n: int) -> Response:
    if not 0 <= n < len(visit.case.photos):
        raise HTTPException(404, "no such photo")
    return Response(visit.case.photos[n].jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.post("/case/photos/{n}/remove")
async def remove(visit: VisitDep, n: int) -> Response:
    if 0 <= n < len(visit.case.photos):
        del visit.case.photos[n]
    return redirect("/case/photos")


@router.get("/case/review")
async def review(request: Request, visit: VisitDep) -> Response:
    q = screen_of(request).questionnaire()
    shown = [i for i in visible(q, visit.case.answers) if i.link_id in visit.case.answers]
    return render(request, "case_review.html", visit, questionnaire=q, items=shown)


@router.post("/case/send")
async def send(request: Request, visit: VisitDep) -> Response:
    draft = visit.case
    if not (draft.answers or draft.text or draft.photos):
        # A second tap on Send (or Back and Send again): the case went already; never send an empty one.
        return redirect(f"/case/sent/{visit.last_case}" if visit.last_case else "/case")
    visit.last_case = screen_of(request).send_case(visit, str(uuid.uuid4()))
    return redirect(f"/case/sent/{visit.last_case}")


@router.get("/case/sent/{envelope_id}")
async def sent(request: Request, visit: VisitDep, envelope_id: str) -> Response:
    notice = screen_of(request).notices.status(visit.subject, envelope_id)
    if notice is None:
        raise HTTPException(404, "no such case")
    return render(request, "case_sent.html", visit, notice=notice)


@router.get("/case/sent/{envelope_id}/status")
async def sent_status(request: Request, visit: VisitDep, envelope_id: str) -> dict[str, bool]:
    """For a page that opened after the receipt came: the live event it missed."""
    notice = screen_of(request).notices.status(visit.subject, envelope_id)
    if notice is None:
        raise HTTPException(404, "no such case")
    return {"delivered": notice.delivered_at is not None}
